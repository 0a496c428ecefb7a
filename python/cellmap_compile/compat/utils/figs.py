"""Figures of a batch (inputs, targets, predictions) for TensorBoard, as cellmap-data draws
them: one figure per class (:func:`get_fig_dict`) or one grid (:func:`get_image_grid`).
matplotlib is imported when a function is called."""

from __future__ import annotations

import io
from typing import Any, Optional, Sequence

import numpy as np
import torch


def _plt() -> Any:
    import matplotlib.pyplot as plt

    return plt


def _mid_slice(t: torch.Tensor) -> np.ndarray:
    """A 2D image of a tensor: squeezed, the middle z slice when 3D."""
    a = t.squeeze().detach().cpu().numpy()
    return a[a.shape[0] // 2] if a.ndim == 3 else a


def _centre_window(full: np.ndarray, inner: np.ndarray) -> tuple[int, int, np.ndarray]:
    """Offsets ``(rows, cols)`` of ``inner`` centred in ``full`` and that window of ``full``."""
    pad_r = (full.shape[0] - inner.shape[0]) // 2
    pad_c = (full.shape[1] - inner.shape[1]) // 2
    rows = slice(pad_r, -pad_r) if pad_r > 0 else slice(0, full.shape[0])
    cols = slice(pad_c, -pad_c) if pad_c > 0 else slice(0, full.shape[1])
    return pad_r, pad_c, full[rows, cols]


def get_fig_dict(
    input_data: torch.Tensor,
    target_data: torch.Tensor,
    outputs: torch.Tensor,
    classes: Sequence[str],
    batch_size: Optional[int] = None,
    fig_size: int = 3,
    clim: Optional[Sequence] = None,
    colorbar: bool = True,
    colorbar_size: float = 0.1,
    gt_clim: Optional[Sequence] = (0, 1),
) -> dict:
    """``{class: matplotlib Figure}``: per batch item a row of the full input, the input cropped to
    the output's field of view, the target and the prediction (plus a colour bar).

    ``input_data`` is ``[B, C, ...]``, ``target_data`` and ``outputs`` ``[B, n_classes, ...]``; 3D
    crops show their middle z slice.
    """
    plt = _plt()
    rows = input_data.shape[0] if batch_size is None else batch_size
    cols = 4 + int(colorbar)
    figs = {}
    for c, label in enumerate(classes):
        fig, ax = plt.subplots(
            rows,
            cols,
            figsize=(fig_size * (4 + colorbar * colorbar_size), fig_size * rows),
            gridspec_kw={"width_ratios": [1, 1, 1, 1, colorbar_size]} if colorbar else {},
        )
        ax = np.asarray(ax).reshape(rows, cols)
        for b in range(rows):
            pred = _mid_slice(outputs[b][c])
            target = _mid_slice(target_data[b][c])
            full = _mid_slice(input_data[b][0])
            pad_r, pad_c, fov = _centre_window(full, pred)
            ax[b, 0].imshow(full, cmap="gray", clim=clim)
            ax[b, 0].add_patch(
                plt.Rectangle((pad_r, pad_c), pred.shape[1], pred.shape[0], edgecolor="r", facecolor="none")
            )
            ax[b, 0].set_title("Full FOV")
            ax[b, 1].imshow(fov, cmap="gray", clim=clim)
            ax[b, 1].set_title("Raw")
            ax[b, 2].imshow(target, clim=gt_clim)
            ax[b, 2].set_title(f"GT {label}")
            image = ax[b, 3].imshow(pred, clim=clim)
            ax[b, 3].set_title(f"Pred. {label}")
            for a in ax[b, :4]:
                a.axis("off")
            if colorbar:
                fig.colorbar(image, orientation="vertical", location="right", cax=ax[b, 4])
                ax[b, 4].set_title("Intensity")
        fig.tight_layout()
        figs[label] = fig
    return figs


def get_image_grid(
    input_data: torch.Tensor,
    target_data: torch.Tensor,
    outputs: torch.Tensor,
    classes: Sequence[str],
    batch_size: Optional[int] = None,
    fig_size: int = 3,
    clim: Optional[Sequence] = None,
    cmap: Optional[str] = None,
) -> Any:
    """One figure: per batch item the full input, the input in the output's field of view, then
    target and prediction of every class."""
    plt = _plt()
    rows = input_data.shape[0] if batch_size is None else batch_size
    cols = 2 * len(classes) + 2
    fig, ax = plt.subplots(rows, cols, figsize=(fig_size * cols, fig_size * rows))
    ax = np.asarray(ax).reshape(rows, cols)
    for b in range(rows):
        pred = None
        for c, label in enumerate(classes):
            pred = _mid_slice(outputs[b][c])
            ax[b, 2 * c + 2].imshow(_mid_slice(target_data[b][c]), clim=clim, cmap=cmap)
            ax[b, 2 * c + 2].set_title(f"GT {label}")
            ax[b, 2 * c + 3].imshow(pred, clim=clim, cmap=cmap)
            ax[b, 2 * c + 3].set_title(f"Pred. {label}")
        full = _mid_slice(input_data[b][0])
        inner = pred if pred is not None else full
        pad_r, pad_c, fov = _centre_window(full, inner)
        ax[b, 0].imshow(full, cmap="gray", clim=clim)
        ax[b, 0].add_patch(
            plt.Rectangle((pad_c, pad_r), inner.shape[1], inner.shape[0], edgecolor="r", facecolor="none")
        )
        ax[b, 0].set_title("Full FOV")
        ax[b, 1].imshow(fov, cmap="gray", clim=clim)
        ax[b, 1].set_title("Raw")
        for a in ax[b]:
            a.axis("off")
    fig.tight_layout()
    return fig


def fig_to_image(fig: Any) -> np.ndarray:
    """The figure's pixels, ``[height, width, channels]`` uint8; closes every figure."""
    plt = _plt()
    with io.BytesIO() as buffer:
        fig.savefig(buffer, format="raw", dpi=fig.dpi)
        data = np.frombuffer(buffer.getvalue(), dtype=np.uint8)
    width, height = fig.canvas.get_width_height()
    plt.close("all")
    return data.reshape(int(height), int(width), -1)


def get_image_grid_numpy(
    input_data: torch.Tensor,
    target_data: torch.Tensor,
    outputs: torch.Tensor,
    classes: Sequence[str],
    batch_size: Optional[int] = None,
    fig_size: int = 3,
    clim: Optional[Sequence] = None,
    cmap: Optional[str] = None,
) -> np.ndarray:
    """:func:`get_image_grid` as pixels (:func:`fig_to_image`)."""
    return fig_to_image(get_image_grid(input_data, target_data, outputs, classes, batch_size, fig_size, clim, cmap))


def get_image_dict(
    input_data: torch.Tensor,
    target_data: torch.Tensor,
    outputs: torch.Tensor,
    classes: Sequence[str],
    batch_size: Optional[int] = None,
    fig_size: int = 3,
    clim: Optional[Sequence] = None,
    colorbar: bool = True,
) -> dict:
    """:func:`get_fig_dict` as pixels: ``{class: [height, width, channels] uint8}``."""
    figs = get_fig_dict(input_data, target_data, outputs, classes, batch_size, fig_size, clim, colorbar)
    return {label: fig_to_image(fig) for label, fig in figs.items()}

"""``CellMapImage``: crops of one OME-NGFF multiscale array at a requested voxel size, read in
Rust (``cellmap_compile._native.NativeImage``)."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch

from .. import _native
from .utils.geometry import box_shape


def _tensor(out: Any, shape: Sequence[int]) -> torch.Tensor:
    """A native read (DLPack capsule, or float32 bytes from older builds) as a tensor."""
    if isinstance(out, (bytes, bytearray)):
        return torch.frombuffer(bytearray(out), dtype=torch.float32).reshape(tuple(shape))
    return torch.from_dlpack(out).reshape(tuple(shape))


def _pad_axes(values: Sequence[Any], n: int, fill: Callable[[Sequence[Any]], Any]) -> list[Any]:
    values = list(values)
    return [fill(values)] * (n - len(values)) + values


class CellMapImage:
    """One multiscale array (``path`` is the group holding ``s0``, ``s1``, ...) read as crops of
    ``target_voxel_shape`` voxels at ``target_scale`` nm, centred at world coordinates.

    As cellmap-data: a scale shorter than ``axis_order`` is left-padded with its first entry
    (``(8, 8)`` → ``(8, 8, 8)``), a shape with 1s (``(64, 64)`` → ``(1, 64, 64)``);
    ``image[{"z": nm, "y": nm, "x": nm}]`` is a float32 tensor of ``target_voxel_shape`` with
    ``pad_value`` outside the data, after ``value_transform``.

    Where it differs (``docs/python.md``): voxel ``i`` of a level is centred at ``translation +
    i·scale``; the level read is the coarsest one not coarser than ``target_scale``
    (``scale_level``), resampled with ``interpolation`` when the voxel sizes differ; a crop
    reaching outside the data is filled with ``pad_value`` also when ``pad`` is false (cellmap-data
    shifts it); ``set_spatial_transforms`` takes mirror and transpose but not rotation.
    """

    def __init__(
        self,
        path: str,
        target_class: str,
        target_scale: Sequence[float],
        target_voxel_shape: Sequence[int],
        pad: bool = False,
        pad_value: float = float("nan"),
        interpolation: str = "nearest",
        axis_order: str | Sequence[str] = "zyx",
        value_transform: Optional[Callable] = None,
        context: Any = None,
        device: Optional[str | torch.device] = None,
    ) -> None:
        self.path = str(path)
        self.label_class = target_class
        axis_order = list(axis_order)
        if "".join(axis_order) not in ("zyx", "yx"):
            raise ValueError(f"axis_order must be 'zyx' (or 'yx'), got {''.join(axis_order)!r}")
        scale = _pad_axes([float(s) for s in target_scale], len(axis_order), lambda v: v[0])
        shape = _pad_axes([int(s) for s in target_voxel_shape], len(axis_order), lambda v: 1)
        self.pad = pad
        self.pad_value = pad_value
        self.interpolation = interpolation
        self.axes: list[str] = axis_order[: len(shape)]
        self.scale: dict[str, float] = dict(zip(axis_order, scale))
        self.output_shape: dict[str, int] = dict(zip(axis_order, shape))
        self.output_size: dict[str, float] = {ax: self.output_shape[ax] * self.scale[ax] for ax in self.axes}
        self.value_transform = value_transform
        self._spatial: Optional[dict] = None
        self._native: Optional[Any] = None

    # -- the array --------------------------------------------------------------------------

    def _zyx(self, d: Mapping[str, Any], fill: Any) -> tuple:
        """``d`` as a z, y, x tuple; a missing z gets ``fill``."""
        return tuple(d.get(ax, fill) for ax in ("z", "y", "x"))

    @property
    def native(self) -> Any:
        """The Rust reader (opened on first use)."""
        if self._native is None:
            self._native = _native.NativeImage(
                self.path,
                self._zyx(self.scale, self.scale[self.axes[0]]),
                self._zyx(self.output_shape, 1),
                self.interpolation,
                float(self.pad_value),
            )
        return self._native

    @property
    def scale_level(self) -> int:
        """Index of the level read."""
        return int(self.native.level())

    @property
    def bounding_box(self) -> dict[str, tuple[float, float]]:
        """``{axis: (lo, hi)}`` nm: the extent of the level read, voxel edges."""
        lo, hi = self.native.bounds_nm()
        return {ax: (float(lo[i]), float(hi[i])) for i, ax in enumerate(("z", "y", "x")) if ax in self.axes}

    @property
    def sampling_box(self) -> Optional[dict[str, tuple[float, float]]]:
        """Where crop centres keep the crop inside the data: the bounding box less half the crop
        on each side. Along an axis where the crop does not fit: ``None`` without ``pad``, with
        ``pad`` one voxel around the middle (a single centre)."""
        box = {}
        for ax, (lo, hi) in self.bounding_box.items():
            half = self.output_size[ax] / 2
            if lo + half < hi - half:
                box[ax] = (lo + half, hi - half)
            elif self.pad:
                mid = (lo + hi) / 2
                box[ax] = (mid - self.scale[ax] / 2, mid + self.scale[ax] / 2)
            else:
                return None
        return box

    def get_center(self, idx: int) -> dict[str, float]:
        """World centre of sample ``idx`` of the grid of one centre per voxel of ``target_scale``
        in the sampling box (``sampling_box`` lower corner + ``(i + 0.5)·scale``)."""
        box = self.sampling_box
        if box is None:
            raise ValueError(f"{self.path}: the array is smaller than the crop and pad is False")
        grid = box_shape(box, self.scale)
        index = np.unravel_index(int(idx), tuple(grid[ax] for ax in box))
        return {ax: float(box[ax][0] + (int(i) + 0.5) * self.scale[ax]) for ax, i in zip(box, index)}

    # -- reads ------------------------------------------------------------------------------

    def set_spatial_transforms(self, transforms: Optional[dict]) -> None:
        """Transforms of the next reads: ``{"mirror": {axis: bool} | [bool, ...], "transpose":
        permutation}``. A ``rotation_matrix`` raises ``NotImplementedError`` (the compat loader
        rotates in Rust; see ``docs/python.md``)."""
        if transforms and transforms.get("rotation_matrix") is not None:
            raise NotImplementedError(
                "CellMapImage in cellmap_compile.compat does not rotate single reads; "
                "rotation runs in the loader (spatial_transforms={'rotate': ...})"
            )
        self._spatial = transforms or None

    def __getitem__(self, center: Mapping[str, Any]) -> torch.Tensor:
        """The crop centred at ``center`` (``{axis: nm}``; an array of values means its mean)."""
        c = {ax: float(np.mean(v)) if not isinstance(v, (int, float)) else float(v) for ax, v in center.items()}
        bbox = None
        centre = []
        for ax in ("z", "y", "x"):
            if ax in c:
                centre.append(c[ax])
            else:
                # An axis the image does not have: the middle of the data.
                bbox = bbox or self.native.bounds_nm()
                i = ("z", "y", "x").index(ax)
                centre.append((bbox[0][i] + bbox[1][i]) / 2)
        shape = [self.output_shape[ax] for ax in self.axes]
        data = _tensor(self.native.read(tuple(centre)), shape)
        if self._spatial:
            data = self._apply_spatial(data)
        if self.value_transform is not None:
            data = self.value_transform(data)
        return data

    def _apply_spatial(self, data: torch.Tensor) -> torch.Tensor:
        mirror = self._spatial.get("mirror")
        if mirror is not None:
            flags = [mirror.get(ax, False) for ax in self.axes] if isinstance(mirror, Mapping) else list(mirror)
            dims = [i for i, f in enumerate(flags) if f]
            if dims:
                data = data.flip(dims)
        perm = self._spatial.get("transpose")
        if perm is not None:
            data = data.permute(*perm).contiguous()
        return data

    # -- counts -----------------------------------------------------------------------------

    @property
    def total_voxels(self) -> int:
        """Voxels of the bounding box at ``target_scale``."""
        return math.prod(max(1, int(round((hi - lo) / self.scale[ax]))) for ax, (lo, hi) in self.bounding_box.items())

    @property
    def class_counts(self) -> dict[str, int]:
        """``{label_class: non-zero voxels}`` of the level read, scaled to voxels of
        ``target_scale``."""
        level_shape = tuple(int(s) for s in self.native.level_shape())
        level_scale = tuple(float(s) for s in self.native.level_scale())
        reader = _native.NativeImage(self.path, level_scale, (1, level_shape[1], level_shape[2]), "nearest", 0.0)
        t = tuple(float(v) for v in self.native.level_translation())
        foreground = 0
        for z in range(level_shape[0]):
            centre = (
                t[0] + z * level_scale[0],
                t[1] + (level_shape[1] - 1) * level_scale[1] / 2,
                t[2] + (level_shape[2] - 1) * level_scale[2] / 2,
            )
            foreground += int(torch.count_nonzero(_tensor(reader.read(centre), (1, level_shape[1], level_shape[2]))))
        ratio = math.prod(level_scale) / math.prod(self._zyx(self.scale, self.scale[self.axes[0]]))
        return {self.label_class: int(foreground * ratio)}

    def to(self, device: str | torch.device) -> "CellMapImage":
        """No-op (crops are CPU tensors), as cellmap-data."""
        return self

    def __repr__(self) -> str:
        return (
            f"CellMapImage({self.path!r}, class={self.label_class!r}, "
            f"scale={list(self.scale.values())}, shape={list(self.output_shape.values())})"
        )

"""``CellMapDatasetWriter``: model predictions written back as OME-NGFF zarr, through the Rust
prediction writer (``cellmap_compile.Predictor``)."""

from __future__ import annotations

import math
import os
import shutil
from functools import cached_property
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

import cellmap_compile as cc

from . import _spec
from .dataloader import DATALOADER_KWARGS
from .utils.geometry import box_union

_SKIP_KEYS = frozenset({"idx", "__metadata__"})


class CellMapDatasetWriter(Dataset):
    """Tiles of ``target_bounds`` (the whole raw volume when ``None``) read from ``raw_path`` and
    written, per class, to ``{target_path}/{class}`` (an OME-NGFF group with one level ``s0`` of
    the first target array's voxel size).

    Index ``i`` is tile ``i``: ``writer.writer_indices`` lists them all, ``writer[i]`` is
    ``{"idx": tensor(i), <input>: float32 [1, *spatial]}``, ``writer.loader(batch_size)``
    batches them and ``writer[batch["idx"]] = outputs`` writes a batch, where ``outputs`` is
    ``{class: [B, ...]}``, ``{array: [B, n_model_classes, ...]}`` (channels in
    ``model_classes`` order) or ``{array: {class: [B, ...]}}``. Only ``classes`` are written;
    ``model_classes`` (default ``classes``) is the model's channel order.

    Tiles are the target array's shape, never overlap and cover the region exactly (the last
    one along an axis is clipped when written); an input larger than the tile is read centred on
    it, so a network whose valid output shrinks its input by the same voxels on every side fits.
    A rerun skips nothing: every tile written is written again (``overwrite=True`` removes the
    class groups first). ``device`` and ``context`` are ignored (as in cellmap-data).
    """

    def __init__(
        self,
        raw_path: str,
        target_path: str,
        classes: Sequence[str],
        input_arrays: Mapping[str, Mapping[str, Any]],
        target_arrays: Mapping[str, Mapping[str, Any]],
        target_bounds: Optional[Mapping[str, Mapping[str, Sequence[float]]]] = None,
        overwrite: bool = False,
        device: Optional[str | torch.device] = None,
        raw_value_transforms: Optional[Callable] = None,
        model_classes: Optional[Sequence[str]] = None,
        axis_order: str = "zyx",
        context: Optional[Any] = None,
        **kwargs: Any,
    ) -> None:
        if axis_order != "zyx":
            raise ValueError(f"axis_order must be 'zyx', got {axis_order!r}")
        self.raw_path = raw_path
        self.target_path = target_path
        self.classes = list(classes)
        self.input_arrays = dict(input_arrays)
        self.target_arrays = dict(target_arrays)
        self.target_bounds = dict(target_bounds) if target_bounds else {}
        self.overwrite = overwrite
        self.raw_value_transforms = raw_value_transforms
        self.model_classes = list(model_classes) if model_classes else list(classes)
        self.axis_order = axis_order
        missing = [c for c in self.classes if c not in self.model_classes]
        if missing:
            raise ValueError(f"classes {missing} are not among model_classes {self.model_classes}")
        if not self.target_arrays:
            raise ValueError("CellMapDatasetWriter needs a target array (the shape and scale written)")
        self._target_name, target = next(iter(self.target_arrays.items()))
        if len(self.target_arrays) > 1:
            raise NotImplementedError(
                "CellMapDatasetWriter of cellmap_compile.compat writes one target array "
                f"(cellmap-data writes every one to the same groups); got {list(self.target_arrays)}"
            )
        if len(target["shape"]) > len(target["scale"]):
            raise NotImplementedError(
                "per-class channels (a target shape longer than its scale) are not written by cellmap_compile.compat"
            )
        self._tile_shape = _spec.spatial_shape(target)
        self._mapped = _spec.map_value_transforms(raw_value_transforms, random_ok=False)
        if overwrite:
            for c in self.classes:
                group = os.path.join(_spec.resolve_path(str(target_path)), c)
                if os.path.isdir(group):
                    shutil.rmtree(group)
        self._predictor = cc.Predictor(self.spec, rank=0, world_size=1)
        self._plan = self._predictor.plan
        self._input_shapes = {name: _spec.spatial_shape(info) for name, info in self.input_arrays.items()}

    # -- the spec ---------------------------------------------------------------------------

    @cached_property
    def spec(self) -> dict[str, Any]:
        """The spec of the Rust prediction writer."""
        target = self.target_arrays[self._target_name]
        tile_scale = [float(s) for s in target["scale"]]
        scale_zyx = [tile_scale[0]] * (3 - len(tile_scale)) + tile_scale
        context = None
        for name, info in self.input_arrays.items():
            shape = _spec.spatial_shape(info)
            s = [float(v) for v in info["scale"]]
            s = [s[0]] * (3 - len(s)) + s
            ctx = []
            for a in range(3):
                covered = max(1, round(self._tile_shape[a] * scale_zyx[a] / s[a]))
                extra = shape[a] - covered
                if extra < 0 or extra % 2:
                    raise NotImplementedError(
                        f"input `{name}` ({shape} voxels at {s} nm) must cover the tile ({self._tile_shape} voxels at "
                        f"{scale_zyx} nm) with the same whole number of voxels on both sides"
                    )
                ctx.append(extra // 2)
            if context is not None and ctx != context:
                raise NotImplementedError(
                    f"every input must extend the tile by the same voxels on each side; `{name}` adds {ctx}, "
                    f"an earlier one {context}"
                )
            context = ctx
        raw = _spec.resolve_path(str(self.raw_path))
        entry = _spec.DatasetEntry(raw, None, ())
        spec = _spec.base_spec(
            self.model_classes,
            self.input_arrays,
            self.target_arrays,
            None,
            [("train", entry), ("validate", entry)],
            input_interpolation="linear",
        )
        spec["augment"] = {"inputs": self._mapped.spec}
        spec["sampling"] = {"pad": True, "pad_value": {"inputs": 0.0, "targets": "nan"}}
        predict: dict[str, Any] = {
            "raw": [raw],
            "inputs": list(self.input_arrays),
            "output": os.path.join(_spec.resolve_path(str(self.target_path)), "{class}"),
            "model_classes": self.model_classes,
            "classes": self.classes,
            "scale": tile_scale,
            "tile": [int(s) for s in target["shape"]],
            "dtype": "float32",
            "zarr_format": 2,
        }
        if context and any(context):
            predict["context"] = context if len(target["shape"]) == 3 else context[1:]
        box = self.bounding_box
        if box is not None:
            lo = [float(box[ax][0]) for ax in _spec.AXES if ax in box]
            hi = [float(box[ax][1]) for ax in _spec.AXES if ax in box]
            predict["region"] = {"bounds_nm": [lo, hi]}
        spec["predict"] = predict
        return spec

    # -- boxes and tiles --------------------------------------------------------------------

    @cached_property
    def bounding_box(self) -> Optional[dict[str, tuple[float, float]]]:
        """The union of ``target_bounds`` (``None`` when none is given: the raw volume)."""
        out = None
        for bounds in self.target_bounds.values():
            box = {ax: (float(bounds[ax][0]), float(bounds[ax][1])) for ax in bounds}
            out = box if out is None else box_union(out, box)
        return out

    @cached_property
    def sampling_box(self) -> dict[str, tuple[float, float]]:
        """The box of the tile centres."""
        centres = [self._tile(i)["centre_nm"] for i in (0, len(self) - 1)]
        return {ax: (float(centres[0][a]), float(centres[1][a])) for a, ax in enumerate(_spec.AXES)}

    def _tile(self, i: int) -> dict[str, Any]:
        return self._predictor.tile(int(i))

    def __len__(self) -> int:
        return sum(math.prod(u["tile_grid"]) for u in self._plan["units"])

    @cached_property
    def writer_indices(self) -> list[int]:
        """Every tile."""
        return list(range(len(self)))

    @cached_property
    def blocks(self) -> Subset:
        return Subset(self, self.writer_indices)

    def get_center(self, idx: int | torch.Tensor) -> dict[str, float]:
        """World centre of tile ``idx`` (the centre of its input crops)."""
        return {ax: float(c) for ax, c in zip(_spec.AXES, self._tile(int(idx))["centre_nm"])}

    def get_indices(self, chunk_size: Mapping[str, float]) -> list[int]:
        """The tiles (their size is the target array's, whatever ``chunk_size`` says)."""
        return self.writer_indices

    # -- reads ------------------------------------------------------------------------------

    def _inputs(self, tiles: list[int]) -> dict[str, torch.Tensor]:
        """Input crops of ``tiles`` as cellmap-data's writer batches them: ``[B, 1, Z, Y, X]``, or
        ``[B, 1, Y, X]`` when the crop has one z slice."""
        read = self._predictor.read(tiles)
        out = {}
        for name, x in read.items():
            if self._mapped.python:
                x = torch.stack([_spec._run(self._mapped.python, x[b, 0]).unsqueeze(0) for b in range(x.shape[0])])
            shape = self._input_shapes[name]
            out[name] = x.reshape(x.shape[0], 1, *shape[1:]) if shape[0] == 1 else x
        return out

    def __getitem__(self, idx: int) -> dict[str, Any]:
        """``{"idx": tensor(idx), <input>: [1, *spatial]}`` of tile ``idx``."""
        out: dict[str, Any] = {"idx": torch.tensor(idx)}
        for name, x in self._inputs([int(idx)]).items():
            out[name] = x[0]
        return out

    def loader(self, batch_size: int = 1, num_workers: int = 0, **kwargs: Any) -> "_TileBatches":
        """Batches of every tile in order: ``{"idx": int64 [B], <input>: [B, 1, *spatial]}``."""
        unknown = sorted(set(kwargs) - DATALOADER_KWARGS - {"classes", "device", "is_train", "rng"})
        if unknown:
            raise TypeError(f"loader() got unexpected keyword argument(s) {', '.join(repr(k) for k in unknown)}")
        return _TileBatches(self, int(batch_size), bool(kwargs.get("drop_last", False)))

    # -- writes -----------------------------------------------------------------------------

    def __setitem__(self, idx: int | torch.Tensor | np.ndarray | Sequence[int], arrays: Mapping[str, Any]) -> None:
        """Write predictions of tile ``idx`` (a scalar: tensors without the batch axis) or of a
        batch of tiles (``batch["idx"]``: tensors with a leading batch axis)."""
        if isinstance(idx, torch.Tensor):
            idx = idx.detach().cpu().numpy()
        batched = isinstance(idx, (np.ndarray, list, tuple)) and np.ndim(idx) > 0
        tiles = [int(i) for i in (np.asarray(idx).reshape(-1) if batched else [idx])]
        n = len(tiles)
        per_class: dict[str, Any] = {}
        for key, value in arrays.items():
            if key in _SKIP_KEYS:
                continue
            if np.isscalar(value) or (isinstance(value, torch.Tensor) and value.ndim == 0):
                raise TypeError(f"scalar writes are not supported (key {key!r}); write a tensor or array")
            if key in self.target_arrays:
                if isinstance(value, Mapping):
                    per_class.update(value)
                elif hasattr(value, "__getitem__"):
                    t = torch.as_tensor(value)
                    if not batched:
                        t = t.unsqueeze(0)
                    for i, c in enumerate(self.model_classes):
                        per_class[c] = t[:, i : i + 1] if t.ndim > 1 and t.shape[1] > i else t
                else:
                    raise TypeError(f"unsupported value for {key!r}: {type(value).__name__}")
            elif key in self.classes or key in self.model_classes:
                per_class[key] = value
            elif not isinstance(value, (Mapping, torch.Tensor, np.ndarray, list, tuple)):
                raise TypeError(f"unsupported value for {key!r}: {type(value).__name__}")
        voxels = math.prod(self._tile_shape)
        out = torch.zeros((n, len(self.model_classes), voxels), dtype=torch.float32)
        for c, value in per_class.items():
            if c not in self.model_classes:
                continue
            t = torch.as_tensor(value).detach().to("cpu", torch.float32)
            if not batched:
                t = t.unsqueeze(0)
            if t.numel() != n * voxels:
                raise ValueError(
                    f"prediction of `{c}` has shape {tuple(t.shape)}; expected {n} tile(s) of {self._tile_shape} voxels"
                )
            out[:, self.model_classes.index(c)] = t.reshape(n, voxels)
        self._predictor.write(tiles, out.reshape(n, len(self.model_classes), *self._tile_shape))

    def __repr__(self) -> str:
        return f"CellMapDatasetWriter(target={self.target_path!r}, classes={self.classes}, len={len(self)})"


class _TileBatches:
    """``writer.loader()``: an iterable of tile batches with a length."""

    def __init__(self, writer: CellMapDatasetWriter, batch_size: int, drop_last: bool) -> None:
        self.dataset = writer
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        tiles = self.dataset.writer_indices
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            chunk = tiles[start : start + self.batch_size]
            batch: dict[str, Any] = {"idx": torch.tensor(chunk, dtype=torch.int64)}
            batch.update(self.dataset._inputs(chunk))
            yield batch

"""``EmptyImage``: the all-NaN crop of a class a dataset does not annotate."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import torch


class EmptyImage:
    """Same constructor as :class:`~cellmap_compile.compat.image.CellMapImage`; every read is a
    new NaN tensor of ``target_voxel_shape`` (NaN means *unknown*, not absent: mask it in the
    loss). It has no box (``bounding_box`` and ``sampling_box`` are ``None``) and no voxels."""

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
        self.path = path
        self.label_class = target_class
        axis_order = list(axis_order)
        scale = [float(s) for s in target_scale]
        scale = [scale[0]] * (len(axis_order) - len(scale)) + scale
        shape = [int(s) for s in target_voxel_shape]
        shape = [1] * (len(axis_order) - len(shape)) + shape
        self.axes: list[str] = axis_order[: len(shape)]
        self.scale: dict[str, float] = dict(zip(axis_order, scale))
        self.output_shape: dict[str, int] = dict(zip(axis_order, shape))
        self._nan = torch.full([self.output_shape[ax] for ax in self.axes], float("nan"))

    def __getitem__(self, center: Mapping[str, float]) -> torch.Tensor:
        return self._nan.clone()

    def set_spatial_transforms(self, transforms: Optional[dict]) -> None:
        """Nothing to transform."""

    @property
    def bounding_box(self) -> None:
        return None

    @property
    def sampling_box(self) -> None:
        return None

    @property
    def total_voxels(self) -> int:
        return 0

    @property
    def class_counts(self) -> dict[str, int]:
        return {self.label_class: 0}

    def to(self, device: str | torch.device) -> "EmptyImage":
        self._nan = self._nan.to(device)
        return self

    def __repr__(self) -> str:
        return f"EmptyImage(class={self.label_class!r}, shape={list(self.output_shape.values())})"

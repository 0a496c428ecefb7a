"""``CellMapMultiDataset``: several :class:`CellMapDataset` as one (a ``ConcatDataset``)."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import ConcatDataset

from . import _plan
from .dataset import CellMapDataset, loader_spec


class CellMapMultiDataset(ConcatDataset):
    """The concatenation of ``datasets`` (sharing ``classes`` and arrays), with cellmap-data's
    aggregates: ``class_counts``, ``class_weights``, ``get_crop_class_matrix()`` and
    ``validation_indices`` (the Rust plan's validation tiles as indices into this dataset)."""

    def __init__(
        self,
        datasets: Sequence[CellMapDataset],
        classes: Sequence[str],
        input_arrays: Mapping[str, Mapping[str, Any]],
        target_arrays: Mapping[str, Mapping[str, Any]],
    ) -> None:
        plan_together(datasets)
        super().__init__(datasets)
        self.classes = list(classes)
        self.input_arrays = dict(input_arrays)
        self.target_arrays = dict(target_arrays)

    @cached_property
    def _counts(self) -> list[dict[str, Any]]:
        """``class_counts`` of every dataset, counted in one plan."""
        datasets = [d for d in self.datasets if not d.info.excluded]
        if not datasets:
            return []
        if all("class_counts" in d.__dict__ for d in datasets):
            return [d.class_counts for d in datasets]
        by_split: dict[str, list[CellMapDataset]] = {}
        for d in datasets:
            by_split.setdefault(d._split, []).append(d)
        for split, group in by_split.items():
            infos = _plan.plan_datasets(loader_spec(group, split)[0], counts=True)
            for d, info in zip(group, infos):
                counts = info.counts or [(0, 0)] * len(d.classes)
                annotated = set(d.annotated_classes)
                d.__dict__["class_counts"] = {
                    "totals": {c: (n[0] if c in annotated else 0) for c, n in zip(d.classes, counts)},
                    "totals_total": {c: (n[1] if c in annotated else 0) for c, n in zip(d.classes, counts)},
                }
        return [d.class_counts for d in datasets]

    @property
    def class_counts(self) -> dict[str, Any]:
        """``{"totals": {class: foreground voxels}, "totals_total": {class: voxels}}`` summed over
        the datasets, at the first target array's voxel size."""
        totals = {c: 0 for c in self.classes}
        totals_total = {c: 0 for c in self.classes}
        for counts in self._counts:
            for c in self.classes:
                totals[c] += counts["totals"].get(c, 0)
                totals_total[c] += counts["totals_total"].get(c, 0)
        return {"totals": totals, "totals_total": totals_total}

    @property
    def class_weights(self) -> dict[str, float]:
        """``{class: background / max(foreground, 1)}`` (for a loss's ``pos_weight``)."""
        counts = self.class_counts
        return {
            c: float(max(counts["totals_total"][c] - counts["totals"][c], 0)) / float(max(counts["totals"][c], 1))
            for c in self.classes
        }

    def get_crop_class_matrix(self) -> np.ndarray:
        """``[n_datasets, n_classes]`` bool: which classes each dataset annotates."""
        return np.vstack([d.get_crop_class_matrix() for d in self.datasets])

    @cached_property
    def validation_indices(self) -> list[int]:
        """The validation tiles of every dataset, as indices into this dataset."""
        out: list[int] = []
        offset = 0
        for d in self.datasets:
            out.extend(offset + i for i in d.validation_indices)
            offset += len(d)
        return out

    def verify(self) -> bool:
        return len(self) > 0

    def set_raw_value_transforms(self, transforms: Optional[Callable]) -> None:
        for d in self.datasets:
            d.set_raw_value_transforms(transforms)

    def set_target_value_transforms(self, transforms: Optional[Callable | Mapping[str, Callable]]) -> None:
        for d in self.datasets:
            d.set_target_value_transforms(transforms)

    def set_spatial_transforms(self, transforms: Optional[Mapping[str, Any]]) -> None:
        for d in self.datasets:
            d.set_spatial_transforms(transforms)

    def to(self, device: str | torch.device) -> "CellMapMultiDataset":
        """No-op, as cellmap-data (the loader puts batches on its device)."""
        return self

    def __repr__(self) -> str:
        return f"CellMapMultiDataset({len(self.datasets)} datasets, classes={self.classes}, len={len(self)})"


def plan_together(datasets: Sequence[Any]) -> None:
    """Plan the not yet planned :class:`CellMapDataset`\\ s in one Rust plan per split and
    configuration (instead of one plan each)."""
    groups: dict[tuple, list[CellMapDataset]] = {}
    for d in datasets:
        if isinstance(d, CellMapDataset) and d._info is None:
            groups.setdefault((d._split, d._config_key()), []).append(d)
    for (split, _), group in groups.items():
        if len(group) < 2:
            continue
        for d, info in zip(group, _plan.plan_datasets(loader_spec(group, split)[0])):
            d._info = info

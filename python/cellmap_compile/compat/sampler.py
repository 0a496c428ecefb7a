"""``ClassBalancedSampler``: cellmap-data 2026.3's greedy class-balanced sampler, in Python.

The compat loader does not iterate it: given as ``sampler=``, it selects the Rust loader's
``class_balanced`` weighting (the same algorithm over the plan's crops).
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import numpy as np
from torch.utils.data import Sampler


class ClassBalancedSampler(Sampler):
    """Indices of ``dataset`` such that every annotated class is drawn about equally often.

    Each step takes the class drawn least so far (ties broken at random), a crop annotating it
    (a row of ``dataset.get_crop_class_matrix()``), counts every class that crop annotates, and
    yields a uniformly drawn sample index inside that crop's dataset. The counts restart with
    every ``iter()``. ``samples_per_epoch`` defaults to ``len(dataset)``.
    """

    def __init__(self, dataset: Any, samples_per_epoch: Optional[int] = None, seed: int = 42) -> None:
        self.dataset = dataset
        self.samples_per_epoch = samples_per_epoch or len(dataset)
        self.rng = np.random.default_rng(seed)
        self.crop_class_matrix = np.asarray(dataset.get_crop_class_matrix(), dtype=bool)
        self.n_crops, self.n_classes = self.crop_class_matrix.shape
        self.class_to_crops = {
            c: np.flatnonzero(self.crop_class_matrix[:, c])
            for c in range(self.n_classes)
            if self.crop_class_matrix[:, c].any()
        }
        self.active_classes = sorted(self.class_to_crops)
        if not self.active_classes:
            raise ValueError("ClassBalancedSampler: no crop annotates any of the classes")

    def _crop_range(self, row: int) -> tuple[int, int]:
        """The sample indices of crop ``row``."""
        total = len(self.dataset)
        if self.n_crops == total:
            return row, row + 1
        sizes = getattr(self.dataset, "cumulative_sizes", None)
        if sizes is not None and hasattr(self.dataset, "datasets"):
            start = int(sizes[row - 1]) if row > 0 else 0
            end = int(sizes[row])
            if start >= end:
                raise ValueError(f"ClassBalancedSampler: crop {row} has no sample")
            return start, end
        base, extra = divmod(total, max(self.n_crops, 1))
        start = row * base + min(row, extra)
        return start, start + base + (1 if row < extra else 0)

    def __iter__(self) -> Iterator[int]:
        seen = np.zeros(self.n_classes)
        active = np.array(self.active_classes)
        for _ in range(self.samples_per_epoch):
            counts = seen[active]
            target = int(self.rng.choice(active[counts == counts.min()]))
            row = int(self.rng.choice(self.class_to_crops[target]))
            seen[self.crop_class_matrix[row]] += 1
            start, end = self._crop_range(row)
            yield (
                start if end - start == 1 and self.n_crops == len(self.dataset) else int(self.rng.integers(start, end))
            )

    def __len__(self) -> int:
        return self.samples_per_epoch

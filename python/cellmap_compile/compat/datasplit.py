"""``CellMapDataSplit``: the training and validation datasets of a datasplit CSV or dict."""

from __future__ import annotations

import csv
import logging
import os
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
import torchvision.transforms.v2 as T
from torch.utils.data import Subset

from .dataset import CellMapDataset
from .multidataset import CellMapMultiDataset, plan_together
from .transforms.augment import Binarize, NaNtoNum

logger = logging.getLogger("cellmap_compile.compat")


class CellMapSubset(Subset):
    """A ``torch.utils.data.Subset`` that also answers ``to()`` and the attributes of the dataset
    it views (``classes``, ``input_arrays``, ``class_weights``, ...), so that
    ``split.validation_blocks.to(device)`` works as the segmentation challenge calls it."""

    def to(self, device: str | torch.device) -> "CellMapSubset":
        """No-op (the loader puts batches on its device)."""
        return self

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("dataset", "indices"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def _default_raw_transforms() -> T.Compose:
    return T.Compose([T.ToDtype(torch.float, scale=True), NaNtoNum({"nan": 0, "posinf": None, "neginf": None})])


_DEFAULT = object()


class CellMapDataSplit:
    """Training and validation :class:`CellMapDataset`\\ s from ``datasets`` (built already),
    ``dataset_dict`` (``{"train": [{"raw": path, "gt": path}, ...], "validate": [...]}``) or
    ``csv_path`` (cellmap-data's datasplit CSV: ``split,raw,gt`` or
    ``split,raw_root,raw_path,gt_root,gt_path``; relative paths resolve against the current
    folder), in that priority.

    The datasets are planned in Rust, all of a split in one plan; ones that cannot produce a
    sample are dropped (unless ``force_has_data``) and ones that cannot be opened are skipped with
    a warning, as in cellmap-data. ``pad`` is a bool or a string naming the splits it holds for
    (``"train"``, ``"validate"``). Keys of a ``dataset_dict`` starting with ``train`` are
    training data, every other key validation data. ``context`` and ``device`` are ignored.

    Default transforms are cellmap-data 2026.3's: raw ``Compose([ToDtype(torch.float,
    scale=True), NaNtoNum({"nan": 0, ...})])`` (raw stays 0–255: crops are float32 before the
    transforms, so the cast does not scale), targets ``Compose([ToDtype(torch.float),
    Binarize()])``. Training batches come from ``CellMapDataLoader(split.train_datasets_combined,
    ...)``, validation ones from ``CellMapDataLoader(split.validation_blocks, is_train=False)``.
    """

    def __init__(
        self,
        input_arrays: Mapping[str, Mapping[str, Sequence[int | float]]],
        target_arrays: Optional[Mapping[str, Mapping[str, Sequence[int | float]]]] = None,
        classes: Optional[Sequence[str]] = None,
        pad: bool | str = False,
        datasets: Optional[Mapping[str, Sequence[CellMapDataset]]] = None,
        dataset_dict: Optional[Mapping[str, Sequence[Mapping[str, str]]]] = None,
        csv_path: Optional[str] = None,
        spatial_transforms: Optional[Mapping[str, Any]] = None,
        train_raw_value_transforms: Optional[Callable] = _DEFAULT,  # type: ignore[assignment]
        val_raw_value_transforms: Optional[Callable] = _DEFAULT,  # type: ignore[assignment]
        target_value_transforms: Optional[Callable] = _DEFAULT,  # type: ignore[assignment]
        class_relation_dict: Optional[Mapping[str, Sequence[str]]] = None,
        force_has_data: bool = False,
        context: Optional[Any] = None,
        device: Optional[str | torch.device] = None,
    ) -> None:
        self.input_arrays = dict(input_arrays)
        self.target_arrays = dict(target_arrays) if target_arrays else {}
        self.classes = list(classes) if classes else []
        self.pad = pad
        self.spatial_transforms = spatial_transforms
        self.train_raw_value_transforms = (
            _default_raw_transforms() if train_raw_value_transforms is _DEFAULT else train_raw_value_transforms
        )
        self.val_raw_value_transforms = (
            _default_raw_transforms() if val_raw_value_transforms is _DEFAULT else val_raw_value_transforms
        )
        self.target_value_transforms = (
            T.Compose([T.ToDtype(torch.float), Binarize()])
            if target_value_transforms is _DEFAULT
            else target_value_transforms
        )
        self.class_relation_dict = class_relation_dict
        self.force_has_data = force_has_data
        self.train_datasets: list[CellMapDataset] = []
        self._validation_datasets: list[CellMapDataset] = []
        if datasets is not None:
            self.train_datasets = list(datasets.get("train", []))
            self._validation_datasets = list(datasets.get("validate", []))
            for d in self._validation_datasets:
                if isinstance(d, CellMapDataset):
                    d._split = "validate"
        elif dataset_dict is not None:
            self._construct(dataset_dict)
            self._verify_datasets()
        elif csv_path is not None:
            self._construct(self._parse_csv(csv_path))
            self._verify_datasets()

    # -- construction -----------------------------------------------------------------------

    @staticmethod
    def _parse_csv(csv_path: str) -> dict[str, list[dict[str, str]]]:
        """A datasplit CSV as a ``dataset_dict`` (5 columns join 2+3 and 4+5 into paths)."""
        out: dict[str, list[dict[str, str]]] = {"train": [], "validate": []}
        with open(csv_path, newline="") as f:
            for row in csv.reader(f):
                if not row or row[0].startswith("#"):
                    continue
                if len(row) < 3:
                    logger.warning("Skipping malformed CSV row: %s", row)
                    continue
                cols = [c.strip() for c in row]
                if len(cols) >= 5:
                    raw, gt = os.path.join(cols[1], cols[2]), os.path.join(cols[3], cols[4])
                else:
                    raw, gt = cols[1], cols[2]
                out.setdefault(cols[0], []).append({"raw": raw, "gt": gt})
        return out

    def _construct(self, dataset_dict: Mapping[str, Sequence[Mapping[str, str]]]) -> None:
        """Build the datasets, then plan each split's in one Rust plan."""
        for split, entries in dataset_dict.items():
            is_train = split.lower().startswith("train")
            pad = self.pad if isinstance(self.pad, bool) else split.lower() in str(self.pad).lower()
            for entry in entries:
                raw, gt = entry.get("raw", ""), entry.get("gt", "")
                if not raw:
                    continue
                try:
                    d = CellMapDataset(
                        raw_path=raw,
                        target_path=gt,
                        classes=self.classes,
                        input_arrays=self.input_arrays,
                        target_arrays=self.target_arrays,
                        pad=pad,
                        spatial_transforms=self.spatial_transforms if is_train else None,
                        raw_value_transforms=self.train_raw_value_transforms
                        if is_train
                        else self.val_raw_value_transforms,
                        target_value_transforms=self.target_value_transforms,
                        class_relation_dict=self.class_relation_dict,
                        force_has_data=self.force_has_data,
                    )
                except Exception as e:  # noqa: BLE001 - cellmap-data skips what it cannot build
                    logger.warning("Skipping dataset raw=%r gt=%r: %s", raw, gt, e)
                    continue
                if is_train:
                    self.train_datasets.append(d)
                else:
                    d._split = "validate"
                    self._validation_datasets.append(d)
        plan_together(self.train_datasets)
        plan_together(self._validation_datasets)

    def _verify_datasets(self) -> None:
        """Drop datasets without a sample (unless ``force_has_data``)."""
        if self.force_has_data:
            return
        for d in self.train_datasets + self._validation_datasets:
            if not d.verify():
                logger.warning("Dropping dataset raw=%r gt=%r: %s", d.raw_path, d.target_path, d.info.excluded)
        self.train_datasets = [d for d in self.train_datasets if d.verify()]
        self._validation_datasets = [d for d in self._validation_datasets if d.verify()]

    # -- combined views ---------------------------------------------------------------------

    @property
    def train_datasets_combined(self) -> CellMapMultiDataset:
        """The training datasets as one dataset (cached until a setter changes the split)."""
        if "train_datasets_combined" not in self.__dict__:
            self.__dict__["train_datasets_combined"] = CellMapMultiDataset(
                self.train_datasets, self.classes, self.input_arrays, self.target_arrays
            )
        return self.__dict__["train_datasets_combined"]

    @property
    def validation_datasets_combined(self) -> CellMapMultiDataset:
        """The validation datasets as one dataset."""
        if "validation_datasets_combined" not in self.__dict__:
            self.__dict__["validation_datasets_combined"] = CellMapMultiDataset(
                self._validation_datasets, self.classes, self.input_arrays, self.target_arrays
            )
        return self.__dict__["validation_datasets_combined"]

    @property
    def validation_datasets(self) -> list[CellMapDataset]:
        return self._validation_datasets

    @property
    def validation_blocks(self) -> CellMapSubset:
        """The validation tiles (non-overlapping crops of the first target array) as a ``Subset``
        of :attr:`validation_datasets_combined`."""
        if "validation_blocks" not in self.__dict__:
            combined = self.validation_datasets_combined
            self.__dict__["validation_blocks"] = CellMapSubset(combined, combined.validation_indices)
        return self.__dict__["validation_blocks"]

    @property
    def class_counts(self) -> dict[str, Any]:
        return {
            "train": self.train_datasets_combined.class_counts,
            "validate": self.validation_datasets_combined.class_counts,
        }

    def _invalidate(self) -> None:
        for key in ("train_datasets_combined", "validation_datasets_combined", "validation_blocks"):
            self.__dict__.pop(key, None)

    # -- setters ----------------------------------------------------------------------------

    def set_raw_value_transforms(
        self, train_transforms: Optional[Callable] = None, val_transforms: Optional[Callable] = None
    ) -> None:
        self.train_raw_value_transforms = train_transforms
        self.val_raw_value_transforms = val_transforms
        for d in self.train_datasets:
            d.set_raw_value_transforms(train_transforms)
        for d in self._validation_datasets:
            d.set_raw_value_transforms(val_transforms)
        self._invalidate()

    def set_target_value_transforms(self, transforms: Optional[Callable]) -> None:
        self.target_value_transforms = transforms
        for d in self.train_datasets + self._validation_datasets:
            d.set_target_value_transforms(transforms)
        self._invalidate()

    def set_spatial_transforms(self, spatial_transforms: Optional[Mapping[str, Any]]) -> None:
        self.spatial_transforms = spatial_transforms
        for d in self.train_datasets:
            d.set_spatial_transforms(spatial_transforms)
        self._invalidate()

    def set_arrays(
        self,
        arrays: Mapping[str, Mapping[str, Sequence[int | float]]],
        type: str = "target",
        usage: str = "validate",
    ) -> None:
        """Replace the target (``type="target"``) or input arrays of the split's record, as
        cellmap-data (its datasets keep the arrays they were built with)."""
        if type == "target":
            self.target_arrays = dict(arrays)
        else:
            self.input_arrays = dict(arrays)
        self._invalidate()

    def to(self, device: str | torch.device) -> "CellMapDataSplit":
        """No-op (the loader puts batches on its device)."""
        return self

    def __repr__(self) -> str:
        return f"CellMapDataSplit(train={len(self.train_datasets)}, val={len(self._validation_datasets)}, classes={self.classes})"

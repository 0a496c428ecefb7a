"""``CellMapDataset``: one raw volume and one ground-truth crop, as cellmap-data describes them,
planned and read by the Rust loader."""

from __future__ import annotations

import inspect
from functools import cached_property
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

import cellmap_compile as cc

from . import _plan, _spec
from .empty_image import EmptyImage
from .image import CellMapImage


class CellMapDataset(Dataset):
    """One dataset: ``raw_path`` (a raw multiscale group) and ``target_path`` (the label groups,
    ``.../crop7/[mito,er]``: the bracket list names the annotated classes; a listed class whose
    group is missing, and a class not listed, is unknown: NaN).

    ``dataset[i]`` is cellmap-data's sample: ``{"idx": tensor(i), <input>: float32 [1, *spatial],
    <target>: float32 [n_classes, *spatial]}`` (singleton axes dropped, so a 2D array gives
    ``[1, Y, X]``). ``len(dataset)`` is the number of centres of the Rust plan's grid (one per
    voxel of the first target array where the crop fits, see ``docs/python.md``).

    The training hot path does not come through here: :class:`CellMapDataLoader` gives the
    datasets to the Rust loader as a spec. ``device`` is ignored (as in cellmap-data).
    """

    def __init__(
        self,
        raw_path: str,
        target_path: str,
        classes: Sequence[str],
        input_arrays: Mapping[str, Mapping[str, Any]],
        target_arrays: Mapping[str, Mapping[str, Any]],
        pad: bool = False,
        spatial_transforms: Optional[Mapping[str, Any]] = None,
        raw_value_transforms: Optional[Callable] = None,
        target_value_transforms: Optional[Callable | Mapping[str, Callable]] = None,
        class_relation_dict: Optional[Mapping[str, Sequence[str]]] = None,
        force_has_data: bool = False,
        device: Optional[str | torch.device] = None,
        seed: Optional[int] = None,
    ) -> None:
        self.raw_path = raw_path
        self.target_path = target_path
        self.classes = list(classes) if classes else []
        self.input_arrays = dict(input_arrays)
        self.target_arrays = dict(target_arrays) if target_arrays else {}
        self.pad = pad
        self.spatial_transforms_config = spatial_transforms
        self.raw_value_transforms = raw_value_transforms
        self.target_value_transforms = target_value_transforms
        self.class_relation_dict = class_relation_dict
        self.force_has_data = force_has_data
        self._rng = np.random.default_rng(seed)
        self._entry = _spec.dataset_entry(raw_path, target_path, self.classes)
        #: The split whose rules ``dataset[i]`` follows (CellMapDataSplit sets validation ones).
        self._split = "train"
        self._info: Optional[_plan.DatasetInfo] = None
        self._draws = 0

    # -- spec -------------------------------------------------------------------------------

    @property
    def annotated_classes(self) -> list[str]:
        """Requested classes this dataset annotates (in the bracket list and present)."""
        return list(self._entry.annotated)

    def _config_key(self) -> tuple:
        """What must agree between datasets read by one loader."""
        return (
            tuple(self.classes),
            repr(self.input_arrays),
            repr(self.target_arrays),
            repr(self.class_relation_dict),
            bool(self.pad),
            repr(self.spatial_transforms_config),
            id(self.raw_value_transforms),
            id(self.target_value_transforms),
        )

    def _spec(self, split: Optional[str] = None) -> dict[str, Any]:
        """A spec of this dataset alone."""
        return loader_spec([self], split or self._split)[0]

    @property
    def info(self) -> _plan.DatasetInfo:
        """The Rust plan of this dataset (planned on first use)."""
        if self._info is None:
            self._info = _plan.plan_datasets(self._spec())[0]
        return self._info

    # -- boxes and lengths ------------------------------------------------------------------

    @property
    def bounding_box(self) -> Optional[dict[str, tuple[float, float]]]:
        """The data's box in nm (raw ∩ every annotated class), ``None`` when excluded."""
        return self.info.bbox

    @property
    def sampling_box(self) -> Optional[dict[str, tuple[float, float]]]:
        """The box of the sample centres (centres ± half a step), ``None`` when excluded."""
        return None if self.info.grid is None or not len(self.info.grid) else self.info.grid.box()

    def __len__(self) -> int:
        return len(self.info)

    def verify(self) -> bool:
        """True when the dataset has a sample (or ``force_has_data``)."""
        return len(self) > 0 or self.force_has_data

    def get_center(self, idx: int) -> dict[str, float]:
        """World centre of sample ``idx``."""
        if not len(self):
            raise IndexError(f"{self.raw_path!r} has no sample: {self.info.excluded}")
        return dict(zip(_spec.AXES, self.info.grid.centre(int(idx))))

    def get_indices(self, chunk_size: Mapping[str, float]) -> list[int]:
        """Indices of centres spaced by about ``chunk_size`` nm per axis over the sampling box."""
        box = self.sampling_box
        if box is None:
            return []
        grid = self.info.grid
        steps = [
            max(1, int(round((box[ax][1] - box[ax][0]) / chunk_size.get(ax, s))))
            for ax, s in zip(_spec.AXES, grid.step)
        ]
        out = []
        for k in np.ndindex(*steps):
            vox = tuple(int(k[a] * grid.shape[a] / steps[a]) for a in range(3))
            out.append(int(np.ravel_multi_index(vox, grid.shape)))
        return out

    @property
    def validation_indices(self) -> list[int]:
        """Indices of the centres of the Rust plan's validation tiles."""
        tiles = self.info.tiles
        if tiles is None or not len(self):
            return []
        return [self.info.grid.index_of(tiles.centre(i)) for i in range(len(tiles))]

    # -- classes ----------------------------------------------------------------------------

    def get_crop_class_matrix(self) -> np.ndarray:
        """``[1, n_classes]`` bool: which classes this dataset annotates."""
        annotated = set(self._entry.annotated)
        return np.array([[c in annotated for c in self.classes]], dtype=bool)

    @cached_property
    def class_counts(self) -> dict[str, Any]:
        """``{"totals": {class: foreground voxels}, "totals_total": {class: voxels}}`` at the first
        target array's voxel size (0 for unannotated classes)."""
        info = _plan.plan_datasets(self._spec(), counts=True)[0]
        counts = info.counts or [(0, 0)] * len(self.classes)
        annotated = set(self._entry.annotated)
        return {
            "totals": {c: (n[0] if c in annotated else 0) for c, n in zip(self.classes, counts)},
            "totals_total": {c: (n[1] if c in annotated else 0) for c, n in zip(self.classes, counts)},
        }

    @cached_property
    def input_sources(self) -> dict[str, CellMapImage]:
        """One :class:`CellMapImage` per input array (for direct reads; the loader reads in Rust)."""
        return {
            name: CellMapImage(
                _spec.resolve_path(str(self.raw_path)),
                name,
                info["scale"],
                info["shape"],
                pad=self.pad,
                value_transform=self.raw_value_transforms,
            )
            for name, info in self.input_arrays.items()
        }

    @cached_property
    def target_sources(self) -> dict[str, CellMapImage | EmptyImage]:
        """Per class, a :class:`CellMapImage` of its label group or an :class:`EmptyImage`."""
        first = next(iter(self.target_arrays.values()))
        out: dict[str, CellMapImage | EmptyImage] = {}
        for c in self.classes:
            path = "" if self._entry.targets is None else self._entry.targets.format(**{"class": c})
            if c in self._entry.annotated:
                transform = self.target_value_transforms
                if isinstance(transform, Mapping):
                    transform = transform.get(c)
                out[c] = CellMapImage(path, c, first["scale"], first["shape"], pad=self.pad, value_transform=transform)
            else:
                out[c] = EmptyImage(path, c, first["scale"], first["shape"])
        return out

    # -- samples ----------------------------------------------------------------------------

    def __getitem__(self, idx: int) -> dict[str, Any]:
        """Sample ``idx`` (see the class docs), read in Rust with the spec's transforms; value
        transforms without a Rust equivalent run here after it."""
        if not len(self):
            raise IndexError(f"{self.raw_path!r} has no sample: {self.info.excluded}")
        spec, tail = loader_spec([self], self._split)
        kwargs: dict[str, Any] = {}
        params = inspect.signature(cc.sample).parameters
        if "augment" in params:
            kwargs.update(augment=self._split == "train", epoch=self._draws, index=int(idx))
        self._draws += 1
        s = cc.sample(spec, self._split, 0, self.info.grid.centre(int(idx)), **kwargs)
        batch = {name: s[name].unsqueeze(0) for name in [*self.input_arrays, *self.target_arrays]}
        if tail:
            tail.apply(batch, 1, torch.zeros(1, dtype=torch.int64))
        out: dict[str, Any] = {"idx": torch.tensor(idx)}
        for name, info in [*self.input_arrays.items(), *self.target_arrays.items()]:
            x = batch[name][0]
            out[name] = x.reshape(x.shape[0], *_spec.squeezed_shape(_spec.spatial_shape(info)))
        return out

    # -- setters ----------------------------------------------------------------------------

    def set_raw_value_transforms(self, transforms: Optional[Callable]) -> None:
        self.raw_value_transforms = transforms
        self.__dict__.pop("input_sources", None)

    def set_target_value_transforms(self, transforms: Optional[Callable | Mapping[str, Callable]]) -> None:
        self.target_value_transforms = transforms
        self.__dict__.pop("target_sources", None)

    def set_spatial_transforms(self, transforms: Optional[Mapping[str, Any]]) -> None:
        self.spatial_transforms_config = transforms

    def to(self, device: str | torch.device) -> "CellMapDataset":
        """No-op, as cellmap-data (the loader puts batches on its device)."""
        return self

    def __repr__(self) -> str:
        return f"CellMapDataset(raw={self.raw_path!r}, classes={self.classes}, len={len(self)})"


# ----------------------------------------------------------------------------------------------
# Datasets → spec
# ----------------------------------------------------------------------------------------------


def loader_spec(
    datasets: Sequence[CellMapDataset],
    split: str,
    *,
    seed: int = 0,
    iterations: int = 1000,
    weighting: str = "uniform",
    batch_size: int = 1,
    workers: int = 1,
    prefetch: int = 4,
    pin_memory: Optional[bool] = None,
    input_interpolation: str = "nearest",
    pad_value_inputs: float | str = "nan",
) -> tuple[dict[str, Any], _spec.PythonTail]:
    """The spec reading ``datasets`` (all in ``split``, numbered in order) with the first one's
    arrays, classes and transforms, and the Python tail of its value transforms.

    A training split maps every known transform to Rust; a validation split maps only the
    deterministic ones (the Rust validation loader skips random transforms), and a random one
    runs in Python, as cellmap-data would run it.
    """
    if not datasets:
        raise ValueError("no dataset to read")
    first = datasets[0]
    random_ok = split == "train"
    spec = _spec.base_spec(
        first.classes,
        first.input_arrays,
        first.target_arrays,
        first.class_relation_dict,
        [(split, d._entry) for d in datasets],
        input_interpolation=input_interpolation,
    )
    inputs = _spec.map_value_transforms(first.raw_value_transforms, random_ok=random_ok)
    augment: dict[str, Any] = {"inputs": inputs.spec}
    tails: dict[int, list[Callable]] = {}
    targets = first.target_value_transforms
    if isinstance(targets, Mapping):
        augment["targets"] = []
        per_class = {}
        for i, c in enumerate(first.classes):
            if targets.get(c) is not None:
                m = _spec.map_value_transforms(targets[c], random_ok=random_ok)
                per_class[c] = m.spec
                tails[i] = m.python
        if per_class:
            augment["per_class"] = per_class
    else:
        m = _spec.map_value_transforms(targets, random_ok=random_ok)
        augment["targets"] = m.spec
        tails = {i: m.python for i in range(len(first.classes))}
    spatial = _spec.map_spatial(
        first.spatial_transforms_config, _spec.singleton_axes(first.input_arrays, first.target_arrays)
    )
    if spatial and split == "train":
        augment["spatial"] = spatial
    spec["augment"] = augment
    spec["sampling"] = {
        "seed": int(seed),
        "iterations_per_epoch": int(iterations),
        "weighting": weighting,
        "pad": bool(first.pad),
        "pad_value": {"inputs": pad_value_inputs, "targets": "nan"},
        "validation_tiling": True,
    }
    spec["loader"] = {"batch_size": int(batch_size), "workers": int(workers), "prefetch": int(prefetch)}
    if pin_memory is not None:
        spec["loader"]["pin_memory"] = bool(pin_memory)
    index = {c: i for i, c in enumerate(first.classes)}
    tail = _spec.PythonTail(
        {name: inputs.python for name in first.input_arrays},
        tails,
        list(first.target_arrays),
        [[index[c] for c in d._entry.annotated] for d in datasets],
        where=f"{split} split",
    )
    return spec, tail

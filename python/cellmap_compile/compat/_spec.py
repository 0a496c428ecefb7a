"""cellmap-data's configuration → spec keys: arrays, datasets, spatial and value transforms.

The compat classes keep cellmap-data's keyword arguments as they were given and turn them into a
spec dict here when a loader, a sample or a plan needs one. Value transforms are mapped to spec
transforms (run in Rust) as far as they are known; the rest of a chain runs in Python on each
crop of the batch (:class:`PythonTail`), with a one-time warning naming it and its cost.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import torch

from .transforms.augment import (
    Binarize,
    GaussianBlur,
    GaussianNoise,
    NaNtoNum,
    Normalize,
    RandomContrast,
    RandomGamma,
)
from .utils.misc import split_target_path

AXES = ("z", "y", "x")

#: What torch.nan_to_num puts for ±inf in a float32 tensor when no replacement is given.
FLOAT32_MAX = float(torch.finfo(torch.float32).max)

#: Spec name of every spec built here.
SPEC_NAME = "compat"


# ----------------------------------------------------------------------------------------------
# Arrays
# ----------------------------------------------------------------------------------------------


def array_spec(info: Mapping[str, Any], interpolation: str) -> dict[str, Any]:
    """``{"shape": (z, y, x), "scale": (z, y, x)}`` (or 2-entry 2D) as a spec array."""
    try:
        shape = [int(s) for s in info["shape"]]
        scale = [float(s) for s in info["scale"]]
    except (KeyError, TypeError) as e:
        raise ValueError(f"an array is {{'shape': (z, y, x), 'scale': (z, y, x)}}, got {dict(info)!r}") from e
    return {"shape": shape, "scale": scale, "interpolation": interpolation}


def spatial_shape(info: Mapping[str, Any]) -> list[int]:
    """The ``[z, y, x]`` crop shape of an array spec (a 2D ``[y, x]`` one has z = 1)."""
    shape = [int(s) for s in info["shape"]]
    return [1] * (3 - len(shape)) + shape


def squeezed_shape(shape_zyx: Sequence[int]) -> list[int]:
    """The spatial shape cellmap-data gives a sample's array: every singleton axis dropped."""
    return [s for s in shape_zyx if s != 1]


# ----------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------


def resolve_path(path: str) -> str:
    """A data path as cellmap-data opens it: URLs as they are, local paths against the current
    folder (made absolute now, so that a later ``chdir`` does not move the data)."""
    if "://" in path or not path:
        return path
    return os.path.abspath(os.path.expanduser(path))


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset as the spec's ``data.datasets`` lists it."""

    raw: str
    #: Label path template with ``{class}``, or ``None`` for a raw-only dataset.
    targets: Optional[str]
    #: Requested classes that are annotated (listed in the brackets and present on disk).
    annotated: tuple[str, ...]

    def spec(self, split: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"split": split, "raw": self.raw}
        if self.targets is not None:
            entry["targets"] = self.targets
            entry["classes"] = list(self.annotated)
        return entry


def dataset_entry(raw_path: str, target_path: str, classes: Sequence[str]) -> DatasetEntry:
    """cellmap-data's reading of a ground-truth path: the bracket list names the annotated
    classes, and a listed class counts only when its group exists (unannotated classes are NaN)."""
    raw = resolve_path(str(raw_path))
    if not target_path:
        return DatasetEntry(raw, None, ())
    template, listed = split_target_path(str(target_path))
    template = resolve_path(template)
    remote = "://" in template
    annotated = tuple(c for c in classes if c in listed and (remote or os.path.exists(template.format(label=c))))
    if "{label}" not in template:
        # No bracket list: the path is the one class' group.
        parent, name = os.path.split(template)
        return DatasetEntry(
            raw, os.path.join(parent, "{class}"), tuple(c for c in classes if c == name and c in annotated)
        )
    return DatasetEntry(raw, template.replace("{label}", "{class}"), annotated)


# ----------------------------------------------------------------------------------------------
# Spatial transforms
# ----------------------------------------------------------------------------------------------


def _axis(name: Any, where: str) -> str:
    if name not in AXES:
        raise ValueError(f"spatial_transforms[{where!r}]: unknown axis {name!r} (axes are 'z', 'y', 'x')")
    return name


def map_spatial(config: Optional[Mapping[str, Any]], singleton_axes: Iterable[str] = ()) -> dict[str, Any]:
    """cellmap-data's ``spatial_transforms`` as ``augment.spatial``.

    Accepts cellmap-data's forms: ``{"mirror": {"axes": {ax: p}}}`` or ``{"mirror": {ax: p}}``
    (a bool counts as probability 1 or 0; another true value mirrors every axis with 0.5);
    ``{"transpose": {"axes": [...]}}`` / ``[...]`` / ``True`` (every axis); ``{"rotate": {"axes":
    {ax: [lo, hi] | max}}}`` or the flat form (``max`` means ``[-max, max]`` degrees). Axes whose
    crop has one voxel (``singleton_axes``, the z of 2D arrays) are never transposed.
    """
    if not config:
        return {}
    singleton = set(singleton_axes)
    spatial: dict[str, Any] = {}
    unknown = sorted(set(config) - {"mirror", "transpose", "rotate"})
    if unknown:
        warnings.warn(
            f"spatial_transforms: {unknown} not known to cellmap-data 2026.3 (which ignores them); not applied",
            UserWarning,
            stacklevel=4,
        )
    mirror = config.get("mirror")
    if mirror:
        probs = mirror.get("axes", mirror) if isinstance(mirror, Mapping) else None
        if isinstance(probs, Mapping):
            m = {_axis(ax, "mirror"): float(p) for ax, p in probs.items()}
        else:
            m = {ax: 0.5 for ax in AXES}
        m = {ax: p for ax, p in m.items() if p > 0}
        if m:
            spatial["mirror"] = m
    transpose = config.get("transpose")
    if transpose:
        listed = transpose.get("axes", AXES) if isinstance(transpose, Mapping) else transpose
        if isinstance(listed, (str, bytes)) or not isinstance(listed, Iterable):
            listed = AXES
        axes = [_axis(ax, "transpose") for ax in listed]
        axes = [ax for ax in AXES if ax in axes and ax not in singleton]
        if len(axes) >= 2:
            spatial["transpose"] = axes
    rotate = config.get("rotate")
    if rotate:
        angles = rotate.get("axes", rotate) if isinstance(rotate, Mapping) else None
        if not isinstance(angles, Mapping):
            warnings.warn(
                f"spatial_transforms['rotate'] = {rotate!r} is not a dict of axes (cellmap-data ignores it too); not applied",
                UserWarning,
                stacklevel=4,
            )
        else:
            r = {}
            for ax, value in angles.items():
                if isinstance(value, (list, tuple)):
                    lo, hi = float(value[0]), float(value[1])
                else:
                    lo, hi = -float(value), float(value)
                if lo != 0 or hi != 0:
                    r[_axis(ax, "rotate")] = [lo, hi]
            if r:
                spatial["rotate"] = r
    return spatial


# ----------------------------------------------------------------------------------------------
# Value transforms
# ----------------------------------------------------------------------------------------------

_CELLMAP_DATA = "cellmap_data."


def _is(t: Any, cls: type) -> bool:
    """``t`` is ``cls`` or cellmap-data's class of the same name (a script mixing imports)."""
    if isinstance(t, cls):
        return True
    k = type(t)
    return k.__name__ == cls.__name__ and k.__module__.startswith(_CELLMAP_DATA)


def flatten(transform: Any) -> list[Any]:
    """The leaves of nested ``Compose`` / ``nn.Sequential`` chains, in order."""
    if transform is None:
        return []
    inner = getattr(transform, "transforms", None)
    if type(transform).__name__ == "Compose" and isinstance(inner, (list, tuple)):
        return [leaf for t in inner for leaf in flatten(t)]
    if isinstance(transform, torch.nn.Sequential):
        return [leaf for t in transform for leaf in flatten(t)]
    return [transform]


def _to_spec(t: Any, random_ok: bool) -> Optional[list[dict[str, Any]]]:
    """Spec transforms doing what ``t`` does to a float32 crop, or ``None`` when ``t`` is unknown
    (or random and ``random_ok`` is false)."""
    name = type(t).__name__
    module = type(t).__module__
    if name == "Identity":
        return []
    if name == "ToDtype" and module.startswith("torchvision."):
        # cellmap-data 2026.3 reads every crop as float32 before its transforms, so a cast to
        # float32 is the identity (with scale=True too: float to float is not rescaled).
        return [] if getattr(t, "dtype", None) in (torch.float32,) else None
    if name == "Normalize" and module.startswith("torchvision."):
        mean, std = list(getattr(t, "mean", [])), list(getattr(t, "std", []))
        if len(mean) == 1 and len(std) == 1 and float(std[0]) != 0:
            return [{"normalize": {"shift": float(mean[0]), "scale": float(std[0])}}]
        return None
    if _is(t, Binarize):
        return [{"binarize": {"threshold": float(t.threshold)}}]
    if _is(t, NaNtoNum):
        p = t.params
        pos, neg = p.get("posinf"), p.get("neginf")
        return [
            {
                "nan_to_num": {
                    "nan": float(p.get("nan", 0.0)),
                    "posinf": FLOAT32_MAX if pos is None else float(pos),
                    "neginf": -FLOAT32_MAX if neg is None else float(neg),
                }
            }
        ]
    if _is(t, Normalize):
        if float(t.scale) == 0:
            return None
        return [{"normalize": {"shift": -float(t.shift), "scale": 1.0 / float(t.scale)}}]
    if _is(t, GaussianBlur):
        if not (float(t.sigma) > 0 and t.kernel_size // 2 <= 1024):
            return None
        s = float(t.sigma)
        sigma = [s, s, s] if t.dim == 3 else [0.0, s, s]
        return [{"gaussian_blur": {"sigma": sigma, "radius": int(t.kernel_size // 2)}}]
    if not random_ok:
        return None
    if _is(t, GaussianNoise):
        if float(t.std) < 0:
            return None
        return [{"gaussian_noise": {"mean": float(t.mean), "std": float(t.std)}}]
    if _is(t, RandomContrast) or _is(t, RandomGamma):
        lo, hi = (float(v) for v in (t.contrast_range if _is(t, RandomContrast) else t.gamma_range))
        if not 0 < lo <= hi:
            return None
        key = "random_contrast" if _is(t, RandomContrast) else "random_gamma"
        return [{key: {"range": [lo, hi]}}]
    return None


@dataclass
class Mapped:
    """A transform chain split into what Rust runs (``spec``) and what Python runs after it."""

    spec: list[dict[str, Any]] = field(default_factory=list)
    python: list[Callable] = field(default_factory=list)


def map_value_transforms(transform: Optional[Callable], *, random_ok: bool) -> Mapped:
    """Map ``transform`` (a callable, a ``Compose`` of them, or ``None``) to spec transforms;
    everything from the first one that cannot be mapped on runs in Python, in order."""
    mapped = Mapped()
    leaves = flatten(transform)
    for i, t in enumerate(leaves):
        spec = _to_spec(t, random_ok)
        if spec is None:
            mapped.python = leaves[i:]
            break
        mapped.spec.extend(spec)
    return mapped


# ----------------------------------------------------------------------------------------------
# Python tails
# ----------------------------------------------------------------------------------------------

_warned: set[tuple[str, str]] = set()


class PythonTail:
    """The part of a value-transform chain the Rust loader cannot run, applied to each crop of a
    batch as cellmap-data applies it to each crop of a sample.

    ``inputs[name]`` is the chain of an input array (run on its ``[Z, Y, X]`` crop); ``targets``
    is ``{class channel: chain}`` (run on a class crop ``[Z, Y, X]``, only where the crop's dataset
    annotates the class: cellmap-data does not transform an unannotated class' NaN crop).
    """

    def __init__(
        self,
        inputs: Mapping[str, list[Callable]],
        targets: Mapping[int, list[Callable]],
        target_names: Sequence[str],
        annotated: Sequence[Sequence[int]],
        where: str,
    ) -> None:
        self.inputs = {k: v for k, v in inputs.items() if v}
        self.targets = {k: v for k, v in targets.items() if v}
        self.target_names = list(target_names)
        #: Per dataset of the split (batch ``dataset`` index): annotated class channels.
        self.annotated = [set(a) for a in annotated]
        self.where = where
        self._timed = False

    def __bool__(self) -> bool:
        return bool(self.inputs) or bool(self.targets)

    def apply(self, batch: dict[str, torch.Tensor], n: int, dataset: Optional[torch.Tensor]) -> None:
        """Transform the first ``n`` samples of ``batch`` (arrays ``[B, C, Z, Y, X]``) in place of
        its arrays (a new tensor when a transform changes the dtype or shape)."""
        start = time.perf_counter()
        for name, chain in self.inputs.items():
            x = batch[name]
            batch[name] = _stack([_run(chain, x[b, c]) for c in range(x.shape[1])] for b in range(n))
        for name in self.target_names:
            if not self.targets:
                break
            x = batch[name]
            out = []
            for b in range(n):
                ds = int(dataset[b]) if dataset is not None else -1
                annotated = self.annotated[ds] if 0 <= ds < len(self.annotated) else set(range(x.shape[1]))
                out.append(
                    [
                        _run(self.targets[c], x[b, c]) if c in self.targets and c in annotated else x[b, c]
                        for c in range(x.shape[1])
                    ]
                )
            batch[name] = _stack(out)
        if not self._timed:
            self._timed = True
            self._warn((time.perf_counter() - start) * 1e3, n)

    def _warn(self, ms: float, n: int) -> None:
        chains = [
            *self.inputs.items(),
            *((self.target_names[0] if self.target_names else "targets", c) for c in self.targets.values()),
        ]
        names = sorted({repr(t) for _, chain in chains for t in chain[:1]})
        key = (self.where, "|".join(names))
        if key in _warned:
            return
        _warned.add(key)
        warnings.warn(
            f"cellmap_compile.compat ({self.where}): the value transform(s) {', '.join(names)} and those after them "
            f"have no Rust equivalent; they run in Python on each crop after the Rust loader, on the main thread: "
            f"{ms:.1f} ms for the first batch of {n} samples. Use the transforms of "
            f"cellmap_compile.compat.transforms.augment (or torchvision's ToDtype/Normalize) to keep them in Rust.",
            UserWarning,
            stacklevel=5,
        )


def _run(chain: list[Callable], x: torch.Tensor) -> torch.Tensor:
    for t in chain:
        x = t(x)
    return x


def _stack(rows: Iterable[Iterable[torch.Tensor]]) -> torch.Tensor:
    return torch.stack([torch.stack(list(r)) for r in rows])


# ----------------------------------------------------------------------------------------------
# The spec
# ----------------------------------------------------------------------------------------------


def class_relations(relations: Optional[Mapping[str, Sequence[str]]], classes: Sequence[str]) -> dict[str, list[str]]:
    """``class_relation_dict`` restricted to ``classes`` (the challenge's helper lists every class
    it knows)."""
    if not relations:
        return {}
    known = set(classes)
    out = {}
    for c, related in relations.items():
        if c in known:
            keep = [r for r in related if r in known and r != c]
            if keep:
                out[c] = keep
    return out


def pad_for(pad: bool | str, split: str) -> bool:
    """cellmap-data's ``pad`` for one split: a bool, or a string naming the splits it holds for."""
    if isinstance(pad, str):
        return split.lower() in pad.lower()
    return bool(pad)


def base_spec(
    classes: Sequence[str],
    input_arrays: Mapping[str, Mapping[str, Any]],
    target_arrays: Mapping[str, Mapping[str, Any]],
    relations: Optional[Mapping[str, Sequence[str]]],
    entries: Sequence[tuple[str, DatasetEntry]],
    *,
    input_interpolation: str = "nearest",
) -> dict[str, Any]:
    """The spec keys every compat spec has: classes, arrays, datasets (``(split, entry)``)."""
    if not classes:
        raise ValueError(
            "cellmap_compile.compat needs `classes` (cellmap-data 2026.3 cannot train without classes either)"
        )
    if not target_arrays:
        raise ValueError("cellmap_compile.compat needs `target_arrays`")
    spec: dict[str, Any] = {
        "version": 1,
        "name": SPEC_NAME,
        "classes": list(classes),
        "arrays": {
            "inputs": {n: array_spec(i, input_interpolation) for n, i in input_arrays.items()},
            "targets": {n: array_spec(i, "nearest") for n, i in target_arrays.items()},
        },
        "data": {"datasets": [e.spec(split) for split, e in entries]},
    }
    rel = class_relations(relations, classes)
    if rel:
        spec["class_relations"] = rel
    return spec


def singleton_axes(*array_groups: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Axes along which some array has a single voxel."""
    out = set()
    for group in array_groups:
        for info in group.values():
            out |= {ax for ax, s in zip(AXES, spatial_shape(info)) if s == 1}
    return out


def iterations_for(samples: int, batch_size: int, drop_last: bool) -> tuple[int, int, int]:
    """``(spec iterations, batches, samples in the last batch)`` for an epoch of ``samples``."""
    batches = samples // batch_size if drop_last else math.ceil(samples / batch_size)
    last = batch_size if drop_last or samples % batch_size == 0 else samples % batch_size
    return max(1, batches) * batch_size, batches, last

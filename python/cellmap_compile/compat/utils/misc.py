"""Small helpers of cellmap-data's ``utils`` (array-spec shapes, paths, dtypes, index draws)."""

from __future__ import annotations

import os
from difflib import SequenceMatcher
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

_INT_MAX = {
    torch.uint8: 255,
    torch.int8: 127,
    torch.int16: 32767,
    torch.int32: 2147483647,
    torch.int64: 9223372036854775807,
}


def torch_max_value(dtype: torch.dtype) -> int:
    """The largest value of an integer dtype (uint8, int8, int16, int32, int64); 1 for every
    other dtype (floats are taken to lie in ``[0, 1]``)."""
    return _INT_MAX.get(dtype, 1)


def longest_common_substring(a: str, b: str) -> str:
    """The longest run of characters ``a`` and ``b`` share (the first one in ``a`` on a tie)."""
    m = SequenceMatcher(None, a, b).find_longest_match(0, len(a), 0, len(b))
    return a[m.a : m.a + m.size]


def split_target_path(path: str) -> tuple[str, list[str]]:
    """``"a/crop1/[mito,er]/x"`` → ``("a/crop1/{label}/x", ["mito", "er"])``; a path without a
    bracket list names one class, its last component: ``(path, [basename])``."""
    if path.count("[") == 1 and path.count("]") == 1 and path.index("[") < path.index("]"):
        head, rest = path.split("[")
        inner, tail = rest.split("]")
        return head + "{label}" + tail, inner.split(",")
    return path, [path.split(os.path.sep)[-1]]


def is_array_2D(array_info: Mapping[str, Any] | None, summary: Optional[Callable] = None) -> bool | Mapping[str, bool]:
    """True when an array spec's ``shape`` has two entries. Given ``{name: spec}``, a dict of the
    answers per name, or ``summary(answers)`` (e.g. ``any``) when ``summary`` is given."""
    if not array_info:
        return False
    if "shape" in array_info:
        return len(array_info["shape"]) == 2
    answers = {name: is_array_2D(info) for name, info in array_info.items()}
    return summary(answers.values()) if summary is not None else answers


def array_has_singleton_dim(array_info: Mapping[str, Any] | None, summary: bool = True) -> bool | Mapping[str, bool]:
    """True when an array spec's ``shape`` contains a 1. Given ``{name: spec}``: ``any`` of the
    answers (``summary=True``) or the answers per name."""
    if not array_info:
        return False
    if "shape" in array_info:
        return 1 in array_info["shape"]
    answers = {name: array_has_singleton_dim(info) for name, info in array_info.items()}
    return any(answers.values()) if summary else answers


def get_sliced_shape(shape: Sequence[int], axis: int) -> Sequence[int]:
    """``shape`` with its singleton moved to ``axis`` (or a singleton inserted there when it has
    none): ``([64, 64], 0)`` → ``[1, 64, 64]``, ``([1, 64, 64], 2)`` → ``[64, 64, 1]``."""
    out = list(shape)
    if 1 in out:
        out.insert(axis, out.pop(out.index(1)))
    else:
        out.insert(axis, 1)
    return out


def expand_scale(scale: Sequence[float]) -> Sequence[float]:
    """A 2-entry scale ``[y, x]`` as ``[y, y, x]`` (the slicing axis gets the first voxel size)."""
    out = list(scale)
    if len(out) == 2:
        out.insert(0, out[0])
    return out


def permute_singleton_dimension(arr_dict: dict[str, Any], axis: int) -> None:
    """In place: every array spec (``arr_dict`` itself or its values) gets its singleton at
    ``axis`` (:func:`get_sliced_shape`) and a 3-entry scale (:func:`expand_scale`)."""
    if "shape" in arr_dict and "scale" in arr_dict:
        arr_dict["shape"] = get_sliced_shape(arr_dict["shape"], axis)
        arr_dict["scale"] = expand_scale(arr_dict["scale"])
        return
    for info in arr_dict.values():
        permute_singleton_dimension(info, axis)


def min_redundant_inds(n: int, k: int, replacement: bool, rng: Optional[torch.Generator] = None) -> torch.Tensor:
    """``k`` indices in ``[0, n)``: with ``replacement`` uniform draws; without, a random
    permutation (cut to ``k``), repeated as whole permutations (then one cut) when ``k > n`` so
    that no index appears twice more often than another."""
    if replacement:
        return torch.randint(n, (k,), generator=rng)
    parts = [torch.randperm(n, generator=rng) for _ in range(k // n)] if k > n else []
    rest = k - len(parts) * n
    if rest > 0:
        parts.append(torch.randperm(n, generator=rng)[:rest])
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)

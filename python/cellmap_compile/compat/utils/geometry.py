"""World boxes ``{axis: (lo_nm, hi_nm)}``: intersection, union, voxel counts."""

from __future__ import annotations


def box_intersection(a: dict, b: dict) -> dict | None:
    """The overlap of ``a`` and ``b`` on their shared axes; ``None`` when an axis does not overlap
    (touching boxes do not overlap) or no axis is shared."""
    out = {}
    for ax, (lo_a, hi_a) in a.items():
        if ax not in b:
            continue
        lo, hi = max(lo_a, b[ax][0]), min(hi_a, b[ax][1])
        if lo >= hi:
            return None
        out[ax] = (lo, hi)
    return out or None


def box_union(a: dict, b: dict) -> dict:
    """The smallest box holding ``a`` and ``b`` (an axis of one only is taken from it)."""
    out = {}
    for ax in set(a) | set(b):
        if ax in a and ax in b:
            out[ax] = (min(a[ax][0], b[ax][0]), max(a[ax][1], b[ax][1]))
        else:
            out[ax] = a[ax] if ax in a else b[ax]
    return out


def box_shape(box: dict, scale: dict) -> dict:
    """Voxels per axis, ``round(extent / voxel size)``, at least 1."""
    return {ax: max(1, int(round((hi - lo) / scale[ax]))) for ax, (lo, hi) in box.items()}

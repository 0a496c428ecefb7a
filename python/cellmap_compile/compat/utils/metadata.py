"""OME-NGFF 0.4 ``multiscales`` metadata as cellmap-data writes it, and its level choice."""

from __future__ import annotations

import json
import os
from typing import Any, Optional


def generate_base_multiscales_metadata(
    ds_name: str, scale_level: int, voxel_size: list, translation: list, units: str, axes: list
) -> dict[str, Any]:
    """``.zattrs`` of a group with one level ``s{scale_level}`` (``ds_name`` is cut after
    ``.zarr``)."""
    if ".zarr" in ds_name:
        ds_name = ds_name.split(".zarr")[-1]
    return {
        "multiscales": [
            {
                "axes": [{"name": a, "type": "space", "unit": units} for a in axes],
                "coordinateTransformations": [{"scale": [1.0, 1.0, 1.0], "type": "scale"}],
                "datasets": [
                    {
                        "coordinateTransformations": [
                            {"scale": voxel_size, "type": "scale"},
                            {"translation": translation, "type": "translation"},
                        ],
                        "path": f"s{scale_level}",
                    }
                ],
                "name": ds_name,
                "version": "0.4",
            }
        ]
    }


def add_multiscale_metadata_levels(multsc: dict[str, Any], base_scale_level: int, levels_to_add: int) -> dict[str, Any]:
    """Append ``levels_to_add`` levels: for ``k`` from ``base_scale_level``, level ``s{k+1}`` with
    scale ``base·2^k`` and translation ``base·(2^(k−1) − 0.5) + base translation`` (as cellmap-data
    numbers them: from 0, ``s1`` repeats the base scale). Changes and returns ``multsc``."""
    first = multsc["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    base_scale, base_trans = first[0]["scale"], first[1]["translation"]
    for level in range(base_scale_level, base_scale_level + levels_to_add):
        multsc["multiscales"][0]["datasets"].append(
            {
                "coordinateTransformations": [
                    {"type": "scale", "scale": [s * 2**level for s in base_scale]},
                    {
                        "type": "translation",
                        "translation": [s * (2 ** (level - 1) - 0.5) + t for s, t in zip(base_scale, base_trans)],
                    },
                ],
                "path": f"s{level + 1}",
            }
        )
    return multsc


def create_multiscale_metadata(
    ds_name: str,
    voxel_size: list,
    translation: list,
    units: str,
    axes: list,
    base_scale_level: int = 0,
    levels_to_add: int = 0,
    out_path: Optional[str] = None,
) -> Optional[dict[str, Any]]:
    """The metadata of :func:`generate_base_multiscales_metadata` plus ``levels_to_add`` levels;
    written to ``out_path`` (then ``None`` is returned) or returned."""
    attrs = generate_base_multiscales_metadata(ds_name, base_scale_level, voxel_size, translation, units, axes)
    if levels_to_add > 0:
        attrs = add_multiscale_metadata_levels(attrs, base_scale_level, levels_to_add)
    if out_path is None:
        return attrs
    write_metadata(attrs, out_path)
    return None


def write_metadata(z_attrs: dict[str, Any], out_path: str) -> None:
    """Write ``z_attrs`` as indented JSON."""
    with open(out_path, "w") as f:
        f.write(json.dumps(z_attrs, indent=4))


def _multiscale(path: str) -> dict[str, Any]:
    """The first ``multiscales`` entry of a local zarr v2 (``.zattrs``) or v3 (``zarr.json``) group."""
    v2 = os.path.join(path, ".zattrs")
    if os.path.exists(v2):
        with open(v2) as f:
            return json.load(f)["multiscales"][0]
    with open(os.path.join(path, "zarr.json")) as f:
        attrs = json.load(f).get("attributes", {})
    return attrs.get("ome", attrs)["multiscales"][0]


def find_level(path: str, target_scale: dict[str, float]) -> str:
    """Path of the coarsest level of the multiscale group at ``path`` that is not coarser than
    ``target_scale`` (``{axis: nm}``) on any axis; the first level when all are coarser. (This is
    the level the compat loader reads, too.)"""
    ms = _multiscale(path)
    axes = [
        a["name"] if isinstance(a, dict) else str(a)
        for a in ms["axes"]
        if not isinstance(a, dict) or a.get("type", "space") == "space"
    ]
    chosen: Optional[str] = None
    for level in ms["datasets"]:
        scale = next(t["scale"] for t in level["coordinateTransformations"] if t.get("type") == "scale")
        by_axis = dict(zip(axes, scale[-len(axes) :]))
        if any(by_axis[a] > target_scale[a] for a in axes if a in target_scale):
            return chosen if chosen is not None else level["path"]
        chosen = level["path"]
    return chosen  # type: ignore[return-value]

"""What the compat datasets need from the Rust plan: centre grids, validation tiles, boxes, class
counts and exclusions, per dataset."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import cellmap_compile as cc

from . import _spec

logger = logging.getLogger("cellmap_compile.compat")


@dataclass(frozen=True)
class Grid:
    """Centres ``origin + i·step`` (nm, z y x), ``i < shape``, row-major (x fastest)."""

    origin: tuple[float, float, float]
    step: tuple[float, float, float]
    shape: tuple[int, int, int]

    @staticmethod
    def of(d: dict[str, Any]) -> "Grid":
        return Grid(tuple(d["origin_nm"]), tuple(d["step_nm"]), tuple(int(s) for s in d["shape"]))

    def __len__(self) -> int:
        return math.prod(self.shape)

    def centre(self, i: int) -> tuple[float, float, float]:
        """Centre of flat index ``i`` (taken modulo the grid's length)."""
        n = len(self)
        if n == 0:
            raise IndexError("the grid is empty")
        i %= n
        _, ny, nx = self.shape
        index = (i // (ny * nx), (i // nx) % ny, i % nx)
        return tuple(o + k * s for o, k, s in zip(self.origin, index, self.step))

    def index_of(self, centre: Sequence[float]) -> int:
        """Flat index of the grid centre whose crop is the one centred at ``centre`` (the
        nearest centre; half-way goes to the lower one, as the crop start rounds)."""
        index = []
        for c, o, s, n in zip(centre, self.origin, self.step, self.shape):
            k = math.floor((c - o) / s + 0.5 - 1e-6)
            index.append(min(max(k, 0), n - 1))
        _, ny, nx = self.shape
        return (index[0] * ny + index[1]) * nx + index[2]

    def box(self) -> dict[str, tuple[float, float]]:
        """cellmap-data's ``sampling_box``: centres ± half a step at the ends."""
        return {
            ax: (o - s / 2, o + (n - 1) * s + s / 2)
            for ax, o, s, n in zip(_spec.AXES, self.origin, self.step, self.shape)
        }


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset as planned: ``excluded`` says why it produces no sample (then the rest is empty)."""

    grid: Optional[Grid]
    tiles: Optional[Grid]
    bbox: Optional[dict[str, tuple[float, float]]]
    #: ``(foreground, total)`` per class (when counted).
    counts: Optional[list[tuple[int, int]]]
    excluded: Optional[str] = None

    def __len__(self) -> int:
        return 0 if self.grid is None else len(self.grid)


def _info(d: dict[str, Any]) -> DatasetInfo:
    box = d["bbox_nm"]
    counts = d.get("class_counts")
    return DatasetInfo(
        grid=Grid.of(d["grid"]),
        tiles=Grid.of(d["tiles"]),
        bbox={ax: (lo, hi) for ax, lo, hi in zip(_spec.AXES, box["lo_nm"], box["hi_nm"])},
        counts=None if counts is None else [(int(c["foreground"]), int(c["total"])) for c in counts],
    )


def plan_datasets(spec: dict[str, Any], *, counts: bool = False) -> list[DatasetInfo]:
    """One :class:`DatasetInfo` per entry of ``spec["data"]["datasets"]``, in that order.

    Planning all at once fails when one dataset cannot be opened or a split has no sample left;
    then each dataset is planned alone and a failing one is excluded with the error as reason
    (cellmap-data logs and skips a dataset whose construction fails).
    """
    entries = spec["data"]["datasets"]
    if not entries:
        return []
    try:
        return _match(entries, cc.plan(spec, counts=counts))
    except cc.SpecError:
        raise
    except cc.CellmapError:
        if len(entries) == 1:
            return [_alone(spec, counts)]
    out = []
    for entry in entries:
        one = dict(spec)
        one["data"] = {"datasets": [entry]}
        out.append(_alone(one, counts))
    return out


def _alone(spec: dict[str, Any], counts: bool) -> DatasetInfo:
    """Plan a spec of one dataset; its failure is the dataset's exclusion."""
    entry = spec["data"]["datasets"][0]
    try:
        return _match([entry], cc.plan(spec, counts=counts))[0]
    except cc.SpecError:
        raise
    except cc.CellmapError as e:
        reason = str(e).replace("\n", " ").strip()
        logger.warning("Skipping dataset raw=%r targets=%r: %s", entry.get("raw"), entry.get("targets"), reason)
        return DatasetInfo(None, None, None, None, excluded=reason)


def _match(entries: list[dict[str, Any]], plan: dict[str, Any]) -> list[DatasetInfo]:
    """Plan datasets (numbered per split in spec order) back to spec order."""
    position: dict[tuple[str, int], int] = {}
    seen = {"train": 0, "validate": 0}
    for i, e in enumerate(entries):
        position[(e["split"], seen[e["split"]])] = i
        seen[e["split"]] += 1
    out: list[Optional[DatasetInfo]] = [None] * len(entries)
    for d in plan["datasets"]:
        out[position[(d["split"], d["index"])]] = _info(d)
    for x in plan.get("excluded", []):
        out[position[(x["split"], x["index"])]] = DatasetInfo(None, None, None, None, excluded=x["reason"])
    return [o if o is not None else DatasetInfo(None, None, None, None, excluded="not planned") for o in out]

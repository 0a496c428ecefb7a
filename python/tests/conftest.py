"""Shared fixtures of the `cellmap_compile` tests.

Synthetic data is written once per session (`cellmap-compile synth`, through the extension) into a
temporary folder, with small specs beside it (relative data paths resolve against a spec's folder):

  loader.yaml   24³ raw / 16³ labels at 8 nm, batches of 4, 2 workers, 3 ring slots, 24 samples
                per epoch (6 batches), as tests/python/run.sh writes it
  small.yaml    the same with 8³ / 4³ crops (cheap batches)

Every test gets its own plan cache (`CELLMAP_CACHE_DIR` under its tmp_path), so that no test sees a
plan another one cached, and none writes into the user's cache.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cellmap_compile import _native

CLASSES = ["mito", "er", "nuc", "pm"]
BATCH = 4
WORKERS = 2
PREFETCH = 3
ITERATIONS = 24
BATCHES_PER_EPOCH = ITERATIONS // BATCH
RAW_SHAPE = [24, 24, 24]
LABEL_SHAPE = [16, 16, 16]
SCALE = [8, 8, 8]

#: The raw group and the label crops inside the synthetic data folder.
RAW_GROUP = "v2/synth.zarr/recon-1/em/fibsem-uint8"
TRAIN_CROP = "v2/synth.zarr/recon-1/labels/groundtruth/crop1"
VALIDATE_CROP = "v2/synth.zarr/recon-1/labels/groundtruth/crop2"

LOADER_YAML = f"""\
version: 1
name: pytest_loader
classes: [mito, er, nuc, pm]
arrays:
  inputs:
    raw: {{ shape: {RAW_SHAPE}, scale: {SCALE} }}
  targets:
    labels: {{ shape: {LABEL_SHAPE}, scale: {SCALE} }}
data:
  csv: datasplit.csv
sampling:
  seed: 42
  iterations_per_epoch: {ITERATIONS}
loader:
  batch_size: {BATCH}
  workers: {WORKERS}
  prefetch: {PREFETCH}
"""


def loader_dict(csv: str = "datasplit.csv", *, raw: list[int] = RAW_SHAPE, labels: list[int] = LABEL_SHAPE) -> dict[str, Any]:
    """The keys of `loader.yaml` as a dict (the CSV path given)."""
    return {
        "version": 1,
        "name": "pytest_loader",
        "classes": list(CLASSES),
        "arrays": {
            "inputs": {"raw": {"shape": list(raw), "scale": list(SCALE)}},
            "targets": {"labels": {"shape": list(labels), "scale": list(SCALE)}},
        },
        "data": {"csv": csv},
        "sampling": {"seed": 42, "iterations_per_epoch": ITERATIONS},
        "loader": {"batch_size": BATCH, "workers": WORKERS, "prefetch": PREFETCH},
    }


@dataclass(frozen=True)
class Synth:
    """The session's synthetic data and specs."""

    #: Folder holding `v2/`, `v3/`, `datasplit.csv` and the specs.
    root: Path
    #: `loader.yaml`: the small training spec (see the module docs).
    spec: Path
    #: `small.yaml`: the same with 8³ / 4³ crops.
    small_spec: Path

    @property
    def csv(self) -> Path:
        return self.root / "datasplit.csv"

    @property
    def raw(self) -> Path:
        return self.root / RAW_GROUP

    def label(self, crop: str, cls: str) -> Path:
        """The label group of class `cls` in `crop` (`TRAIN_CROP` or `VALIDATE_CROP`)."""
        return self.root / crop / cls


def write_specs(root: Path) -> tuple[Path, Path]:
    """Write `loader.yaml` and `small.yaml` into `root` (beside its `datasplit.csv`)."""
    spec = root / "loader.yaml"
    spec.write_text(LOADER_YAML)
    small = root / "small.yaml"
    small.write_text(
        LOADER_YAML.replace(f"shape: {RAW_SHAPE}", "shape: [8, 8, 8]")
        .replace(f"shape: {LABEL_SHAPE}", "shape: [4, 4, 4]")
        .replace("name: pytest_loader", "name: pytest_small")
    )
    return spec, small


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Synthetic CellMap-layout data (written once per session) and the small specs."""
    root = tmp_path_factory.mktemp("synth")
    code = _native.cli(["cellmap-compile", "synth", str(root)])
    assert code == 0, f"cellmap-compile synth exited with {code}"
    assert (root / "datasplit.csv").is_file() and (root / RAW_GROUP).is_dir()
    spec, small = write_specs(root)
    return Synth(root=root, spec=spec, small_spec=small)


@pytest.fixture
def synth_copy(synth: Synth, tmp_path: Path) -> Synth:
    """A private copy of the synthetic data (v2 only) with its specs, which a test may change or move."""
    root = tmp_path / "data"
    root.mkdir()
    shutil.copytree(synth.root / "v2", root / "v2")
    shutil.copy2(synth.csv, root / "datasplit.csv")
    spec, small = write_specs(root)
    return Synth(root=root, spec=spec, small_spec=small)


@pytest.fixture(autouse=True)
def plan_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A plan cache of this test's own (`CELLMAP_CACHE_DIR`)."""
    path = tmp_path / "plans"
    monkeypatch.setenv("CELLMAP_CACHE_DIR", str(path))
    # A torchrun environment around the test run must not make the loaders distributed.
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return path

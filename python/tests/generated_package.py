"""Tests of a package built with `cellmap-compile build --python` (pure Python over the
installed `cellmap_compile` wheel, spec and plan compiled in) against the `cellmap-compile` CLI.

Run by python/tests/run.sh, which synthesises data, writes the spec `pyloader.yaml`, builds
and installs the package `pyloader` and sets:
  CELLMAP_COMPILE  the cellmap-compile binary
  CELLMAP_SPEC     the spec the package was built from
  CELLMAP_DATA     the folder holding the synthetic data (moved away by one test)
Plain asserts, no pytest: `python generated_package.py` runs every `test_*` function in order.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

import pyloader
from pyloader import CellmapError, Loader

CLI = os.environ["CELLMAP_COMPILE"]
SPEC = os.environ["CELLMAP_SPEC"]
# The spec run.sh writes: batches of 4, 24 samples per epoch, 3 ring slots.
BATCH, BPE, PREFETCH = 4, 6, 3
SHAPES = {"raw": [BATCH, 1, 24, 24, 24], "labels": [BATCH, 4, 16, 16, 16]}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bits(t: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float32 values as their bit patterns (NaN payloads included)."""
    a = t.numpy() if isinstance(t, torch.Tensor) else t
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def cli_sample(split: str, dataset: int, centre: list[float], out: Path) -> dict[str, np.ndarray]:
    c = ",".join(repr(float(v)) for v in centre)
    subprocess.run(
        [CLI, "sample", SPEC, "--split", split, "--dataset", str(dataset), "--center", c, "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return {name: np.load(out / f"{name}.npy") for name in pyloader.ARRAYS}


def test_batches_have_the_spec_names_shapes_dtypes_and_device() -> None:
    loader = Loader()
    assert len(loader) == BPE
    assert loader.device == torch.device("cpu") and loader.handoff == "dlpack"
    batch = next(iter(loader))
    assert list(batch) == ["raw", "labels", "idx", "dataset", "centre_nm"]
    for name, shape in SHAPES.items():
        t = batch[name]
        assert list(t.shape) == shape and t.dtype == torch.float32 and t.device.type == "cpu", (name, t.shape)
        assert t.is_contiguous()
    assert batch["idx"].dtype == torch.int64 and batch["idx"].tolist() == [0, 1, 2, 3]
    assert batch["dataset"].dtype == torch.int64 and list(batch["dataset"].shape) == [BATCH]
    assert batch["centre_nm"].dtype == torch.float64 and list(batch["centre_nm"].shape) == [BATCH, 3]


def test_values_are_bit_identical_to_the_sample_verb() -> None:
    compared = 0
    with tempfile.TemporaryDirectory() as tmp:
        for split in ["train", "validate"]:
            batch = next(iter(Loader(split=split)))
            for k in range(BATCH):
                if batch["idx"][k] < 0:
                    continue
                want = cli_sample(split, int(batch["dataset"][k]), batch["centre_nm"][k].tolist(), Path(tmp) / f"{split}{k}")
                for name in pyloader.ARRAYS:
                    got = bits(batch[name][k])
                    assert np.array_equal(got, bits(want[name])), (split, k, name)
                compared += 1
    assert compared > BATCH, compared  # every train position and at least one validation tile


def test_epochs_advance_when_an_iterator_is_exhausted_and_resume_exactly() -> None:
    loader = Loader(seed=7)
    epoch0 = [b["centre_nm"].clone() for b in loader]
    assert len(epoch0) == BPE and loader.epoch == 1
    it = iter(loader)
    first = next(it)["centre_nm"].clone()
    del it  # abandoned mid-epoch: the next iter() finishes epoch 1
    rest = [{k: v.clone() for k, v in b.items()} for b in loader]  # clones: views would hold every slot
    assert len(rest) == BPE - 1 and loader.epoch == 2
    resumed = Loader(seed=7, epoch=1, step=1)
    again = next(iter(resumed))
    assert torch.equal(again["centre_nm"], rest[0]["centre_nm"])
    assert torch.equal(again["raw"], rest[0]["raw"])
    assert not torch.equal(first, epoch0[0])  # epoch 1 draws differ from epoch 0
    del first, rest, again


def test_validation_yields_one_identical_pass_per_iter() -> None:
    loader = Loader(split="validate")
    a = [(b["idx"].clone(), b["raw"].clone()) for b in loader]
    b = [(b["idx"].clone(), b["raw"].clone()) for b in loader]
    assert len(a) == len(loader) and len(a) > 0
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_copy_handoff_gives_equal_tensors() -> None:
    a = next(iter(Loader(seed=3)))
    b = next(iter(Loader(seed=3, handoff="copy")))
    for name in pyloader.ARRAYS:
        assert np.array_equal(bits(a[name]), bits(b[name]))


def test_a_slot_stays_reserved_while_a_tensor_views_it() -> None:
    loader = Loader()
    it = iter(loader)
    first = next(it)
    raw = first["raw"]
    snapshot = raw.clone()
    del first
    kept = [next(it) for _ in range(PREFETCH - 1)]  # every slot is now held
    t0 = time.monotonic()
    try:
        next(it)
        raise AssertionError("expected SlotsHeldError")
    except CellmapError as e:
        assert "ring slots are held by tensors of earlier batches" in str(e), e
    assert time.monotonic() - t0 < 5
    assert torch.equal(raw, snapshot)  # not overwritten while viewed
    del raw, kept
    batch = next(iter(loader))  # the loader recovers once the tensors are freed
    assert list(batch["raw"].shape) == SHAPES["raw"]


def test_ctrl_c_while_waiting_raises_keyboard_interrupt_and_the_loader_recovers() -> None:
    loader = Loader()
    it = iter(loader)
    kept = [next(it) for _ in range(PREFETCH)]  # the next batch must wait for a slot
    timer = threading.Timer(0.15, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        next(it)
        raise AssertionError("expected KeyboardInterrupt")
    except KeyboardInterrupt:
        pass
    del kept
    assert list(next(iter(loader))["raw"].shape) == SHAPES["raw"]


def test_plan_and_preview() -> None:
    loader = Loader()
    plan = loader.plan()
    expected = json.loads(subprocess.run([CLI, "plan", SPEC, "--json"], check=True, capture_output=True, text=True).stdout)
    assert plan == expected
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "preview.png"
        loader.preview(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_and_bad_data_raise_python_exceptions() -> None:
    for kwargs, message in [
        ({"split": "holdout"}, "unknown split `holdout` (expected `train`, `validate` or `test`)"),
        ({"rank": 2, "world_size": 2}, "rank 2 is not below world size 2"),
        ({"rank": 1}, "pass both `rank` and `world_size`"),
        ({"handoff": "mmap"}, "unknown handoff `mmap`"),
    ]:
        try:
            Loader(**kwargs)
            raise AssertionError(f"expected ValueError for {kwargs}")
        except ValueError as e:
            assert str(e).startswith(message), e
    data = Path(os.environ["CELLMAP_DATA"])
    moved = data.with_name(data.name + ".moved")
    data.rename(moved)
    try:
        cli = subprocess.run([CLI, "plan", SPEC, "--json"], capture_output=True, text=True)
        try:
            Loader()
            raise AssertionError("expected CellmapError")
        except CellmapError as e:
            assert cli.returncode != 0 and cli.stderr.strip() == f"error: {e}", (cli.stderr, str(e))
    finally:
        moved.rename(data)


def test_a_thousand_batches_leave_rss_flat() -> None:
    loader = Loader()
    it = (b for _ in range(10**9) for b in loader)
    for _ in range(100):
        next(it)
    gc.collect()
    before = rss_bytes()
    for _ in range(1000):
        batch = next(it)
        assert batch["raw"].shape[0] == BATCH
    del batch
    gc.collect()
    grown = rss_bytes() - before
    assert grown < 4 << 20, f"RSS grew by {grown} bytes over 1000 batches"
    print(f"    rss before {before >> 20} MiB, growth over 1000 batches {grown / 1024:.0f} KiB")


if __name__ == "__main__":
    failed = 0
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            t = time.monotonic()
            try:
                fn()
                print(f"ok   {name} ({time.monotonic() - t:.2f} s)")
            except Exception as e:  # noqa: BLE001 (report every failure)
                failed += 1
                print(f"FAIL {name}: {type(e).__name__}: {e}")
    sys.exit(1 if failed else 0)

"""Tests of `cellmap_compile`'s own API: Loader, the spec tools, the plan cache, the console entry,
Predictor and NativeImage, against the `sample` verb (function and CLI) and direct reads.

Fixtures (conftest.py): `synth` (session-wide synthetic data with `loader.yaml`: 24³ raw / 16³
labels, batches of 4, 2 workers, 3 ring slots, 6 batches per epoch), `synth_copy` (a private copy
a test may change) and a per-test plan cache (`CELLMAP_CACHE_DIR`).
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import cellmap_compile as cc
import cellmap_compile.cli
from cellmap_compile import _native
from conftest import (
    BATCH,
    BATCHES_PER_EPOCH,
    CLASSES,
    LABEL_SHAPE,
    PREFETCH,
    RAW_SHAPE,
    TRAIN_CROP,
    VALIDATE_CROP,
    Synth,
    loader_dict,
)

ARRAYS = ["raw", "labels"]
SHAPES = {"raw": [BATCH, 1, *RAW_SHAPE], "labels": [BATCH, len(CLASSES), *LABEL_SHAPE]}


# --------------------------------------------------------------------------------------------
# helpers


def bits(t: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float32 values as their bit patterns (NaN payloads included), for bit-exact comparison."""
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def same_bits(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> bool:
    x, y = bits(a), bits(b)
    return x.shape == y.shape and np.array_equal(x, y)


def clone(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A batch whose tensors own their memory (views of the ring would hold its slots)."""
    return {k: v.clone() for k, v in batch.items()}


def epoch_batches(loader: cc.Loader) -> list[dict[str, torch.Tensor]]:
    return [clone(b) for b in loader]


def same_batches(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(same_bits(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cli(*args: str) -> int:
    """`cellmap-compile ARGS` in this process."""
    return _native.cli(["cellmap-compile", *args])


def cli_sample(spec: Path, split: str, dataset: int, centre: list[float], out: Path) -> dict[str, np.ndarray]:
    """The `.npy` files `cellmap-compile sample` writes, by array name."""
    c = ",".join(repr(float(v)) for v in centre)
    code = cli("sample", str(spec), "--split", split, "--dataset", str(dataset), "--center", c, "--out", str(out))
    assert code == 0, f"cellmap-compile sample exited with {code}"
    return {name: np.load(out / f"{name}.npy") for name in ARRAYS}


def image(path: Path, shape: list[int] | tuple[int, ...], scale: tuple[float, ...] = (8.0, 8.0, 8.0), **kw: Any) -> _native.NativeImage:
    return _native.NativeImage(str(path), tuple(float(s) for s in scale), tuple(int(s) for s in shape), **kw)


def read(img: _native.NativeImage, centre: list[float] | tuple[float, ...]) -> torch.Tensor:
    return torch.from_dlpack(img.read(tuple(float(c) for c in centre)))


def zattrs_transforms(group: Path, level: int = 0) -> tuple[list[float], list[float]]:
    """`(scale, translation)` of level `level` of an OME-NGFF 0.4 (zarr v2) multiscale group."""
    attrs = json.loads((group / ".zattrs").read_text())
    transforms = attrs["multiscales"][0]["datasets"][level]["coordinateTransformations"]
    by_type = {t["type"]: t for t in transforms}
    return by_type["scale"]["scale"], by_type["translation"]["translation"]


def set_raw_translation(data: Path, translation: list[float]) -> None:
    """Rewrite the translation of level s0 of the raw group in `data`'s `.zattrs`."""
    path = data / "v2/synth.zarr/recon-1/em/fibsem-uint8/.zattrs"
    attrs = json.loads(path.read_text())
    for t in attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"]:
        if t["type"] == "translation":
            t["translation"] = translation
    path.write_text(json.dumps(attrs, indent=2))


def validation_tiles(plan: dict[str, Any]) -> int:
    return sum(math.prod(d["tiles"]["shape"]) for d in plan["datasets"] if d["split"] == "validate")


# --------------------------------------------------------------------------------------------
# batches: names, shapes, values


def test_batches_have_the_spec_names_shapes_dtypes_and_device(synth: Synth) -> None:
    loader = cc.Loader(synth.spec)
    assert len(loader) == BATCHES_PER_EPOCH
    assert loader.device == torch.device("cpu") and loader.handoff == "dlpack"
    assert loader.arrays == [("raw", 1, RAW_SHAPE), ("labels", len(CLASSES), LABEL_SHAPE)]
    assert cc.META_KEYS == ("idx", "dataset", "centre_nm")
    batch = next(iter(loader))
    assert list(batch) == ["raw", "labels", *cc.META_KEYS]
    for name, shape in SHAPES.items():
        t = batch[name]
        assert list(t.shape) == shape and t.dtype == torch.float32 and t.device.type == "cpu", (name, t.shape)
        assert t.is_contiguous()
    assert batch["idx"].dtype == torch.int64 and batch["idx"].tolist() == [0, 1, 2, 3]
    assert batch["dataset"].dtype == torch.int64 and batch["dataset"].tolist() == [0, 0, 0, 0]
    assert batch["centre_nm"].dtype == torch.float64 and list(batch["centre_nm"].shape) == [BATCH, 3]
    # Raw is stored uint8 and the spec has no input transform: whole numbers in [0, 255].
    raw = batch["raw"]
    assert torch.equal(raw, raw.round()) and raw.min() >= 0 and raw.max() <= 255 and raw.max() > raw.min()
    # Targets are binarized (the default): 0 or 1 (train crop 1 annotates every class).
    assert set(batch["labels"].unique().tolist()) <= {0.0, 1.0}
    assert "Loader(spec='pytest_loader', split='train'" in repr(loader)


def test_a_2d_spec_gives_4d_batches(synth: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue #16: arrays of shape [1, h, w] give [B, C, h, w] tensors (numpy views too), for every
    # slice axis; the memory is the ring slot's as for 3D specs.
    monkeypatch.chdir(synth.root)
    for axis in ["z", "y", "x", "any"]:
        spec = loader_dict(str(synth.csv), raw=[1, 20, 24], labels=[1, 12, 16])
        spec["sampling"]["slice_axis"] = axis
        for handoff in ["dlpack", "copy"]:
            batch = next(iter(cc.Loader(spec, handoff=handoff)))
            assert list(batch["raw"].shape) == [BATCH, 1, 20, 24], (axis, handoff)
            assert list(batch["labels"].shape) == [BATCH, len(CLASSES), 12, 16], (axis, handoff)
            assert batch["raw"].numpy().shape == (BATCH, 1, 20, 24)
    # A 3D spec keeps [B, C, Z, Y, X], z of 1 included.
    batch = next(iter(cc.Loader(loader_dict(str(synth.csv), raw=[1, 20, 24], labels=[2, 12, 16]))))
    assert list(batch["raw"].shape) == [BATCH, 1, 1, 20, 24]


def test_sampling_locality_reads_an_epochs_draws_permuted(synth: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue #15: `sampling.locality` passes through spec dicts; an epoch reads the (dataset, centre)
    # draws of locality 1, permuted (3 draws of a crop down one batch position of 3 batches).
    monkeypatch.chdir(synth.root)

    def epoch(locality: int) -> list[tuple[int, tuple[float, ...]]]:
        spec = loader_dict(str(synth.csv))
        spec["sampling"]["locality"] = locality
        loader = cc.Loader(spec)
        draws = [(int(b["dataset"][k]), tuple(b["centre_nm"][k].tolist())) for b in loader for k in range(BATCH)]
        assert loader.epoch == 1
        return draws

    plain, local = epoch(1), epoch(3)
    assert len(plain) == BATCH * BATCHES_PER_EPOCH
    assert sorted(local) == sorted(plain) and local != plain
    # Window of 3 batches: sample (batch k, position p) is the (3p + k)-th of the window's visit order.
    assert [local[k * BATCH + p] for p in range(BATCH) for k in range(3)] == plain[: 3 * BATCH]


def test_values_are_bit_identical_to_the_sample_verb(synth: Synth, tmp_path: Path) -> None:
    compared = 0
    for split in ["train", "validate"]:
        loader = cc.Loader(synth.spec, split=split)
        batches = [clone(next(iter(loader)))]
        if split == "validate":
            last = None
            for b in loader:  # the rest of the pass: the last batch ends with empty positions
                last = b
            assert last is not None and (last["idx"] < 0).any()
            batches.append(clone(last))
            del last, b
        for bi, batch in enumerate(batches):
            for k in range(BATCH):
                if batch["idx"][k] < 0:
                    assert batch["dataset"][k] == -1 and torch.isnan(batch["centre_nm"][k]).all()
                    continue
                dataset, centre = int(batch["dataset"][k]), batch["centre_nm"][k].tolist()
                by_cli = cli_sample(synth.spec, split, dataset, centre, tmp_path / f"{split}{bi}{k}")
                by_fn = cc.sample(synth.spec, split, dataset, centre)
                assert by_fn["info"]["centre_nm"] == centre and by_fn["info"]["split"] == split
                for name in ARRAYS:
                    assert same_bits(batch[name][k], by_cli[name]), (split, bi, k, name)
                    assert same_bits(batch[name][k], by_fn[name]), (split, bi, k, name)
                compared += 1
        del batches
    assert compared > 2 * BATCH, compared  # every train position and the validation tiles read


def test_sample_augment_matches_the_training_batch(synth: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    # `cc.sample(..., augment=True, epoch=e, index=idx)` at the batch's centre is the training
    # batch's sample at that position, transforms and noise included.
    monkeypatch.chdir(synth.root)
    spec = loader_dict(str(synth.csv))
    spec["augment"] = {
        "spatial": {
            "mirror": {"z": 0.5, "y": 0.5, "x": 0.5},
            "transpose": ["y", "x"],
            "rotate": {"z": [-180, 180]},
        },
        "inputs": [{"normalize": {"scale": 255}}, {"gaussian_noise": {"std": 0.1}}],
    }
    loader = cc.Loader(spec)
    batch = clone(next(iter(loader)))  # epoch 0, step 0
    for k in range(BATCH):
        idx, dataset, centre = int(batch["idx"][k]), int(batch["dataset"][k]), batch["centre_nm"][k].tolist()
        s = cc.sample(spec, "train", dataset, centre, augment=True, epoch=0, index=idx)
        for name in ARRAYS:
            assert same_bits(batch[name][k], s[name]), (k, name)
        t = s["info"]["transform"]
        assert t["source"] == "drawn" and t["key"]["epoch"] == 0 and t["key"]["index"] == idx
        assert -180 <= t["rotate_deg"]["z"] <= 180 and t["rotation_order"] == ["z", "y", "x"]
    plain = cc.sample(spec, "train", 0, batch["centre_nm"][0].tolist())
    assert "transform" not in plain["info"]


@pytest.mark.parametrize(
    ("dtype", "torch_dtype"),
    [("float16", torch.float16), ("bfloat16", torch.bfloat16), ("uint8", torch.uint8)],
)
def test_batch_dtypes_are_the_float32_batches_converted(
    synth: Synth, monkeypatch: pytest.MonkeyPatch, dtype: str, torch_dtype: torch.dtype
) -> None:
    # A rotation (interpolated gather) and the validation split's unannotated `pm` (unknown).
    monkeypatch.chdir(synth.root)
    spec = loader_dict(str(synth.csv))
    spec["augment"] = {"spatial": {"rotate": {"z": [-30, 30]}}}
    reference = [clone(b) for _, b in zip(range(2), cc.Loader(spec))]
    reference_val = clone(next(iter(cc.Loader(spec, split="validate"))))
    for array in spec["arrays"]["inputs"].values():
        array["dtype"] = dtype
    for array in spec["arrays"]["targets"].values():
        array["dtype"] = dtype
    got = [clone(b) for _, b in zip(range(2), cc.Loader(spec))]
    got_val = clone(next(iter(cc.Loader(spec, split="validate"))))
    for g, r in [*zip(got, reference), (got_val, reference_val)]:
        for name in ARRAYS:
            assert g[name].dtype == torch_dtype and g[name].shape == r[name].shape, name
            if dtype == "uint8":
                # Round to nearest (ties to even); NaN (unknown) is 255.
                want = torch.where(torch.isnan(r[name]), 255.0, r[name]).round().clamp(0, 255).to(torch.uint8)
            else:
                want = r[name].to(torch_dtype)
                # NaN where the float32 batch has NaN (payloads differ between converters).
                assert torch.equal(g[name].isnan(), r[name].isnan()), (dtype, name)
                g[name], want = g[name].nan_to_num(-7.0), want.nan_to_num(-7.0)
            as_int = torch.uint8 if dtype == "uint8" else torch.int16
            assert torch.equal(g[name].view(as_int), want.view(as_int)), (dtype, name)
    if dtype == "uint8":
        assert (got_val["labels"][:, CLASSES.index("pm")] == 255).all()


def test_normalize_dtype_in_a_spec_dict_divides_uint8_raw_by_255(synth: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    # issue #16: `normalize: dtype` passes through a spec dict and resolves per dataset from the raw
    # dtype (the synthetic raw is uint8: ÷ 255), which `plan()` shows.
    monkeypatch.chdir(synth.root)
    by_number = loader_dict(str(synth.csv))
    by_number["augment"] = {"inputs": [{"normalize": {"scale": 255}}]}
    by_dtype = loader_dict(str(synth.csv))
    by_dtype["augment"] = {"inputs": [{"normalize": "dtype"}]}
    a = clone(next(iter(cc.Loader(by_number))))
    b = clone(next(iter(cc.Loader(by_dtype))))
    assert same_bits(a["raw"], b["raw"])
    plan = cc.plan(by_dtype)
    assert plan["datasets"][0]["input_transforms"]["raw"] == [{"normalize": {"shift": 0.0, "scale": 255.0}}]


def test_validation_batches_carry_unknown_classes_as_nan(synth: Synth) -> None:
    # Validation crop 2 annotates mito, er and nuc; pm is unknown there: NaN in every tile.
    batch = next(iter(cc.Loader(synth.spec, split="validate")))
    labels = batch["labels"]
    assert torch.isnan(labels[:, CLASSES.index("pm")]).all()
    assert not torch.isnan(labels[:, : CLASSES.index("pm")]).any()


def test_epochs_advance_when_an_iterator_is_exhausted_and_resume_exactly(synth: Synth) -> None:
    loader = cc.Loader(synth.spec, seed=7)
    epoch0 = epoch_batches(loader)
    assert len(epoch0) == BATCHES_PER_EPOCH and loader.epoch == 1
    assert [b["idx"].tolist() for b in epoch0] == [list(range(i * BATCH, (i + 1) * BATCH)) for i in range(BATCHES_PER_EPOCH)]
    it = iter(loader)
    first = clone(next(it))
    del it  # abandoned mid-epoch: the next iter() finishes epoch 1
    rest = epoch_batches(loader)
    assert len(rest) == BATCHES_PER_EPOCH - 1 and loader.epoch == 2
    assert rest[0]["idx"].tolist() == list(range(BATCH, 2 * BATCH))
    # Resuming at (epoch 1, step 1) continues exactly where the stream was, with no replay.
    resumed = cc.Loader(synth.spec, seed=7, epoch=1, step=1)
    assert same_batches(epoch_batches(resumed), rest) and resumed.epoch == 2
    # The same seed gives the same epoch 0; epoch 1 draws differently.
    assert same_batches(epoch_batches(cc.Loader(synth.spec, seed=7)), epoch0)
    assert not torch.equal(first["centre_nm"], epoch0[0]["centre_nm"])


def test_the_seed_argument_overrides_the_specs_seed(synth: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    # `seed=43` must give exactly the batches of the same spec with `sampling.seed: 43`.
    monkeypatch.chdir(synth.root)
    spec43 = loader_dict()
    spec43["sampling"]["seed"] = 43
    want = epoch_batches(cc.Loader(spec43))
    seed42 = epoch_batches(cc.Loader(synth.spec))
    assert not torch.equal(want[0]["centre_nm"], seed42[0]["centre_nm"])  # the spec's seed matters
    got = epoch_batches(cc.Loader(synth.spec, seed=43))
    assert [b["centre_nm"].tolist() for b in got] == [b["centre_nm"].tolist() for b in want], "seed= does not reach the sampler"
    assert same_batches(got, want)


def test_validation_yields_one_identical_pass_per_iter(synth: Synth) -> None:
    loader = cc.Loader(synth.spec, split="validate")
    tiles = validation_tiles(loader.plan())
    assert tiles > 0 and len(loader) == math.ceil(tiles / BATCH)
    a = [(b["idx"].clone(), b["raw"].clone(), b["labels"].clone()) for b in loader]
    b = [(b["idx"].clone(), b["raw"].clone(), b["labels"].clone()) for b in loader]
    assert len(a) == len(b) == len(loader)
    assert all(torch.equal(x[0], y[0]) and same_bits(x[1], y[1]) and same_bits(x[2], y[2]) for x, y in zip(a, b))
    # One pass reads every tile once.
    idx = torch.cat([x[0] for x in a])
    assert sorted(i for i in idx.tolist() if i >= 0) == list(range(tiles))
    assert loader.epoch == 2


def test_ranks_read_disjoint_shares_of_the_validation_tiles(synth: Synth) -> None:
    def centres(loader: cc.Loader) -> list[tuple[float, ...]]:
        return [tuple(c) for b in loader for i, c in zip(b["idx"].tolist(), b["centre_nm"].tolist()) if i >= 0]

    whole = cc.Loader(synth.spec, split="validate")
    tiles = validation_tiles(whole.plan())
    every = centres(whole)
    assert len(every) == len(set(every)) == tiles
    shares = [centres(cc.Loader(synth.spec, split="validate", rank=r, world_size=2)) for r in range(2)]
    assert len(shares[0]) == math.ceil(tiles / 2) and len(shares[1]) == tiles // 2
    assert not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == sorted(every)


def test_copy_handoff_gives_equal_tensors_that_hold_no_slot(synth: Synth) -> None:
    a = epoch_batches(cc.Loader(synth.spec, seed=3))
    loader = cc.Loader(synth.spec, seed=3, handoff="copy")
    assert loader.handoff == "copy"
    kept = list(loader)  # every batch of the epoch alive at once: more than the ring's slots
    assert len(kept) == BATCHES_PER_EPOCH > PREFETCH
    assert same_batches(kept, a)


# --------------------------------------------------------------------------------------------
# the ring: slot reservation and Ctrl-C


def test_a_slot_stays_reserved_while_a_tensor_views_it(synth: Synth) -> None:
    loader = cc.Loader(synth.spec)
    it = iter(loader)
    first = next(it)
    raw = first["raw"]
    snapshot = raw.clone()
    del first
    kept = [next(it) for _ in range(PREFETCH - 1)]  # every slot is now held
    t0 = time.monotonic()
    with pytest.raises(cc.SlotsHeldError, match="ring slots are held by tensors of earlier batches") as e:
        next(it)
    assert isinstance(e.value, cc.CellmapError) and isinstance(e.value, RuntimeError)
    assert time.monotonic() - t0 < 5
    assert torch.equal(raw, snapshot)  # not overwritten while viewed
    del raw, kept, it
    batch = next(iter(loader))  # the loader recovers once the tensors are freed
    assert list(batch["raw"].shape) == SHAPES["raw"]


def test_ctrl_c_while_waiting_raises_keyboard_interrupt_and_the_loader_recovers(synth: Synth) -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    loader = cc.Loader(synth.spec)
    it = iter(loader)
    kept = [next(it) for _ in range(PREFETCH)]  # the next batch must wait for a slot
    sent: list[float] = []

    def interrupt() -> None:
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(0.1, interrupt)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            next(it)
        caught = time.monotonic()
    finally:
        timer.join()
    assert sent and caught - sent[0] < 1.0, f"KeyboardInterrupt {caught - sent[0]:.2f} s after SIGINT"
    del kept, it
    gc.collect()
    batch = next(iter(loader))
    assert list(batch["raw"].shape) == SHAPES["raw"]


# --------------------------------------------------------------------------------------------
# plan, preview, errors, memory


def test_plan_equals_plan_json(synth: Synth, capfd: pytest.CaptureFixture[str]) -> None:
    loader = cc.Loader(synth.spec)
    capfd.readouterr()
    assert cli("plan", str(synth.spec), "--json") == 0
    expected = json.loads(capfd.readouterr().out)
    assert loader.plan() == expected
    assert cc.plan(synth.spec) == expected
    assert expected["batch"]["batch_size"] == BATCH and expected["prefetch"] == PREFETCH
    assert expected["batch_bytes"] == 4 * BATCH * (math.prod(RAW_SHAPE) + len(CLASSES) * math.prod(LABEL_SHAPE))
    assert expected["ring_bytes"] == PREFETCH * expected["batch_bytes"]


def test_preview_writes_a_png(synth: Synth, tmp_path: Path) -> None:
    from PIL import Image

    png = b"\x89PNG\r\n\x1a\n"
    a, b = tmp_path / "loader.png", tmp_path / "validate.png"
    cc.Loader(synth.spec).preview(a)
    cc.preview(synth.spec, b, split="validate", step=1)
    for path in (a, b):
        assert path.read_bytes()[:8] == png
        with Image.open(path) as im:
            assert im.size[0] > 0 and im.size[1] > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "holdout"}, "unknown split `holdout` (expected `train`, `validate` or `test`)"),
        ({"rank": 2, "world_size": 2}, "rank 2 is not below world size 2"),
        ({"rank": 1}, "pass both `rank` and `world_size`"),
        ({"handoff": "mmap"}, "unknown handoff `mmap`"),
        ({"device": "cuda", "handoff": "dlpack"}, "handoff `dlpack` gives CPU tensors"),
    ],
)
def test_bad_loader_arguments_raise_value_error(synth: Synth, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as e:
        cc.Loader(synth.spec, **kwargs)
    assert str(e.value).startswith(message), e.value


def test_bad_arguments_of_the_other_entry_points_raise(synth: Synth, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="a spec is a path or a dict"):
        cc.Loader(42)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="cannot read the spec"):
        cc.Loader(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="unknown split `holdout`"):
        cc.sample(synth.spec, "holdout", 0, (700, 600, 800))
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        cc.Predictor(synth.spec, batch_size=0)
    with pytest.raises(cc.CellmapError):  # the spec has no `predict` section
        cc.Predictor(synth.spec)
    with pytest.raises(ValueError, match="voxel size must be three positive numbers"):
        image(synth.raw, (8, 8, 8), scale=(8, 0, 8))
    with pytest.raises(ValueError, match="crop shape must be three positive voxel counts"):
        image(synth.raw, (8, 0, 8))
    with pytest.raises(ValueError, match="unknown interpolation `cubic`"):
        image(synth.raw, (8, 8, 8), interpolation="cubic")
    with pytest.raises(ValueError, match="centre must be three finite numbers"):
        image(synth.raw, (8, 8, 8)).read((float("nan"), 0.0, 0.0))
    with pytest.raises(cc.CellmapError):
        image(tmp_path / "nothing.zarr", (8, 8, 8))


def test_missing_data_raises_the_cli_error(synth_copy: Synth, capfd: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(synth_copy.root / "v2")
    capfd.readouterr()
    code = cli("plan", str(synth_copy.spec), "--json")
    stderr = capfd.readouterr().err
    with pytest.raises(cc.CellmapError) as e:
        cc.Loader(synth_copy.spec)
    assert not isinstance(e.value, cc.SpecError)
    assert code != 0 and stderr.strip() == f"error: {e.value}", (stderr, str(e.value))
    assert "does not exist" in str(e.value)


def test_a_thousand_batches_leave_rss_flat(synth: Synth) -> None:
    loader = cc.Loader(synth.spec)
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


# --------------------------------------------------------------------------------------------
# specs as dicts, spec errors, normalized specs


def test_a_dict_spec_gives_the_same_batches_as_the_file(synth: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    # The CSV's rows are relative: they resolve against the spec's folder, for a dict the
    # current directory.
    monkeypatch.chdir(synth.root)
    as_dict = loader_dict(str(synth.csv))
    for split in ["train", "validate"]:
        from_file = cc.Loader(synth.spec, split=split)
        from_dict = cc.Loader(as_dict, split=split)
        assert from_dict.arrays == from_file.arrays and len(from_dict) == len(from_file)
        if split == "train":
            assert same_batches(epoch_batches(from_dict), epoch_batches(from_file))
        else:
            a = [clone(b) for _, b in zip(range(3), from_dict)]
            b = [clone(b) for _, b in zip(range(3), from_file)]
            assert same_batches(a, b)
    file_spec, dict_spec = cc.normalized_spec(synth.spec), cc.normalized_spec(as_dict)
    assert file_spec.pop("source") == str(synth.spec) and dict_spec.pop("source").endswith("<dict>")
    assert dict_spec == file_spec


def test_relative_paths_in_a_dict_resolve_against_the_current_directory(
    synth: Synth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relative = loader_dict("datasplit.csv")
    monkeypatch.chdir(synth.root)
    want = epoch_batches(cc.Loader(synth.spec))
    got = epoch_batches(cc.Loader(relative))
    assert same_batches(got, want)
    assert cc.normalized_spec(relative)["datasets"][0]["raw"] == str(synth.raw)
    # Elsewhere the same dict names a CSV that is not there.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cc.SpecError) as e:
        cc.Loader(relative)
    d = e.value.diagnostics[0]
    assert d["severity"] == "error" and d["pointer"].startswith("/data/csv") and d["line"] is None
    assert "datasplit.csv" in d["message"]


BAD_SPEC = """\
version: 1
name: bad
classes: [mito, er, nuc, pm]
arrays:
  inputs:
    raw: { shape: [24, 24, 24], scale: [8, 8, 8] }
  targets:
    labels: { shape: [16, 16, 16], scale: [8, 8, 8] }
data:
  csv: datasplit.csv
sampling:
  seed: 42
  weighting: uniformm
loader:
  batch_size: 4
  workerz: 2
"""
#: `(line, column, pointer)` of the two errors of BAD_SPEC (1-based).
BAD_AT = [(13, 14, "/sampling/weighting"), (16, 3, "/loader/workerz")]


def test_spec_error_of_a_file_points_at_the_bad_keys(synth: Synth) -> None:
    path = synth.root / "bad.yaml"
    path.write_text(BAD_SPEC)
    for call in (
        lambda: cc.Loader(path),
        lambda: cc.Loader(path, split="validate"),
        lambda: cc.normalized_spec(path),
        lambda: cc.plan(path),
        lambda: cc.sample(path, "train", 0, (700, 600, 800)),
        lambda: cc.Predictor(path),
    ):
        with pytest.raises(cc.SpecError) as e:
            call()
        err = e.value
        assert isinstance(err, ValueError) and isinstance(err, cc.CellmapError)
        found = [(d["line"], d["column"], d["pointer"]) for d in err.diagnostics]
        assert found == BAD_AT
        assert all(d["severity"] == "error" and d["file"] == str(path) for d in err.diagnostics)
        weighting, workers = err.diagnostics
        assert weighting["message"] == "`uniformm` is not an allowed value"
        assert weighting["expected"] == "one of `uniform`, `class_balanced`, `voxel_weighted`"
        assert weighting["hint"] == "did you mean `uniform`?"
        assert workers["message"] == "unknown key `workerz`" and workers["hint"] == "did you mean `workers`?"
        assert weighting["rendered"].startswith(f"{path}:13:14: error: `uniformm` is not an allowed value")
        assert workers["rendered"].startswith(f"{path}:16:3: error: unknown key `workerz`")
        assert str(err) == (weighting["rendered"] + workers["rendered"]).rstrip()
    assert cc.check(path) == err.diagnostics


def test_spec_error_of_a_dict_carries_pointers_without_positions(synth: Synth) -> None:
    spec = loader_dict(str(synth.csv))
    spec["loader"]["batch_sise"] = 4
    spec["sampling"]["weighting"] = "uniformm"
    with pytest.raises(cc.SpecError) as e:
        cc.Loader(spec)
    assert isinstance(e.value, ValueError) and isinstance(e.value, cc.CellmapError)
    diagnostics = e.value.diagnostics
    assert sorted(d["pointer"] for d in diagnostics) == ["/loader/batch_sise", "/sampling/weighting"]
    for d in diagnostics:
        assert d["severity"] == "error" and d["file"] is None and d["line"] is None and d["column"] is None
        assert d["rendered"].startswith(f"spec `{d['pointer']}`: error: ")
    assert cc.check(spec) == diagnostics


def test_check_is_empty_for_a_valid_spec_and_lists_warnings(synth: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(synth.root)
    assert cc.check(synth.spec) == []
    assert cc.check(loader_dict(str(synth.csv))) == []
    assert cc.check(synth.spec, data=True) == []
    # A one-sided class relation is made symmetric, with a warning at its line and column.
    text = synth.spec.read_text().replace("data:\n", "class_relations:\n  nuc: [pm]\ndata:\n")
    line = text.splitlines().index("  nuc: [pm]") + 1
    path = synth.root / "warning.yaml"
    path.write_text(text)
    diagnostics = cc.check(path)
    assert len(diagnostics) == 1
    w = diagnostics[0]
    assert w["severity"] == "warning" and w["pointer"] == "/class_relations/nuc"
    # line and column of the value `[pm]`
    assert w["file"] == str(path) and w["line"] == line and w["column"] == 8
    assert w["message"] == "`nuc` excludes `pm` but not the reverse; added `pm: [nuc]`"
    assert w["rendered"].startswith(f"{path}:{line}:8: warning: ")
    # A warning does not stop the spec.
    assert cc.normalized_spec(path)["class_relations"] == {"nuc": ["pm"], "pm": ["nuc"]}
    assert len(cc.Loader(path)) == BATCHES_PER_EPOCH
    as_dict = loader_dict(str(synth.csv))
    as_dict["class_relations"] = {"nuc": ["pm"]}
    [d] = cc.check(as_dict)
    assert d["severity"] == "warning" and d["pointer"] == "/class_relations/nuc" and d["line"] is None


def test_normalized_spec_fills_defaults(synth: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(synth.root)  # the CSV's relative rows resolve against it
    minimal = {
        "version": 1,
        "name": "minimal",
        "classes": list(CLASSES),
        "arrays": {
            "inputs": {"raw": {"shape": [24, 24, 24], "scale": [8, 8, 8]}},
            "targets": {"labels": {"shape": [16, 16, 16], "scale": [8, 8, 8]}},
        },
        "data": {"csv": str(synth.csv)},
    }
    n = cc.normalized_spec(minimal)
    assert n["loader"] == {
        "batch_size": 1,
        "workers": 2,
        "prefetch": 4,
        "device": "cpu",
        "pin_memory": False,
        "cache_bytes": 1 << 30,
        "on_error": "fail",
        "fetch_concurrency": 16,
        "fetch_ahead": 4,
    }
    s = n["sampling"]
    assert s["seed"] == 0 and s["iterations_per_epoch"] == 1000 and s["weighting"] == "uniform"
    assert s["pad"] == {"train": False, "validate": False} and s["validation_tiling"] is True
    assert n["class_relations"] == {} and n["predict"] is None
    assert n["inputs"] == [
        {"name": "raw", "shape_vox": [24, 24, 24], "voxel_size_nm": [8.0, 8.0, 8.0], "interpolation": "linear", "dtype": "float32"}
    ]
    assert n["targets"][0]["interpolation"] == "nearest"
    assert n["augment"]["targets"] == [{"binarize": {"threshold": 0.0}}] and n["augment"]["inputs"] == []
    assert [d["split"] for d in n["datasets"]] == ["train", "validate"]
    assert n["datasets"][0]["raw"] == str(synth.raw)
    # The loader's own spec is the normalized spec; explicit values stay.
    loader = cc.Loader(synth.spec)
    assert loader.spec == cc.normalized_spec(synth.spec)
    assert loader.spec["loader"]["workers"] == 2 and loader.spec["loader"]["prefetch"] == PREFETCH
    assert loader.spec["sampling"]["seed"] == 42 and loader.spec["sampling"]["iterations_per_epoch"] == 24


# --------------------------------------------------------------------------------------------
# the plan cache


def test_the_plan_cache_plans_once_then_reuses_the_plan(synth: Synth, plan_cache: Path, tmp_path: Path) -> None:
    first = cc.Loader(synth.spec)
    assert first.plan_origin == "planned"
    files = list(plan_cache.glob("*.json"))
    assert len(files) == 1 and files[0].name.startswith("pytest_loader-")
    a = epoch_batches(first)
    second = cc.Loader(synth.spec)
    assert second.plan_origin == "cache" and second.plan() == first.plan()
    assert same_batches(epoch_batches(second), a)
    # The validation split opens over the same cached plan.
    assert cc.Loader(synth.spec, split="validate").plan_origin == "cache"
    # `cache_dir=` takes precedence over CELLMAP_CACHE_DIR.
    other = tmp_path / "other-plans"
    assert cc.Loader(synth.spec, cache_dir=other).plan_origin == "planned"
    assert cc.Loader(synth.spec, cache_dir=other).plan_origin == "cache"
    assert len(list(other.glob("*.json"))) == 1 and len(list(plan_cache.glob("*.json"))) == 1
    # Another spec gets another cache entry.
    assert cc.Loader(synth.spec, seed=9).plan_origin == "cache"  # a seed override is not part of the plan
    assert cc.Loader(synth.small_spec).plan_origin == "planned"
    assert len(list(plan_cache.glob("*.json"))) == 2


def test_changed_metadata_makes_the_cached_plan_stale(synth_copy: Synth, plan_cache: Path) -> None:
    spec = synth_copy.spec
    assert cc.Loader(spec).plan_origin == "planned"
    assert cc.Loader(spec).plan_origin == "cache"
    _, translation = zattrs_transforms(synth_copy.raw)
    assert translation == [40.0, 24.0, 16.0]
    moved = [48.0, 16.0, 24.0]
    set_raw_translation(synth_copy.root, moved)
    loader = cc.Loader(spec)
    assert loader.plan_origin == "planned"
    for d in loader.plan()["datasets"]:
        assert d["inputs"][0]["translation_nm"] == moved
    # The batches are read with the new geometry: the raw crop at each centre is the one a
    # direct read of the changed metadata gives.
    raw = image(synth_copy.raw, RAW_SHAPE)
    assert list(raw.level_translation()) == moved
    batch = next(iter(loader))
    for k in range(BATCH):
        assert same_bits(batch["raw"][k, 0], read(raw, batch["centre_nm"][k].tolist())), k
    info = cc.sample(spec, "train", 0, batch["centre_nm"][0].tolist())["info"]
    assert info["arrays"]["raw"]["source"]["translation_nm"] == moved
    del batch
    assert cc.Loader(spec).plan_origin == "cache"
    assert len(list(plan_cache.glob("*.json"))) == 1  # replaced, not added


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda text: "{garbage", id="garbage"),
        pytest.param(lambda text: "", id="empty"),
        pytest.param(lambda text: text[: len(text) // 2], id="truncated"),
        pytest.param(lambda text: "[1, 2, 3]", id="wrong-json"),
        pytest.param(lambda text: text.replace('"key":"', '"key":"0', 1).replace('"key": "', '"key": "0', 1), id="wrong-key"),
        pytest.param(lambda text: "\x00\xff" * 100, id="binary"),
    ],
)
def test_a_corrupt_plan_cache_file_is_replaced(synth: Synth, plan_cache: Path, corrupt: Any) -> None:
    first = cc.Loader(synth.spec)
    want = epoch_batches(first)
    [path] = plan_cache.glob("*.json")
    path.write_text(corrupt(path.read_text()), encoding="latin-1")
    loader = cc.Loader(synth.spec)
    assert loader.plan_origin == "planned"
    assert loader.plan() == first.plan()
    assert same_batches(epoch_batches(loader), want)
    # Rewritten: the file holds the plan; `plan()` adds each dataset's resolved `input_transforms`.
    derived = first.plan()
    for d in derived["datasets"]:
        del d["input_transforms"]
    assert json.loads(path.read_text())["plan"] == derived
    assert cc.Loader(synth.spec).plan_origin == "cache"


TWO_TRAIN_CSV = """\
"train","v2/synth.zarr","recon-1/em/fibsem-uint8","v2/synth.zarr","recon-1/labels/groundtruth/crop1/[mito,er,nuc,pm]"
"train","v2/synth.zarr","recon-1/em/fibsem-uint8","v2/synth.zarr","recon-1/labels/groundtruth/crop2/[mito,er,nuc]"
"""


def test_a_dataset_the_cached_plan_excluded_is_rechecked(synth_copy: Synth) -> None:
    # Two train crops; crop 2's label arrays first claim to be 4³ voxels, too small for a 16³
    # crop, so the plan excludes that dataset. Once the metadata is back (the crop re-exported),
    # the cached plan no longer matches the data and must not be used.
    root = synth_copy.root
    (root / "two.csv").write_text(TWO_TRAIN_CSV)
    spec = root / "two.yaml"
    spec.write_text(synth_copy.spec.read_text().replace("csv: datasplit.csv", "csv: two.csv"))
    saved = {}
    for cls in ["mito", "er", "nuc"]:
        for level in ["s0", "s1"]:
            path = root / VALIDATE_CROP / cls / level / ".zarray"
            saved[path] = path.read_text()
            meta = json.loads(saved[path])
            meta["shape"] = [4, 4, 4]
            path.write_text(json.dumps(meta))
    excluded = cc.Loader(spec)
    assert excluded.plan_origin == "planned"
    assert [d["index"] for d in excluded.plan()["datasets"]] == [0]
    assert [e["index"] for e in excluded.plan()["excluded"]] == [1]
    for path, text in saved.items():
        path.write_text(text)
    loader = cc.Loader(spec)
    assert loader.plan_origin == "planned", "a cached plan that excluded a dataset whose data changed was used"
    assert [d["index"] for d in loader.plan()["datasets"]] == [0, 1] and loader.plan()["excluded"] == []


def test_a_cached_plan_without_the_specs_datasets_is_replaced(synth: Synth, plan_cache: Path) -> None:
    first = cc.Loader(synth.spec)
    want = first.plan()
    [path] = plan_cache.glob("*.json")
    cached = json.loads(path.read_text())
    cached["plan"]["datasets"] = []  # the right key, but a plan of nothing
    path.write_text(json.dumps(cached))
    loader = cc.Loader(synth.spec)  # must not fail with "the spec has no train dataset"
    assert loader.plan_origin == "planned" and loader.plan() == want


def test_a_loader_opens_over_a_plan_it_is_given(synth_copy: Synth, plan_cache: Path) -> None:
    planned = cc.Loader(synth_copy.spec)
    want = epoch_batches(planned)
    plan = planned.plan()
    shutil.rmtree(plan_cache)
    for given in (plan, json.dumps(plan)):
        loader = cc.Loader(synth_copy.spec, plan=given)
        assert loader.plan_origin == "embedded" and loader.plan() == plan
        assert same_batches(epoch_batches(loader), want)
    assert not plan_cache.exists()  # an embedded plan is not cached
    set_raw_translation(synth_copy.root, [48.0, 24.0, 16.0])
    with pytest.raises(cc.CellmapError, match="translation"):
        cc.Loader(synth_copy.spec, plan=plan)


# --------------------------------------------------------------------------------------------
# the console entry


def test_python_m_cellmap_compile_check_exit_codes(synth: Synth) -> None:
    bad = synth.root / "bad-console.yaml"
    bad.write_text(BAD_SPEC)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    ok = subprocess.run(
        [sys.executable, "-m", "cellmap_compile", "check", str(synth.spec)], capture_output=True, text=True, env=env, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert "all valid" in ok.stdout + ok.stderr
    fail = subprocess.run(
        [sys.executable, "-m", "cellmap_compile", "check", str(bad)], capture_output=True, text=True, env=env, timeout=120
    )
    assert fail.returncode == 1
    out = fail.stdout + fail.stderr
    assert f"{bad}:13:14: error: `uniformm` is not an allowed value (at `/sampling/weighting`)" in out
    assert f"{bad}:16:3: error: unknown key `workerz` (at `/loader/workerz`)" in out


def test_cli_main_returns_the_exit_code(synth: Synth, capfd: pytest.CaptureFixture[str]) -> None:
    bad = synth.root / "bad-main.yaml"
    bad.write_text(BAD_SPEC)
    assert cellmap_compile.cli.main(["check", str(synth.spec)]) == 0
    assert cellmap_compile.cli.main(["check", str(bad)]) == 1
    assert f"{bad}:16:3: error: unknown key `workerz`" in "".join(capfd.readouterr())
    assert cellmap_compile.cli.main(["check", "--format", "json", str(bad)]) == 1
    assert cellmap_compile.cli.main(["check", "--format", "nonsense", str(synth.spec)]) == 2
    assert cellmap_compile.cli.main(["no-such-verb"]) == 2


# --------------------------------------------------------------------------------------------
# Predictor

#: Output box: whole raw voxels (raw s0 voxel centres at 40 + 8i, 24 + 8j, 16 + 8k), so that each
#: output voxel is one raw voxel; 24 × 24 × 16 voxels, tiles of 8³: a 3 × 3 × 2 grid.
PRED_LO, PRED_HI = [196, 196, 196], [388, 388, 324]
PRED_SHAPE = [24, 24, 16]
PRED_TILES = 18


def predict_spec(synth: Synth, folder: Path, **predict: Any) -> Path:
    """A spec with a `predict` section over the synthetic raw (absolute paths; output relative)."""
    section = {
        "raw": [str(synth.raw)],
        "output": "out.zarr/{dataset}/{class}",
        "model_classes": list(CLASSES),
        "classes": ["mito", "nuc"],
        "scale": [8, 8, 8],
        "dtype": "float32",
        "zarr_format": 2,
        "region": {"bounds_nm": [PRED_LO, PRED_HI]},
        "tile": [8, 8, 8],
        "context": [0, 0, 0],
        **predict,
    }
    spec = loader_dict()
    spec["data"] = {
        "datasets": [{"split": "train", "raw": str(synth.raw), "targets": str(synth.label(TRAIN_CROP, "{class}"))}]
    }
    spec["predict"] = section
    path = folder / "predict.yaml"
    path.write_text(json.dumps(spec, indent=2))  # JSON is YAML
    return path


def model(raw: torch.Tensor) -> torch.Tensor:
    """An identity-like model: class channel c is raw · (c + 1)."""
    return torch.cat([raw * (c + 1) for c in range(len(CLASSES))], dim=1)


def test_predictor_writes_what_the_model_returns(synth: Synth, tmp_path: Path) -> None:
    spec = predict_spec(synth, tmp_path)
    pred = cc.Predictor(spec, batch_size=4)
    assert pred.inputs == ["raw"]
    [unit] = pred.plan["units"]
    assert unit["shape_vox"] == PRED_SHAPE and unit["translation_nm"] == [200.0, 200.0, 200.0]
    assert unit["groups"] == [str(tmp_path / "out.zarr/synth/mito"), str(tmp_path / "out.zarr/synth/nuc")]
    assert pred.pending() == list(range(PRED_TILES)) and pred.tiles_completed == 0
    tile_raw = image(synth.raw, (8, 8, 8))
    batches = 0
    for tiles, inputs in pred:
        assert list(inputs) == ["raw"] and list(inputs["raw"].shape) == [len(tiles), 1, 8, 8, 8]
        for b, t in enumerate(tiles):
            info = pred.tile(t)
            assert info["id"] == t and info["shape_vox"] == [8, 8, 8]
            assert same_bits(inputs["raw"][b, 0], read(tile_raw, info["centre_nm"])), t
        pred.write(tiles, model(inputs["raw"]))
        batches += 1
    assert batches == math.ceil(PRED_TILES / 4)
    assert pred.tiles_completed == PRED_TILES and pred.pending() == []
    # Read back: OME-NGFF 0.4 metadata as planned, values exactly raw · (model channel + 1).
    centre = [200.0 + (n - 1) / 2 * 8 for n in PRED_SHAPE]
    raw = read(image(synth.raw, PRED_SHAPE), centre)
    assert raw.max() > 0
    for cls in ["mito", "nuc"]:
        group = tmp_path / "out.zarr/synth" / cls
        scale, translation = zattrs_transforms(group)
        assert scale == [8.0, 8.0, 8.0] and translation == [200.0, 200.0, 200.0]
        zarray = json.loads((group / "s0/.zarray").read_text())
        assert zarray["zarr_format"] == 2 and zarray["shape"] == PRED_SHAPE
        assert zarray["chunks"] == [8, 8, 8] and zarray["dtype"] == "<f4"
        out = image(group, PRED_SHAPE)
        assert out.dtype() == "float32" and list(out.level_shape()) == PRED_SHAPE
        assert same_bits(read(out, centre), raw * (CLASSES.index(cls) + 1)), cls
    assert not (tmp_path / "out.zarr/synth/er").exists() and not (tmp_path / "out.zarr/synth/pm").exists()


def test_a_2d_predictor_reads_4d_inputs_like_the_training_batches(synth: Synth, tmp_path: Path) -> None:
    path = predict_spec(synth, tmp_path, tile=[1, 8, 8])
    spec = json.loads(path.read_text())
    spec["arrays"]["inputs"]["raw"]["shape"] = [1, 8, 8]
    spec["arrays"]["targets"]["labels"]["shape"] = [1, 4, 4]
    path.write_text(json.dumps(spec, indent=2))
    pred = cc.Predictor(path, batch_size=4)
    tiles, inputs = next(iter(pred))
    assert list(inputs["raw"].shape) == [len(tiles), 1, 8, 8]
    tile_raw = image(synth.raw, (1, 8, 8))
    for b, t in enumerate(tiles):
        assert same_bits(inputs["raw"][b, 0], read(tile_raw, pred.tile(t)["centre_nm"])[0]), t
    pred.write(tiles, model(inputs["raw"]))
    assert pred.tiles_completed == len(tiles)
    out = image(tmp_path / "out.zarr/synth/nuc", (1, 8, 8))
    for b, t in enumerate(tiles):
        centre = pred.tile(t)["centre_nm"]
        assert same_bits(read(out, centre)[0], inputs["raw"][b, 0] * (CLASSES.index("nuc") + 1)), t


def test_predictor_resumes_where_it_stopped(synth: Synth, tmp_path: Path) -> None:
    spec = predict_spec(synth, tmp_path)
    shares = [cc.Predictor(spec, rank=r, world_size=2).pending() for r in range(2)]
    assert shares[0] and shares[1] and not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == list(range(PRED_TILES))
    first = cc.Predictor(spec, batch_size=4)
    done = []
    for tiles, inputs in first:
        first.write(tiles, model(inputs["raw"]))
        done += tiles
        if len(done) >= 8:
            break
    assert first.tiles_completed == len(done) == 8
    # A restart skips the tiles written.
    second = cc.Predictor(spec, batch_size=4)
    assert second.pending() == [t for t in range(PRED_TILES) if t not in done]
    for tiles, inputs in second:
        second.write(tiles, model(inputs["raw"]))
    assert second.pending() == []
    third = cc.Predictor(spec, batch_size=4)
    assert third.pending() == [] and list(third) == []
    centre = [200.0 + (n - 1) / 2 * 8 for n in PRED_SHAPE]
    raw = read(image(synth.raw, PRED_SHAPE), centre)
    assert same_bits(read(image(tmp_path / "out.zarr/synth/nuc", PRED_SHAPE), centre), raw * 3)
    # `tiles_completed`: "Tiles written so far (this run and earlier ones)".
    assert second.tiles_completed == PRED_TILES, second.tiles_completed
    assert third.tiles_completed == PRED_TILES, third.tiles_completed


def test_predictor_with_context_zarr_v3_and_uint8(synth: Synth, tmp_path: Path) -> None:
    spec = predict_spec(synth, tmp_path, context=[2, 2, 2], zarr_format=3, dtype="uint8", classes=["er"])
    pred = cc.Predictor(spec, batch_size=5)
    [unit] = pred.plan["units"]
    assert unit["groups"] == [str(tmp_path / "out.zarr/synth/er")]
    grown = image(synth.raw, (12, 12, 12))
    for tiles, inputs in pred:
        raw = inputs["raw"]
        assert list(raw.shape) == [len(tiles), 1, 12, 12, 12]
        for b, t in enumerate(tiles):
            assert same_bits(raw[b, 0], read(grown, pred.tile(t)["centre_nm"])), t
        # The model crops the context away and maps raw to [0, 1]: uint8 output = raw again.
        core = raw[:, :, 2:-2, 2:-2, 2:-2] / 255.0
        pred.write(torch.tensor(tiles), core.expand(-1, len(CLASSES), -1, -1, -1))
    assert pred.pending() == []
    group = tmp_path / "out.zarr/synth/er"
    meta = json.loads((group / "s0/zarr.json").read_text())
    assert meta["zarr_format"] == 3 and meta["shape"] == PRED_SHAPE and meta["data_type"] == "uint8"
    out = image(group, PRED_SHAPE)
    assert out.dtype() == "uint8" and list(out.level_translation()) == [200.0, 200.0, 200.0]
    centre = [200.0 + (n - 1) / 2 * 8 for n in PRED_SHAPE]
    assert same_bits(read(out, centre), read(image(synth.raw, PRED_SHAPE), centre))


def test_predictor_rejects_bad_tiles_and_outputs(synth: Synth, tmp_path: Path) -> None:
    pred = cc.Predictor(predict_spec(synth, tmp_path))
    with pytest.raises(ValueError, match="tile 99 does not exist"):
        pred.read([99])
    with pytest.raises(ValueError):
        pred.tile(99)
    with pytest.raises((ValueError, cc.CellmapError), match="out of range"):
        pred.write([99], torch.zeros(1, len(CLASSES), 8, 8, 8))
    with pytest.raises((ValueError, cc.CellmapError), match="need 2048 values"):
        pred.write([0], torch.zeros(1, len(CLASSES) - 1, 8, 8, 8))
    assert pred.pending() == list(range(PRED_TILES)) and pred.tiles_completed == 0


# --------------------------------------------------------------------------------------------
# NativeImage


def train_centre_with_nuc_label_2(synth: Synth) -> list[float]:
    """A train centre (on the sample grid) whose 16³ nuc crop holds stored label value 2."""
    crop = image(synth.label(TRAIN_CROP, "nuc"), (160, 160, 160))
    t = crop.level_translation()
    whole = read(crop, [t[a] + 79.5 * 8 for a in range(3)])
    idx = (whole == 2).nonzero()
    assert len(idx) > 0
    i = idx[len(idx) // 2].clamp(8, 150).tolist()  # 16³ fits inside the 160³ crop
    return [t[a] + i[a] * 8 for a in range(3)]


def test_native_image_reads_equal_sample_raw_values(synth: Synth) -> None:
    centre = train_centre_with_nuc_label_2(synth)
    raw_values = cc.sample(synth.spec, "train", 0, centre, raw_values=True)
    transformed = cc.sample(synth.spec, "train", 0, centre)
    assert raw_values["info"]["value_transforms"] is False and transformed["info"]["value_transforms"] is True
    raw = image(synth.raw, RAW_SHAPE, interpolation="linear")
    assert same_bits(read(raw, centre), raw_values["raw"][0])
    for c, cls in enumerate(CLASSES):
        label = read(image(synth.label(TRAIN_CROP, cls), LABEL_SHAPE), centre)
        assert same_bits(label, raw_values["labels"][c]), cls
        # Without raw_values the targets are binarized (threshold 0).
        assert same_bits((label > 0).float(), transformed["labels"][c]), cls
    nuc = raw_values["labels"][CLASSES.index("nuc")]
    assert 2.0 in nuc.unique().tolist()


def test_native_image_pads_outside_the_volume(synth: Synth) -> None:
    n = 24
    img = image(synth.raw, (n, n, n), pad_value=-7.0)
    t = img.level_translation()
    # Centred on voxel 0: the crop starts at voxel -11, so its first 11 planes on each axis are outside.
    corner = read(img, t)
    inside = read(img, [t[a] + 11 * 8 for a in range(3)])  # voxels 0..23
    outside = torch.ones(n, n, n, dtype=torch.bool)
    outside[11:, 11:, 11:] = False
    assert (corner[outside] == -7.0).all()
    assert same_bits(corner[11:, 11:, 11:], inside[:13, :13, :13])
    assert (inside != -7.0).all()
    # Beyond the upper corner; the default pad value is NaN.
    nan_img = image(synth.raw, (n, n, n))
    shape = nan_img.level_shape()
    upper = read(nan_img, [t[a] + (shape[a] - 1) * 8 for a in range(3)])  # voxels shape-12 .. shape+11
    assert torch.isnan(upper[12:]).all() and torch.isnan(upper[:, 12:]).all() and torch.isnan(upper[:, :, 12:]).all()
    assert not torch.isnan(upper[:12, :12, :12]).any()
    far = read(nan_img, [-1e6, -1e6, -1e6])
    assert torch.isnan(far).all()


def test_native_image_level_and_bounds_match_the_metadata(synth: Synth) -> None:
    attrs = json.loads((synth.raw / ".zattrs").read_text())
    for request, level in [((8, 8, 8), 0), ((12, 12, 12), 0), ((16, 16, 16), 1), ((32, 32, 32), 2), ((64, 64, 64), 2), ((4, 4, 4), 0)]:
        img = image(synth.raw, (4, 4, 4), scale=request)
        assert img.level() == level, request
        scale, translation = zattrs_transforms(synth.raw, level)
        path = attrs["multiscales"][0]["datasets"][level]["path"]
        shape = json.loads((synth.raw / path / ".zarray").read_text())["shape"]
        assert list(img.level_scale()) == scale and list(img.level_translation()) == translation
        assert list(img.level_shape()) == shape and img.dtype() == "uint8"
        lo, hi = img.bounds_nm()
        assert list(lo) == [translation[a] - scale[a] / 2 for a in range(3)]
        assert list(hi) == [translation[a] + (shape[a] - 0.5) * scale[a] for a in range(3)]
    lo, hi = image(synth.raw, (4, 4, 4)).bounds_nm()
    assert (list(lo), list(hi)) == ([36.0, 20.0, 12.0], [1572.0, 1556.0, 1548.0])


def test_batches_through_the_training_cache_equal_the_direct_batches(
    synth: Synth, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # issue #15: `write_training_cache` writes the spec's training cache (as `cellmap-compile
    # cache` does); a Loader reading through it (the `training_cache` argument, or the spec's key)
    # gives the same batches, rotated training and validation tiles alike.
    monkeypatch.chdir(synth.root)
    spec = loader_dict(str(synth.csv))
    spec["augment"] = {"spatial": {"rotate": {"z": [-30, 30]}}, "targets": [{"binarize": {"threshold": 0}}]}
    cache = tmp_path / "cache"
    report = cc.write_training_cache(spec, cache, chunk=16)
    assert report["copies_written"] == 1 and report["packs_written"] >= 1, report
    manifest = json.loads((cache / "manifest.json").read_text())
    assert len(manifest["packs"]) == report["packs_written"], manifest
    with pytest.raises(ValueError, match="unknown codec `lz5`"):
        cc.write_training_cache(spec, cache, codec="lz5")
    direct = [clone(b) for _, b in zip(range(3), cc.Loader(spec))]
    direct_val = [clone(b) for b in cc.Loader(spec, split="validate")]
    through = [clone(b) for _, b in zip(range(3), cc.Loader(spec, training_cache=cache))]
    spec["loader"]["training_cache"] = str(cache)
    through_val = [clone(b) for b in cc.Loader(spec, split="validate")]
    assert len(through_val) == len(direct_val) > 0
    for got, want in [*zip(through, direct), *zip(through_val, direct_val)]:
        for name in ARRAYS:
            assert torch.equal(got[name].nan_to_num(-7.0), want[name].nan_to_num(-7.0)), name

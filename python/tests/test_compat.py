"""cellmap_compile.compat against cellmap-data 2026.3's documented call patterns.

The call patterns are those of cellmap-data's API contract tests and of the segmentation
challenge (``get_dataloader``, ``train``, ``predict``); the data is the small synthetic dataset
of ``cellmap-compile synth --small`` (raw 96³ at 8 nm, uint8; ``crop1`` train with mito, er,
nuc (instance ids 1, 2) and pm; ``crop2`` validate without pm; crops 64³).
"""

from __future__ import annotations

import csv
import math
import os
import warnings

import pytest
import torch

T = pytest.importorskip("torchvision.transforms.v2")

from cellmap_compile.compat.transforms.augment import (  # noqa: E402
    Binarize,
    GaussianBlur,
    GaussianNoise,
    NaNtoNum,
    Normalize,
    RandomContrast,
    RandomGamma,
)

# Tests that keep every batch (`list(loader)`) make the loader fall back to copies, with a warning
# that `test_keeping_batches_alive_falls_back_to_copies` checks.
pytestmark = pytest.mark.filterwarnings("ignore:.*keeps more batches alive:UserWarning")

CLASSES = ["mito", "er", "nuc", "pm"]
RAW_TX = T.Compose([T.ToDtype(torch.float, scale=True), NaNtoNum({"nan": 0, "posinf": None, "neginf": None})])
TARGET_TX = T.Compose([T.ToDtype(torch.float), Binarize()])


def arrays(shape=(16, 16, 16), scale=(8, 8, 8)):
    return {"raw": {"shape": shape, "scale": scale}}, {"labels": {"shape": shape, "scale": scale}}


# ----------------------------------------------------------------------------------------------
# Transforms (torch only)
# ----------------------------------------------------------------------------------------------


class TestTransforms:
    def test_import_paths(self):
        import cellmap_compile.compat.transforms as tr

        for name in ("Binarize", "GaussianBlur", "GaussianNoise", "NaNtoNum", "RandomContrast", "RandomGamma"):
            assert getattr(tr, name) is getattr(tr.augment, name)

    def test_binarize(self):
        x = torch.tensor([-1.0, 0.0, 0.4, 0.6, float("nan"), 3.0])
        out = Binarize()(x)
        assert torch.equal(out[:4], torch.tensor([0.0, 0.0, 1.0, 1.0]))
        assert out[4].isnan() and out[5] == 1.0
        assert torch.equal(Binarize(0.5)(torch.tensor([0.3, 0.7])), torch.tensor([0.0, 1.0]))
        ints = Binarize(1)(torch.tensor([0, 1, 2], dtype=torch.uint8))
        assert ints.dtype == torch.uint8 and ints.tolist() == [0, 0, 1]

    def test_nan_to_num(self):
        x = torch.tensor([float("nan"), float("inf"), -float("inf"), 2.0])
        out = NaNtoNum({"nan": 0, "posinf": None, "neginf": None})(x)
        big = torch.finfo(torch.float32).max
        assert out.tolist() == [0.0, big, -big, 2.0]
        assert NaNtoNum({"nan": -1, "posinf": 5, "neginf": -5})(x).tolist() == [-1.0, 5.0, -5.0, 2.0]
        with pytest.raises(TypeError):
            NaNtoNum({"nan": 0, "bogus": 1})

    def test_normalize_legacy(self):
        x = torch.tensor([0.0, 51.0, 255.0])
        assert torch.allclose(Normalize()(x), torch.tensor([0.0, 0.2, 1.0]))
        assert torch.allclose(Normalize(shift=-10, scale=0.5)(x), (x - 10) * 0.5)

    def test_todtype_does_not_rescale_float32(self):
        # cellmap-data 2026.3 reads crops as float32 before its transforms: scale=True is a no-op.
        x = torch.tensor([0.0, 128.0, float("nan"), 255.0])
        assert RAW_TX(x).tolist() == [0.0, 128.0, 0.0, 255.0]

    def test_gaussian_noise(self):
        x = torch.arange(8.0)
        assert torch.equal(GaussianNoise(std=0.0)(x), x)
        torch.manual_seed(3)
        out = GaussianNoise(mean=1.0, std=2.0)(x)
        torch.manual_seed(3)
        expected = x + torch.normal(1.0, 2.0, size=(8,))
        assert torch.equal(out, expected)

    def test_random_contrast_hand_computed(self):
        x = torch.tensor([[0.2, 0.4], [0.6, float("nan")]])
        out = RandomContrast((2.0, 2.0))(x)
        mean0 = torch.tensor([0.4, float("nan")])  # mean over the first axis, NaN poisons a column
        expected = (2 * x - mean0).clamp(0, 1).nan_to_num(0.0)
        assert torch.allclose(out, expected)
        assert out.flatten().tolist() == pytest.approx([0.0, 0.0, 0.8, 0.0])
        same = RandomContrast((1.0, 1.0))(torch.tensor([[0.5, 3.0]], dtype=torch.float64))
        assert same.dtype == torch.float64 and same.tolist() == [[0.5, 1.0]]  # r = 1, clamped to [0, 1]

    def test_random_gamma_hand_computed(self):
        x = torch.tensor([-0.5, 0.25, 0.5, 2.0, float("nan")])
        # x ** g, then clamped to [0, 1]; NaN (also a negative base with a fractional g) → 0
        assert RandomGamma((2.0, 2.0))(x).tolist() == pytest.approx([0.25, 0.0625, 0.25, 1.0, 0.0])
        assert RandomGamma((1.5, 1.5))(x).tolist() == pytest.approx([0.0, 0.125, 0.5**1.5, 1.0, 0.0])
        ints = RandomGamma((1.0, 1.0))(torch.tensor([0, 51, 255], dtype=torch.uint8))
        assert ints.dtype == torch.float32 and ints.tolist() == pytest.approx([0.0, 0.2, 1.0])

    def test_gaussian_blur(self):
        const = torch.full((5, 6, 7), 3.0)
        assert torch.allclose(GaussianBlur(3, 1.0, dim=3)(const), const)
        impulse = torch.zeros(1, 9)
        impulse[0, 4] = 1.0
        out = GaussianBlur(3, 1.0, dim=2)(torch.cat([torch.zeros(4, 9), impulse, torch.zeros(4, 9)]))
        w = torch.exp(-torch.tensor([1.0, 0.0, 1.0]) / 2)
        w = w / w.sum()
        assert out.shape == (9, 9)
        assert torch.allclose(out[3:6, 3:6], torch.outer(w, w), atol=1e-7)
        assert GaussianBlur(5, 1.0, dim=3)(torch.rand(1, 4, 4, 4)).shape == (1, 4, 4, 4)
        with pytest.raises(AssertionError):
            GaussianBlur(4, 1.0)
        with pytest.raises(AssertionError):
            GaussianBlur(3, 1.0, dim=4)

    def test_compose(self):
        x = torch.tensor([float("nan"), 0.0, 2.0])
        assert TARGET_TX(x)[1:].tolist() == [0.0, 1.0] and TARGET_TX(x)[0].isnan()


class TestTransformMapping:
    def test_defaults_map_to_rust(self):
        from cellmap_compile.compat import _spec

        raw = _spec.map_value_transforms(RAW_TX, random_ok=True)
        big = torch.finfo(torch.float32).max
        assert raw.spec == [{"nan_to_num": {"nan": 0.0, "posinf": big, "neginf": -big}}] and raw.python == []
        tgt = _spec.map_value_transforms(TARGET_TX, random_ok=True)
        assert tgt.spec == [{"binarize": {"threshold": 0.0}}] and tgt.python == []

    def test_every_augment_maps(self):
        from cellmap_compile.compat import _spec

        chain = T.Compose(
            [
                Normalize(shift=-5, scale=0.5),
                T.Normalize(mean=[0.5], std=[0.25]),
                GaussianNoise(0.0, 0.1),
                RandomContrast((0.8, 1.2)),
                RandomGamma((0.9, 1.1)),
                GaussianBlur(5, 1.5, dim=3),
                GaussianBlur(3, 1.0, dim=2),
            ]
        )
        m = _spec.map_value_transforms(chain, random_ok=True)
        assert m.python == []
        assert m.spec == [
            {"normalize": {"shift": 5.0, "scale": 2.0}},
            {"normalize": {"shift": 0.5, "scale": 0.25}},
            {"gaussian_noise": {"mean": 0.0, "std": 0.1}},
            {"random_contrast": {"range": [0.8, 1.2]}},
            {"random_gamma": {"range": [0.9, 1.1]}},
            {"gaussian_blur": {"sigma": [1.5, 1.5, 1.5], "radius": 2}},
            {"gaussian_blur": {"sigma": [0.0, 1.0, 1.0], "radius": 1}},
        ]

    def test_unknown_and_later_run_in_python(self):
        from cellmap_compile.compat import _spec

        double = T.Lambda(lambda x: x * 2)
        m = _spec.map_value_transforms(T.Compose([Binarize(), double, NaNtoNum({"nan": 0})]), random_ok=True)
        assert m.spec == [{"binarize": {"threshold": 0.0}}]
        assert m.python[0] is double and isinstance(m.python[1], NaNtoNum)

    def test_random_in_validation_runs_in_python(self):
        from cellmap_compile.compat import _spec

        noise = GaussianNoise(std=0.5)
        m = _spec.map_value_transforms(T.Compose([Normalize(), noise]), random_ok=False)
        assert m.spec == [{"normalize": {"shift": -0.0, "scale": 255.0}}] and m.python == [noise]

    def test_spatial_forms(self):
        from cellmap_compile.compat import _spec

        cfg = {
            "mirror": {"axes": {"x": 0.5, "y": True, "z": 0}},
            "transpose": {"axes": ["x", "y", "z"]},
            "rotate": {"axes": {"z": [-30, 60], "y": 10}},
        }
        assert _spec.map_spatial(cfg) == {
            "mirror": {"x": 0.5, "y": 1.0},
            "transpose": ["z", "y", "x"],
            "rotate": {"z": [-30.0, 60.0], "y": [-10.0, 10.0]},
        }
        assert _spec.map_spatial({"mirror": True, "transpose": True}, singleton_axes={"z"}) == {
            "mirror": {"z": 0.5, "y": 0.5, "x": 0.5},
            "transpose": ["y", "x"],
        }
        with pytest.warns(UserWarning, match="deform"):
            assert _spec.map_spatial({"deform": {}}) == {}


# ----------------------------------------------------------------------------------------------
# Utils (torch only)
# ----------------------------------------------------------------------------------------------


class TestUtils:
    def test_longest_common_substring(self):
        from cellmap_compile.compat.utils import longest_common_substring

        assert longest_common_substring("raw_input", "raw_target") == "raw_"
        assert longest_common_substring("in_key", "target_key") == "_key"
        assert longest_common_substring("aaa", "bbb") == ""

    def test_array_shapes(self):
        from cellmap_compile.compat.utils import array_has_singleton_dim, get_sliced_shape, is_array_2D

        nested = {"a": {"shape": (1, 32, 32)}, "b": {"shape": (8, 8, 8)}}
        assert array_has_singleton_dim({"shape": (1, 64, 64)}) is True
        assert array_has_singleton_dim(None) is False and array_has_singleton_dim({}) is False
        assert array_has_singleton_dim(nested) is True
        assert array_has_singleton_dim(nested, summary=False) == {"a": True, "b": False}
        assert is_array_2D({"shape": (64, 64)}) is True and is_array_2D({"shape": (1, 64, 64)}) is False
        two = {"a": {"shape": (64, 64)}, "b": {"shape": (32, 64, 64)}}
        assert is_array_2D(two, summary=any) is True and is_array_2D(two) == {"a": True, "b": False}
        assert get_sliced_shape([64, 64], 0) == [1, 64, 64]
        assert get_sliced_shape([1, 64, 64], 2) == [64, 64, 1]

    def test_permute_singleton_dimension(self):
        from cellmap_compile.compat.utils import permute_singleton_dimension

        d = {"a": {"shape": [8, 8], "scale": [4.0, 8.0]}, "b": {"shape": [1, 6, 6], "scale": [8.0, 8.0, 8.0]}}
        permute_singleton_dimension(d, axis=1)
        assert d == {
            "a": {"shape": [8, 1, 8], "scale": [4.0, 4.0, 8.0]},
            "b": {"shape": [6, 1, 6], "scale": [8.0, 8.0, 8.0]},
        }

    def test_paths_dtypes_indices(self):
        from cellmap_compile.compat.utils import min_redundant_inds, split_target_path, torch_max_value

        assert split_target_path("/d/crop1/[mito,er]") == ("/d/crop1/{label}", ["mito", "er"])
        assert split_target_path("/d/crop1/mito") == ("/d/crop1/mito", ["mito"])
        assert torch_max_value(torch.uint8) == 255 and torch_max_value(torch.int16) == 32767
        assert torch_max_value(torch.float32) == 1
        g = torch.Generator().manual_seed(0)
        idx = min_redundant_inds(4, 10, replacement=False, rng=g)
        assert idx.shape == (10,) and sorted(idx[:8].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
        assert len(set(min_redundant_inds(10, 10, False).tolist())) == 10

    def test_boxes(self):
        from cellmap_compile.compat.utils import box_intersection, box_shape, box_union

        a, b = {"z": (0.0, 10.0), "y": (0.0, 10.0)}, {"z": (5.0, 20.0), "y": (10.0, 12.0)}
        assert box_intersection(a, b) is None  # touching on y
        assert box_intersection(a, {"z": (5.0, 20.0)}) == {"z": (5.0, 10.0)}
        assert box_union(a, b) == {"z": (0.0, 20.0), "y": (0.0, 12.0)}
        assert box_shape({"z": (0.0, 3.0)}, {"z": 8.0}) == {"z": 1}

    def test_get_fig_dict(self):
        matplotlib = pytest.importorskip("matplotlib")
        matplotlib.use("Agg")
        from cellmap_compile.compat.utils import get_fig_dict

        figs = get_fig_dict(torch.rand(2, 1, 12, 12), torch.rand(2, 2, 8, 8), torch.rand(2, 2, 8, 8), ["mito", "er"])
        assert sorted(figs) == ["er", "mito"]
        assert len(figs["mito"].axes) == 2 * 5

    def test_class_balanced_sampler(self):
        import numpy as np
        from cellmap_compile.compat import ClassBalancedSampler

        class Crops(torch.utils.data.ConcatDataset):
            def get_crop_class_matrix(self):
                return np.array([[True, True, False], [True, False, False], [False, False, True]])

        ds = Crops([torch.utils.data.TensorDataset(torch.zeros(n)) for n in (5, 3, 2)])
        sampler = ClassBalancedSampler(ds, 300, seed=1)
        drawn = list(sampler)
        assert len(drawn) == len(sampler) == 300
        rare = sum(1 for i in drawn if i >= 8)  # crop 3 alone annotates class 2
        assert rare >= 90
        with pytest.raises(ValueError):

            class NoClass(Crops):
                def get_crop_class_matrix(self):
                    return np.zeros((3, 2), dtype=bool)

            ClassBalancedSampler(NoClass(ds.datasets))


# ----------------------------------------------------------------------------------------------
# Against the Rust loader, on synthetic data
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def small_synth(tmp_path_factory):
    """``cellmap-compile synth --small`` data (the conftest's ``synth`` is the default size)."""
    from cellmap_compile.cli import main

    d = tmp_path_factory.mktemp("small_synth")
    assert main(["synth", str(d), "--small", "--force"]) == 0
    return d


@pytest.fixture
def in_synth(small_synth, monkeypatch):
    """The small synthetic data's folder as the current one: its CSV holds relative paths, which
    cellmap-data resolves against the current folder."""
    monkeypatch.chdir(small_synth)
    return small_synth


def make_split(csv_path="datasplit.csv", shape=(16, 16, 16), scale=(8, 8, 8), **kwargs):
    from cellmap_compile.compat import CellMapDataSplit

    ia, ta = arrays(shape, scale)
    kwargs.setdefault("train_raw_value_transforms", RAW_TX)
    kwargs.setdefault("val_raw_value_transforms", RAW_TX)
    kwargs.setdefault("target_value_transforms", TARGET_TX)
    return CellMapDataSplit(input_arrays=ia, target_arrays=ta, classes=CLASSES, csv_path=csv_path, **kwargs)


def image(path, shape=(16, 16, 16), **kwargs):
    from cellmap_compile.compat import CellMapImage

    return CellMapImage(path, "x", (8.0, 8.0, 8.0), shape, **kwargs)


RAW = "v2/synth.zarr/recon-1/em/fibsem-uint8"
CROP1 = "v2/synth.zarr/recon-1/labels/groundtruth/crop1"
CROP2 = "v2/synth.zarr/recon-1/labels/groundtruth/crop2"


class TestDataSplit:
    def test_csv_constructor_full_signature(self, in_synth):
        from cellmap_compile.compat import CellMapDataset
        from cellmap_compile.compat.multidataset import CellMapMultiDataset
        from torch.utils.data import Subset

        split = make_split(
            pad=True,
            spatial_transforms=None,
            device="cpu",
            class_relation_dict=None,
            force_has_data=True,
        )
        assert isinstance(split.train_datasets, list) and len(split.train_datasets) == 1
        assert isinstance(split.validation_datasets, list) and len(split.validation_datasets) == 1
        assert all(isinstance(d, CellMapDataset) for d in split.train_datasets + split.validation_datasets)
        combined = split.train_datasets_combined
        assert isinstance(combined, CellMapMultiDataset) and len(combined) > 0
        assert combined.input_arrays == arrays()[0] and combined.target_arrays == arrays()[1]
        blocks = split.validation_blocks
        assert isinstance(blocks, Subset)
        # crop2 is 64³ voxels: 4 × 4 × 4 tiles of 16³.
        assert len(blocks) == 64 and blocks.to("cpu") is blocks
        assert split.to("cpu") is split

    def test_class_counts_and_weights(self, in_synth):
        split = make_split()
        counts = split.class_counts
        assert set(counts) == {"train", "validate"}
        train = counts["train"]
        assert train["totals_total"] == {c: 64**3 for c in CLASSES}
        assert all(0 < train["totals"][c] < 64**3 for c in CLASSES)
        assert counts["validate"]["totals"]["pm"] == 0 and counts["validate"]["totals_total"]["pm"] == 0
        weights = split.train_datasets_combined.class_weights
        for c in CLASSES:
            fg = train["totals"][c]
            assert weights[c] == pytest.approx((64**3 - fg) / fg)
        matrix = split.validation_datasets_combined.get_crop_class_matrix()
        assert matrix.tolist() == [[True, True, True, False]]

    def test_dataset_dict_three_and_five_column_csv(self, in_synth, tmp_path):
        from cellmap_compile.compat import CellMapDataSplit

        ia, ta = arrays()
        by_dict = CellMapDataSplit(
            ia,
            ta,
            CLASSES,
            dataset_dict={
                "train": [{"raw": RAW, "gt": CROP1 + "/[mito,er,nuc,pm]"}],
                "validate": [{"raw": RAW, "gt": CROP2 + "/[mito,er,nuc]"}],
            },
        )
        three = tmp_path / "three.csv"
        with open(three, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["train", os.path.abspath(RAW), os.path.abspath(CROP1) + "/[mito,er,nuc,pm]"])
            w.writerow(["validate", os.path.abspath(RAW), os.path.abspath(CROP2) + "/[mito,er,nuc]"])
        by_csv3 = make_split(str(three))
        by_csv5 = make_split()
        for s in (by_dict, by_csv3, by_csv5):
            assert len(s.train_datasets_combined) == len(by_csv5.train_datasets_combined)
            assert len(s.validation_blocks) == 64

    def test_datasets_argument_and_setters(self, in_synth):
        from cellmap_compile.compat import CellMapDataSplit

        built = make_split()
        split = CellMapDataSplit(
            arrays()[0],
            arrays()[1],
            CLASSES,
            datasets={"train": built.train_datasets, "validate": built.validation_datasets},
        )
        first = split.train_datasets_combined
        split.set_raw_value_transforms(RAW_TX, RAW_TX)
        assert split.train_datasets_combined is not first
        split.set_spatial_transforms({"mirror": {"axes": {"x": 0.5}}})
        assert split.train_datasets[0].spatial_transforms_config == {"mirror": {"axes": {"x": 0.5}}}
        assert "CellMapDataSplit(train=1, val=1" in repr(split)

    def test_crop_that_does_not_fit_is_dropped(self, in_synth):
        split = make_split(shape=(80, 80, 80))
        assert split.train_datasets == [] and split.validation_datasets == []
        forced = make_split(shape=(80, 80, 80), force_has_data=True)
        assert len(forced.train_datasets) == 1 and len(forced.train_datasets[0]) == 0

    def test_empty_split(self):
        from cellmap_compile.compat import CellMapDataSplit

        split = CellMapDataSplit(*arrays(), classes=CLASSES)
        assert split.train_datasets == [] and split.validation_datasets == []


class TestDataLoader:
    def test_training_batches(self, in_synth):
        from cellmap_compile.compat import CellMapDataLoader

        split = make_split(pad=True)
        loader = CellMapDataLoader(
            split.train_datasets_combined.to("cpu"),
            classes=CLASSES,
            batch_size=3,
            is_train=True,
            iterations_per_epoch=10,
            weighted_sampler=True,
        )
        assert len(loader) == len(loader.loader) == math.ceil(10 / 3)
        assert loader.spec["sampling"]["weighting"] == "class_balanced"
        batches = list(loader.loader)
        assert [b["raw"].shape[0] for b in batches] == [3, 3, 3, 1]
        for b in batches:
            assert list(b) == ["idx", "raw", "labels"]
            assert b["idx"].dtype == torch.int64 and b["idx"].shape == (b["raw"].shape[0],)
            assert b["raw"].dtype == torch.float32 and b["raw"].shape[1:] == (1, 16, 16, 16)
            assert b["labels"].dtype == torch.float32 and b["labels"].shape[1:] == (4, 16, 16, 16)
            assert b["raw"].device.type == "cpu"
            # Defaults of cellmap-data 2026.3: raw stays 0–255 (padding → 0), labels 0/1/NaN.
            assert 0 <= b["raw"].min() and b["raw"].max() <= 255 and b["raw"].max() > 1
            assert torch.equal(b["raw"], b["raw"].round())
            known = b["labels"][~b["labels"].isnan()]
            assert set(known.unique().tolist()) <= {0.0, 1.0}
        # A second epoch is as long as the first, also after abandoning one early.
        next(iter(loader))
        assert len(list(loader)) == 4

    def test_unknown_keyword_raises_type_error(self, in_synth):
        from cellmap_compile.compat import CellMapDataLoader

        ds = make_split().train_datasets_combined
        with pytest.raises(TypeError, match="'not_a_kwarg'"):
            CellMapDataLoader(ds, batch_size=2, not_a_kwarg=1)
        loader = CellMapDataLoader(
            ds,
            batch_size=2,
            num_workers=2,
            iterations_per_epoch=4,
            pin_memory=False,
            persistent_workers=True,
            prefetch_factor=2,
            drop_last=False,
            shuffle=True,
            timeout=0,
        )
        assert len(loader) == 2 and loader.spec["loader"]["workers"] == 2

    def test_short_last_validation_batch(self, in_synth):
        from cellmap_compile.compat import CellMapDataLoader

        split = make_split()
        loader = CellMapDataLoader(split.validation_blocks, classes=CLASSES, batch_size=5, is_train=False, device="cpu")
        assert len(loader) == math.ceil(64 / 5)
        batches = list(loader)
        assert [b["raw"].shape[0] for b in batches] == [5] * 12 + [4]
        assert torch.cat([b["idx"] for b in batches]).tolist() == list(range(64))
        labels = torch.cat([b["labels"] for b in batches])
        assert labels[:, 3].isnan().all()  # crop2 does not annotate pm
        assert not labels[:, :3].isnan().any()
        # A second pass is the same, also after abandoning one.
        next(iter(loader))
        again = list(loader)
        assert all(torch.equal(a["raw"], b["raw"]) for a, b in zip(batches, again))
        dropped = CellMapDataLoader(split.validation_blocks, batch_size=5, is_train=False, drop_last=True)
        assert len(dropped) == 12 and [b["raw"].shape[0] for b in dropped] == [5] * 12

    def test_validation_values_equal_direct_reads_and_no_random_transform(self, in_synth):
        from cellmap_compile.compat import CellMapDataLoader

        noisy = T.Compose([T.ToDtype(torch.float), GaussianNoise(std=50.0), RandomContrast((0.5, 1.5))])
        split = make_split(
            train_raw_value_transforms=noisy,
            spatial_transforms={"mirror": {"axes": {"x": 1.0, "y": 1.0}}, "rotate": {"axes": {"z": [-180, 180]}}},
        )
        val = split.validation_datasets[0]
        assert val.spatial_transforms_config is None
        loader = CellMapDataLoader(split.validation_blocks, batch_size=4, is_train=False)
        raw_img = image(os.path.abspath(RAW))
        mito = image(os.path.abspath(CROP2 + "/mito"))
        tiles = val.info.tiles
        for b in loader:
            for i, k in enumerate(b["idx"].tolist()):
                centre = dict(zip("zyx", tiles.centre(k)))
                assert torch.equal(b["raw"][i, 0], raw_img[centre])
                assert torch.equal(b["labels"][i, 0], (mito[centre] > 0).float())

    def test_rust_transforms_equal_the_torch_ones(self, in_synth):
        from cellmap_compile.compat import CellMapDataLoader

        chain = T.Compose(
            [
                T.ToDtype(torch.float, scale=True),
                Normalize(shift=-100, scale=1 / 50),
                GaussianBlur(5, 1.2, dim=3),
                Binarize(0.1),
                NaNtoNum({"nan": 0}),
            ]
        )
        plain = make_split(val_raw_value_transforms=None)
        mapped = make_split(val_raw_value_transforms=chain)
        loader = CellMapDataLoader(mapped.validation_blocks, batch_size=8, is_train=False)
        assert loader.spec["augment"]["inputs"][1] == {"gaussian_blur": {"sigma": [1.2, 1.2, 1.2], "radius": 2}}
        assert not loader._tail  # all of it runs in Rust
        blur_only = make_split(val_raw_value_transforms=T.Compose(chain.transforms[:3]))
        for a, b, c in zip(
            CellMapDataLoader(plain.validation_blocks, batch_size=8, is_train=False),
            CellMapDataLoader(mapped.validation_blocks, batch_size=8, is_train=False),
            CellMapDataLoader(blur_only.validation_blocks, batch_size=8, is_train=False),
        ):
            for i in range(a["raw"].shape[0]):
                torch_blur = T.Compose(chain.transforms[:3])(a["raw"][i, 0])
                assert torch.allclose(c["raw"][i, 0], torch_blur, atol=1e-4)
                assert torch.equal(b["raw"][i, 0], (c["raw"][i, 0] > 0.1).float())

    def test_training_values_are_transformed_in_rust(self, in_synth):
        from cellmap_compile.compat import CellMapDataLoader

        split = make_split(
            train_raw_value_transforms=T.Compose(
                [T.ToDtype(torch.float, scale=True), Normalize(), NaNtoNum({"nan": 0})]
            ),
            spatial_transforms={"mirror": {"axes": {"x": 0.5}}, "transpose": {"axes": ["x", "y"]}},
        )
        loader = CellMapDataLoader(split.train_datasets_combined, batch_size=4, iterations_per_epoch=8)
        assert loader.spec["augment"]["inputs"][0] == {"normalize": {"shift": -0.0, "scale": 255.0}}
        assert loader.spec["augment"]["spatial"] == {"mirror": {"x": 0.5}, "transpose": ["y", "x"]}
        for b in loader:
            assert 0 <= b["raw"].min() and b["raw"].max() <= 1
            assert torch.allclose(b["raw"] * 255, (b["raw"] * 255).round(), atol=1e-3)

    def test_python_transform_runs_per_crop_with_warning(self, in_synth):
        from cellmap_compile.compat import CellMapDataLoader, _spec

        _spec._warned.clear()
        plain = make_split(val_raw_value_transforms=T.ToDtype(torch.float))
        custom = make_split(val_raw_value_transforms=T.Compose([T.ToDtype(torch.float), T.Lambda(lambda x: x * 2 + 1)]))
        a = list(CellMapDataLoader(plain.validation_blocks, batch_size=8, is_train=False))
        with pytest.warns(UserWarning, match="Lambda"):
            b = list(CellMapDataLoader(custom.validation_blocks, batch_size=8, is_train=False))
        for x, y in zip(a, b):
            assert torch.equal(y["raw"], x["raw"] * 2 + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for _ in CellMapDataLoader(custom.validation_blocks, batch_size=8, is_train=False):
                pass  # warned once per transform chain

    def test_keeping_batches_alive_falls_back_to_copies(self, in_synth):
        from cellmap_compile.compat import CellMapDataLoader

        split = make_split()
        loader = CellMapDataLoader(split.validation_blocks, batch_size=4, is_train=False)
        expected = [{k: v.clone() for k, v in b.items()} for b in loader]
        assert len(expected) == 16
        with pytest.warns(UserWarning, match="ring slots"):
            kept = list(loader)  # 16 batches alive at once, more than the ring's 4 slots
        assert [b["idx"].tolist() for b in kept] == [b["idx"].tolist() for b in expected]
        assert all(
            torch.equal(a["raw"], b["raw"]) and torch.equal(a["labels"].nan_to_num(-1), b["labels"].nan_to_num(-1))
            for a, b in zip(kept, expected)
        )
        train = CellMapDataLoader(
            split.train_datasets_combined, batch_size=2, iterations_per_epoch=20, rng=torch.Generator().manual_seed(1)
        )
        fresh = [b["raw"].clone() for b in train]
        again = CellMapDataLoader(
            split.train_datasets_combined, batch_size=2, iterations_per_epoch=20, rng=torch.Generator().manual_seed(1)
        )
        with pytest.warns(UserWarning, match="ring slots"):
            kept = list(again)
        assert len(kept) == 10 and all(torch.equal(a, b["raw"]) for a, b in zip(fresh, kept))

    def test_target_transform_per_class_and_none(self, in_synth):
        from cellmap_compile.compat import CellMapDataLoader

        raw_ids = make_split(target_value_transforms=None, val_raw_value_transforms=None)
        # crop1 (train) labels nuc with instance ids 1 and 2; read its tiles in order.
        ids = CellMapDataLoader(raw_ids.train_datasets_combined, batch_size=8, is_train=False)
        nuc = torch.cat([b["labels"][:, 2] for b in ids])
        assert set(nuc.unique().tolist()) == {0.0, 1.0, 2.0}
        per_class = make_split(target_value_transforms={"nuc": Binarize(1.5)})
        loader = CellMapDataLoader(per_class.train_datasets_combined, batch_size=8, is_train=False)
        assert loader.spec["augment"]["per_class"] == {"nuc": [{"binarize": {"threshold": 1.5}}]}
        got = torch.cat([b["labels"][:, 2] for b in loader])
        assert torch.equal(got, (nuc > 1.5).float())

    def test_2d_arrays_are_squeezed(self, in_synth):
        from cellmap_compile.compat import CellMapDataLoader

        for shape, scale in (((16, 16), (8, 8)), ((1, 16, 16), (8, 8, 8))):
            split = make_split(shape=shape, scale=scale)
            b = next(iter(CellMapDataLoader(split.train_datasets_combined, batch_size=2, iterations_per_epoch=2)))
            assert b["raw"].shape == (2, 1, 16, 16) and b["labels"].shape == (2, 4, 16, 16)
            v = next(iter(CellMapDataLoader(split.validation_blocks, batch_size=2, is_train=False)))
            assert v["raw"].shape == (2, 1, 16, 16)
            sample = split.validation_datasets[0][0]
            assert sample["raw"].shape == (1, 16, 16) and sample["labels"].shape == (4, 16, 16)

    def test_seed_from_rng(self, in_synth):
        from cellmap_compile.compat import CellMapDataLoader

        split = make_split(spatial_transforms={"rotate": {"axes": {"z": [-180, 180]}}})
        ds = split.train_datasets_combined

        def first(seed):
            loader = CellMapDataLoader(
                ds, batch_size=2, iterations_per_epoch=2, rng=torch.Generator().manual_seed(seed)
            )
            return next(iter(loader))["raw"].clone()

        assert torch.equal(first(5), first(5))
        assert not torch.equal(first(5), first(6))
        torch.manual_seed(11)
        a = CellMapDataLoader(ds, iterations_per_epoch=1).seed
        torch.manual_seed(11)
        assert CellMapDataLoader(ds, iterations_per_epoch=1).seed == a == 11

    def test_foreign_dataset_rejected(self):
        from cellmap_compile.compat import CellMapDataLoader

        with pytest.raises(TypeError, match="CellMapDataset"):
            CellMapDataLoader(torch.utils.data.TensorDataset(torch.zeros(3)))

    def test_collate_fn(self):
        from cellmap_compile.compat import CellMapDataLoader

        out = CellMapDataLoader.collate_fn(
            [{"idx": torch.tensor(i), "raw": torch.full((1, 2), float(i)), "__metadata__": {"i": i}} for i in range(3)]
        )
        assert out["idx"].tolist() == [0, 1, 2] and out["raw"].shape == (3, 1, 2)
        assert out["__metadata__"] == [{"i": 0}, {"i": 1}, {"i": 2}]


class TestDatasetAndImage:
    def test_dataset_sample(self, in_synth):
        from cellmap_compile.compat import CellMapDataset, EmptyImage

        ia, ta = arrays((8, 8, 8))
        ds = CellMapDataset(
            RAW,
            CROP2 + "/[mito,er,nuc,pm]",
            CLASSES,
            ia,
            ta,
            raw_value_transforms=RAW_TX,
            target_value_transforms=TARGET_TX,
        )
        assert ds.annotated_classes == ["mito", "er", "nuc"]  # pm is listed but has no group
        assert ds.get_crop_class_matrix().tolist() == [[True, True, True, False]]
        assert isinstance(ds.target_sources["pm"], EmptyImage)
        assert len(ds) == 57**3 and ds.verify()
        item = ds[123]
        assert item["idx"] == 123 and item["raw"].shape == (1, 8, 8, 8) and item["labels"].shape == (4, 8, 8, 8)
        assert item["labels"][3].isnan().all() and not item["labels"][:3].isnan().any()
        centre = ds.get_center(123)
        assert torch.equal(item["raw"][0], image(os.path.abspath(RAW), (8, 8, 8))[centre])
        box = ds.sampling_box
        assert ds.get_center(0) == {ax: box[ax][0] + 4.0 for ax in "zyx"}  # lower corner + half a step

    def test_cellmap_image_api(self, in_synth):
        from cellmap_compile.compat import CellMapImage

        img = CellMapImage(RAW, "raw", (8.0, 8.0, 8.0), (4, 4, 4), pad=True, pad_value=0, interpolation="linear")
        assert isinstance(img.scale_level, int) and img.scale_level == 0
        assert img.bounding_box == {"z": (36.0, 804.0), "y": (20.0, 788.0), "x": (12.0, 780.0)}
        c = img.get_center(0)
        assert c == {"z": 56.0, "y": 40.0, "x": 32.0} and all(isinstance(v, float) for v in c.values())
        patch = img[c]
        assert patch.shape == (4, 4, 4) and patch.dtype == torch.float32
        coarse = CellMapImage(RAW, "raw", (16.0, 16.0, 16.0), (4, 4, 4))
        assert coarse.scale_level == 1
        outside = img[{"z": -1000.0, "y": -1000.0, "x": -1000.0}]
        assert torch.equal(outside, torch.zeros(4, 4, 4))
        nan_pad = CellMapImage(RAW, "raw", (8.0, 8.0, 8.0), (4, 4, 4))
        assert nan_pad[{"z": -1000.0, "y": 0.0, "x": 0.0}].isnan().all()
        scaled = CellMapImage(RAW, "raw", (8.0, 8.0, 8.0), (4, 4, 4), value_transform=lambda x: x / 255)
        assert torch.allclose(scaled[c], patch / 255)
        flat = CellMapImage(RAW, "raw", (8.0, 8.0), (4, 4))
        assert flat.axes == ["z", "y", "x"] and flat[c].shape == (1, 4, 4)
        flat.set_spatial_transforms({"mirror": {"x": True}})
        assert torch.equal(flat[c], CellMapImage(RAW, "raw", (8.0, 8.0), (4, 4))[c].flip(2))
        small = CellMapImage(CROP1 + "/mito", "mito", (8.0, 8.0, 8.0), (80, 80, 80))
        assert small.sampling_box is None
        padded = CellMapImage(CROP1 + "/mito", "mito", (8.0, 8.0, 8.0), (80, 80, 80), pad=True)
        assert len(padded.get_center(0)) == 3
        counts = CellMapImage(CROP1 + "/mito", "mito", (8.0, 8.0, 8.0), (4, 4, 4)).class_counts
        assert counts == {"mito": make_split().class_counts["train"]["totals"]["mito"]}

    def test_metadata_utils_and_find_level(self, in_synth):
        from cellmap_compile.compat import ImageWriter
        from cellmap_compile.compat.utils import create_multiscale_metadata, find_level

        attrs = create_multiscale_metadata(
            "/d/x.zarr/raw", [8.0, 8.0, 8.0], [4.0, 4.0, 4.0], "nanometer", ["z", "y", "x"], 0, 2
        )
        levels = attrs["multiscales"][0]["datasets"]
        assert attrs["multiscales"][0]["name"] == "/raw" and [d["path"] for d in levels] == ["s0", "s1", "s2"]
        # s{k+1}: scale 8·2^k, translation 8·(2^(k−1) − 0.5) + 4 (as cellmap-data: s1 repeats s0's scale)
        assert levels[1]["coordinateTransformations"] == [
            {"type": "scale", "scale": [8.0] * 3},
            {"type": "translation", "translation": [4.0] * 3},
        ]
        assert levels[2]["coordinateTransformations"] == [
            {"type": "scale", "scale": [16.0] * 3},
            {"type": "translation", "translation": [8.0] * 3},
        ]
        for nm, level in ((4.0, "s0"), (8.0, "s0"), (15.9, "s0"), (16.0, "s1"), (40.0, "s2")):
            assert find_level(RAW, {"z": nm, "y": nm, "x": nm}) == level
        assert find_level(RAW.replace("v2", "v3"), {"z": 20.0, "y": 20.0, "x": 20.0}) == "s1"
        with pytest.raises(NotImplementedError, match="CellMapDatasetWriter"):
            ImageWriter("p", "mito", (8.0,) * 3, {}, (4, 4, 4))

    def test_empty_image(self):
        from cellmap_compile.compat import EmptyImage

        e = EmptyImage("p", "mito", (8.0, 8.0), (4, 4))
        a = e[{"z": 0.0}]
        assert a.shape == (1, 4, 4) and a.isnan().all()
        a[0] = 1
        assert e[{}].isnan().all()
        assert e.bounding_box is None and e.sampling_box is None
        assert e.class_counts == {"mito": 0} and e.total_voxels == 0


def test_example_script(small_synth, tmp_path):
    """examples/cellmap_data_script.py trains, validates and writes predictions (shortened)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "cellmap_data_script.py"
    if not script.is_file():
        pytest.skip("the example is not beside the tests")
    data = tmp_path / "data"
    shutil.copytree(small_synth / "v2", data / "v2")
    shutil.copy2(small_synth / "datasplit.csv", data / "datasplit.csv")
    run = subprocess.run(
        [sys.executable, str(script), "--data", str(data), "--epochs", "1", "--iterations", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    assert "epoch 1: train loss" in run.stdout and "over 2 batches" in run.stdout
    assert "wrote 8 tiles" in run.stdout
    assert (data / "predictions.zarr" / "mito" / "s0").is_dir() and not (data / "predictions.zarr" / "er").exists()


class TestWriter:
    def make(self, target_path, **kwargs):
        from cellmap_compile.compat import CellMapDatasetWriter

        kwargs.setdefault("model_classes", CLASSES)
        return CellMapDatasetWriter(
            raw_path=RAW,
            target_path=str(target_path),
            classes=["mito", "er"],
            input_arrays={"raw": {"shape": (8, 8, 8), "scale": (8.0, 8.0, 8.0)}},
            target_arrays={"pred": {"shape": (4, 4, 4), "scale": (8.0, 8.0, 8.0)}},
            target_bounds={"pred": {"z": (200.0, 296.0), "y": (200.0, 264.0), "x": (200.0, 264.0)}},
            overwrite=True,
            device="cpu",
            raw_value_transforms=RAW_TX,
            **kwargs,
        )

    def test_round_trip(self, in_synth, tmp_path):
        from cellmap_compile.compat import CellMapImage

        out = tmp_path / "predictions.zarr"
        writer = self.make(out, model_classes=CLASSES + ["nucleus"])
        assert writer.model_classes == CLASSES + ["nucleus"]
        assert writer.bounding_box == {"z": (200.0, 296.0), "y": (200.0, 264.0), "x": (200.0, 264.0)}
        assert len(writer) == 3 * 2 * 2 and writer.writer_indices == list(range(12))
        loader = writer.loader(batch_size=5)
        batches = list(loader)
        assert len(loader) == 3 and [len(b["idx"]) for b in batches] == [5, 5, 2]
        for b in batches:
            assert set(b) == {"idx", "raw"} and b["raw"].shape[1:] == (1, 8, 8, 8)
            # outputs per model channel: tile id + 100 · channel + a ramp along x
            ramp = torch.arange(4.0).expand(4, 4, 4)
            outputs = torch.stack([torch.stack([t + 100 * c + ramp for c in range(5)]) for t in b["idx"].tolist()])
            writer[b["idx"]] = {"pred": outputs}
        assert not (out / "nuc").exists() and not (out / "nucleus").exists()
        for name, channel in (("mito", 0), ("er", 1)):
            img = CellMapImage(str(out / name), name, (8.0, 8.0, 8.0), (4, 4, 4))
            assert img.bounding_box == writer.bounding_box
            for t in range(12):
                got = img[writer.get_center(t)]
                assert torch.equal(got, t + 100 * channel + torch.arange(4.0).expand(4, 4, 4)), (name, t)
        zarr = pytest.importorskip("zarr")
        arr = zarr.open(str(out / "er" / "s0"), mode="r")[:]
        assert arr.shape == (12, 8, 8) and arr[0, 0, :4].tolist() == [100, 101, 102, 103]

    def test_writes_by_class_and_scalar_index(self, in_synth, tmp_path):
        from cellmap_compile.compat import CellMapImage

        out = tmp_path / "p.zarr"
        writer = self.make(out)
        idx = writer.writer_indices[3]
        writer[idx] = {"mito": torch.full((4, 4, 4), 7.0), "er": torch.full((1, 4, 4, 4), 8.0)}
        batch = torch.tensor([4, 5])
        writer[batch] = {"pred": {"mito": torch.full((2, 4, 4, 4), 9.0)}, "idx": batch}
        img = CellMapImage(str(out / "mito"), "mito", (8.0, 8.0, 8.0), (4, 4, 4))
        assert img[writer.get_center(3)].unique().tolist() == [7.0]
        assert img[writer.get_center(5)].unique().tolist() == [9.0]
        er = CellMapImage(str(out / "er"), "er", (8.0, 8.0, 8.0), (4, 4, 4))
        assert er[writer.get_center(3)].unique().tolist() == [8.0]
        with pytest.raises(TypeError):
            writer[batch] = {"mito": 1.0}

    def test_item_and_inputs(self, in_synth, tmp_path):
        writer = self.make(tmp_path / "q.zarr")
        item = writer[2]
        assert item["idx"] == 2 and item["raw"].shape == (1, 8, 8, 8)
        centre = writer.get_center(2)
        assert torch.equal(
            item["raw"][0],
            image(os.path.abspath(RAW), (8, 8, 8), pad=True, pad_value=0, interpolation="linear")[centre],
        )
        with pytest.raises(TypeError, match="bogus"):
            writer.loader(batch_size=2, bogus=True)


def test_import_config_turns_transform_objects_into_spec_transforms(tmp_path):
    """`cellmap_compile.import_config` takes cellmap-data's keyword arguments as written in Python,
    transform objects included; one without a spec equivalent is an error naming it."""
    import cellmap_compile as cc
    from cellmap_compile.compat.transforms.augment import Binarize, GaussianNoise, NaNtoNum

    (tmp_path / "datasplit.csv").write_text('"train","/data/a.zarr/raw","/data/a.zarr/labels/[mito]"\n')
    arrays = {"raw": {"shape": [8, 8, 8], "scale": [8, 8, 8]}}
    text, notes = cc.import_config(
        tmp_path / "datasplit.csv",
        name="imported",
        input_arrays=arrays,
        target_arrays={"labels": {"shape": [8, 8, 8], "scale": [8, 8, 8]}},
        classes=["mito"],
        train_raw_value_transforms=T.Compose(
            [T.ToDtype(torch.float, scale=True), GaussianNoise(std=0.25), NaNtoNum({"nan": 0})]
        ),
        val_raw_value_transforms=T.Compose([T.ToDtype(torch.float, scale=True), NaNtoNum({"nan": 0})]),
        target_value_transforms=T.Compose([T.ToDtype(torch.float), Binarize(0.5)]),
    )
    spec = cc.normalized_spec(cc.SpecText(text, str(tmp_path / "spec.yaml")))
    noise = {"gaussian_noise": {"mean": 0.0, "std": 0.25}}
    inputs = spec["augment"]["inputs"]
    assert inputs[0] == noise and list(inputs[1]) == ["nan_to_num"] and inputs[1]["nan_to_num"]["nan"] == 0.0
    assert [next(iter(t)) for t in spec["augment"]["validate"]["inputs"]] == ["nan_to_num"]
    assert spec["augment"]["targets"] == [{"binarize": {"threshold": 0.5}}]
    with pytest.raises(ValueError, match=r"`train_raw_value_transforms`: Lambda has no spec equivalent"):
        cc.import_config(
            None, input_arrays=arrays, classes=["mito"], train_raw_value_transforms=T.Lambda(lambda x: x)
        )



def test_a_compat_loader_reads_through_a_training_cache_written_from_its_spec(in_synth, tmp_path):
    # issue #15: compat users write the cache from the loader's spec and pass `training_cache=`.
    import cellmap_compile as cc
    from cellmap_compile.compat import CellMapDataLoader

    split = make_split()
    direct = CellMapDataLoader(split.train_datasets_combined, classes=CLASSES, batch_size=2)
    report = cc.write_training_cache(direct.spec, tmp_path / "tc", chunk=8)
    assert report["copies_written"] >= 1 and report["packs_written"] >= 1, report
    again = cc.write_training_cache(direct.spec, tmp_path / "tc", chunk=8)
    assert again["copies_written"] == again["packs_written"] == 0 and again["kept"] >= 2, again
    forced = cc.write_training_cache(direct.spec, tmp_path / "tc", chunk=8, force=True)
    assert forced["kept"] == 0 and forced["copies_written"] + forced["packs_written"] == again["kept"], forced
    through = CellMapDataLoader(split.train_datasets_combined, classes=CLASSES, batch_size=2, training_cache=tmp_path / "tc")
    n = 0
    for a, b in zip(iter(direct), iter(through)):
        for key in ("raw", "labels"):
            assert torch.equal(a[key].nan_to_num(-7.0), b[key].nan_to_num(-7.0)), key
        n += 1
        if n == 3:
            break
    assert n == 3

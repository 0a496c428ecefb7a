"""A cellmap-data training script that runs on cellmap-compile.

Everything below is cellmap-data's API (release 2026.3); the one line that differs from the same
script on cellmap-data is the import:

    import cellmap_data                                 # cellmap-data
    import cellmap_compile.compat as cellmap_data       # cellmap-compile (batches loaded in Rust)

It trains a tiny 3D convolutional network for a few iterations with a NaN-masked loss (NaN marks
voxels of classes a crop does not annotate), validates on the validation tiles, and writes the
predictions of part of the validation volume with ``CellMapDatasetWriter``.

    python examples/cellmap_data_script.py                 # synthetic data in a temporary folder
    python examples/cellmap_data_script.py --data DIR      # DIR holds datasplit.csv (paths relative to DIR)

Without ``--data`` it first writes a small synthetic dataset with ``python -m cellmap_compile
synth`` (that command comes with cellmap-compile). About a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import cellmap_compile.compat as cellmap_data  # the only change: was `import cellmap_data`
import torch
import torchvision.transforms.v2 as T

CLASSES = ["mito", "er", "nuc", "pm"]
SHAPE = (32, 32, 32)
SCALE = (8.0, 8.0, 8.0)


def synthetic_data() -> str:
    """A small synthetic CellMap-layout dataset with its datasplit.csv, in a temporary folder."""
    folder = os.path.join(tempfile.mkdtemp(prefix="cellmap-data-script-"), "data")
    subprocess.run(
        [sys.executable, "-m", "cellmap_compile", "synth", folder, "--small"], check=True, stdout=subprocess.DEVNULL
    )
    return folder


class TinyNet(torch.nn.Module):
    """Three 3D convolutions: raw [B, 1, Z, Y, X] → logits [B, n_classes, Z, Y, X]."""

    def __init__(self, n_classes: int, width: int = 4) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv3d(1, width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv3d(width, width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv3d(width, n_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def masked_bce(logits: torch.Tensor, target: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the voxels whose label is known (target not NaN)."""
    known = ~target.isnan()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target.nan_to_num(0.0), pos_weight=pos_weight, reduction="none"
    )
    return (loss * known).sum() / known.sum().clamp(min=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="folder with datasplit.csv (default: make synthetic data)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20, help="batches per epoch")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(2)
    os.chdir(args.data or synthetic_data())  # the datasplit's paths are relative to it

    input_arrays = {"raw": {"shape": SHAPE, "scale": SCALE}}
    target_arrays = {"labels": {"shape": SHAPE, "scale": SCALE}}
    normalize = T.Normalize(mean=[128.0], std=[64.0])  # raw arrives as 0–255 floats
    split = cellmap_data.CellMapDataSplit(
        input_arrays=input_arrays,
        target_arrays=target_arrays,
        classes=CLASSES,
        pad=True,
        csv_path="datasplit.csv",
        spatial_transforms={
            "mirror": {"axes": {"x": 0.5, "y": 0.5}},
            "transpose": {"axes": ["x", "y"]},
            "rotate": {"axes": {"z": [-30, 30]}},
        },
        train_raw_value_transforms=T.Compose(
            [
                T.ToDtype(torch.float, scale=True),
                normalize,
                cellmap_data.transforms.augment.NaNtoNum({"nan": 0, "posinf": None, "neginf": None}),
                cellmap_data.transforms.augment.GaussianNoise(std=0.05),
            ]
        ),
        val_raw_value_transforms=T.Compose(
            [
                T.ToDtype(torch.float, scale=True),
                normalize,
                cellmap_data.transforms.augment.NaNtoNum({"nan": 0, "posinf": None, "neginf": None}),
            ]
        ),
        target_value_transforms=T.Compose([T.ToDtype(torch.float), cellmap_data.transforms.augment.Binarize()]),
        class_relation_dict={"nuc": ["pm"], "pm": ["nuc"]},
        device="cpu",
    )
    print(split)

    train_loader = cellmap_data.CellMapDataLoader(
        split.train_datasets_combined,
        classes=CLASSES,
        batch_size=args.batch_size,
        num_workers=args.workers,
        weighted_sampler=True,
        iterations_per_epoch=args.iterations * args.batch_size,  # samples per epoch
        device="cpu",
    )
    val_loader = cellmap_data.CellMapDataLoader(
        split.validation_blocks, classes=CLASSES, batch_size=args.batch_size, is_train=False, device="cpu"
    )
    weights = train_loader.dataset.class_weights
    print("class weights (background / foreground):", {c: round(w, 2) for c, w in weights.items()})
    pos_weight = torch.tensor([weights[c] for c in CLASSES]).clamp(max=10.0)[:, None, None, None]

    model = TinyNet(len(CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    input_key = list(train_loader.dataset.input_arrays)[0]
    target_key = list(train_loader.dataset.target_arrays)[0]
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for batch in train_loader.loader:
            optimizer.zero_grad()
            loss = masked_bce(model(batch[input_key]), batch[target_key], pos_weight)
            loss.backward()
            optimizer.step()
            total += loss.item()
        model.eval()
        val_loss, n = 0.0, 0
        with torch.no_grad():
            for batch in val_loader.loader:
                val_loss += masked_bce(model(batch[input_key]), batch[target_key], pos_weight).item()
                n += 1
        print(
            f"epoch {epoch + 1}: train loss {total / len(train_loader):.4f} over {len(train_loader)} batches, "
            f"validation loss {val_loss / max(n, 1):.4f} over {n} batches ({time.perf_counter() - start:.1f} s)"
        )

    # Predict part of the validation volume and write it as OME-NGFF zarr.
    val = split.validation_datasets[0]
    box = val.bounding_box
    bounds = {ax: (lo, lo + 2 * SHAPE[i] * SCALE[i]) for i, (ax, (lo, hi)) in enumerate(box.items())}
    writer = cellmap_data.CellMapDatasetWriter(
        raw_path=val.raw_path,
        target_path=os.path.abspath("predictions.zarr"),
        classes=["mito", "nuc"],
        input_arrays=input_arrays,
        target_arrays=target_arrays,
        target_bounds={"labels": bounds},
        overwrite=True,
        raw_value_transforms=split.val_raw_value_transforms,
        model_classes=CLASSES,
    )
    with torch.no_grad():
        for batch in writer.loader(batch_size=args.batch_size):
            writer[batch["idx"]] = {"labels": torch.sigmoid(model(batch[input_key]))}
    print(
        f"wrote {len(writer.writer_indices)} tiles of predictions to {os.path.abspath('predictions.zarr')} ({time.perf_counter() - start:.1f} s)"
    )


if __name__ == "__main__":
    main()

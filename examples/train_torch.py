"""Train a small 3D U-Net on CellMap data with `cellmap_compile.Loader`, validating each epoch.

    pip install ./python                                     # once: the package (needs Rust to build)
    python examples/train_torch.py                           # synthetic data, written on the fly
    python examples/train_torch.py --spec my_spec.yaml       # your spec

Target channels are 1 (present), 0 (absent) or NaN (unknown: the class is not annotated in that
crop); NaN voxels are masked out of the loss. Prints the training loss, samples/s and the
validation loss per epoch. Validation batches carry no random value transform.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import cellmap_compile


def block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, padding=1),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv3d(c_out, c_out, 3, padding=1),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet3d(nn.Module):
    """Two-level 3D U-Net: (conv, conv) → pool → (conv, conv) → upsample → (conv, conv) → 1×1×1."""

    def __init__(self, c_in: int, c_out: int, width: int = 8) -> None:
        super().__init__()
        self.down = block(c_in, width)
        self.bottom = block(width, 2 * width)
        self.up = nn.ConvTranspose3d(2 * width, width, 2, stride=2)
        self.fuse = block(2 * width, width)
        self.head = nn.Conv3d(width, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.down(x)
        y = self.up(self.bottom(nn.functional.max_pool3d(skip, 2)))
        return self.head(self.fuse(torch.cat([skip, y], dim=1)))


def centre_crop(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Crop the spatial dims of `x` ([B, C, Z, Y, X]) to `shape`'s, centred."""
    slices = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], shape[2:]):
        start = (have - want) // 2
        slices.append(slice(start, start + want))
    return x[tuple(slices)]


def masked_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the known (non-NaN) target voxels."""
    known = ~torch.isnan(target)
    if not known.any():
        return logits.sum() * 0.0
    return nn.functional.binary_cross_entropy_with_logits(logits[known], target[known])


def synthetic_spec(folder: Path) -> Path:
    """Write a small synthetic CellMap-layout dataset and a spec over it; return the spec's path."""
    cellmap_compile.cli.main(["synth", str(folder)])
    spec = folder / "train.yaml"
    spec.write_text(
        "version: 1\n"
        "name: train_example\n"
        "classes: [mito, er, nuc, pm]\n"
        "arrays:\n"
        "  inputs: { raw: { shape: [32, 32, 32], scale: [8, 8, 8] } }\n"
        "  targets: { labels: { shape: [32, 32, 32], scale: [8, 8, 8] } }\n"
        "data: { csv: datasplit.csv }\n"
        "sampling: { seed: 1, iterations_per_epoch: 64, pad: { train: false, validate: true } }\n"
        "augment:\n"
        "  spatial: { mirror: { z: 0.5, y: 0.5, x: 0.5 }, transpose: [y, x], rotate: { z: [-30, 30] } }\n"
        "  inputs: [ { normalize: { scale: 255 } }, { gaussian_noise: { std: 0.05 } } ]\n"
        "loader: { batch_size: 4, workers: 2, prefetch: 4 }\n"
    )
    return spec


def validate(model: nn.Module, loader: cellmap_compile.Loader, raw_key: str, target_key: str) -> float:
    """Mean masked loss over one validation pass (the padded end of the last batch is skipped)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            keep = batch["idx"] >= 0
            raw, target = batch[raw_key][keep], batch[target_key][keep]
            logits = centre_crop(model(raw), target.shape)
            total += masked_bce(logits, target).item() * int(keep.sum())
            count += int(keep.sum())
    model.train()
    return total / max(1, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=None, help="the spec (default: synthetic data and a small spec)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--steps",
        type=int,
        default=0,
        help="stop each round after this many steps (0: a full epoch); the next round finishes the same epoch",
    )
    parser.add_argument("--device", default=None, help="override the spec's device")
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    tmp = None
    if args.spec is None:
        tmp = tempfile.TemporaryDirectory()
        args.spec = synthetic_spec(Path(tmp.name))
    loader = cellmap_compile.Loader(args.spec, "train", device=args.device)
    val_loader = cellmap_compile.Loader(args.spec, "validate", device=args.device)
    (raw_key, _, _), (target_key, classes, _) = loader.arrays[0], loader.arrays[-1]
    model = UNet3d(1, classes).to(loader.device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr)
    print(f"{loader!r}\nclasses {loader.spec['classes']}, {sum(p.numel() for p in model.parameters())} parameters")

    for _ in range(args.epochs):
        epoch = loader.epoch
        t, samples, total = time.perf_counter(), 0, 0.0
        for step, batch in enumerate(loader):
            raw, target = batch[raw_key], batch[target_key]
            logits = centre_crop(model(raw), target.shape)
            loss = masked_bce(logits, target)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item()
            samples += raw.shape[0]
            if args.steps and step + 1 >= args.steps:
                break
        seconds = time.perf_counter() - t
        val = validate(model, val_loader, raw_key, target_key)
        print(
            f"epoch {epoch}, {step + 1} steps: loss {total / max(1, step + 1):.4f}, "
            f"{samples / seconds:.1f} samples/s; validation loss {val:.4f}"
        )


if __name__ == "__main__":
    main()

"""Train a small 3D U-Net on synthetic CellMap data through the generated Python loader.

    cellmap-compile synth data/                             # data/spec.yaml + zarr stores
    cellmap-compile build data/spec.yaml -o synth --python  # the loader package of that spec
    pip install ./synth                                     # maturin builds the extension
    python examples/train_torch.py --package synth --epochs 2

Target channels are 1 (present), 0 (absent) or NaN (unknown: the class is not annotated in that
crop); NaN voxels are masked out of the loss. Prints the loss and samples/s per epoch.
"""

from __future__ import annotations

import argparse
import importlib
import time

import torch
from torch import nn


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", default="synth", help="the generated loader package (the spec's name)")
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

    pkg = importlib.import_module(args.package)
    loader = pkg.Loader(device=args.device)
    raw_key, target_key = pkg.INPUTS[0], pkg.TARGETS[0]
    model = UNet3d(1, len(pkg.CLASSES)).to(loader.device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr)
    print(f"{loader!r}\nclasses {pkg.CLASSES}, {sum(p.numel() for p in model.parameters())} parameters")

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
        print(f"epoch {epoch}, {step + 1} steps: loss {total / max(1, step + 1):.4f}, {samples / seconds:.1f} samples/s")


if __name__ == "__main__":
    main()

"""``GaussianNoise``: additive normal noise per voxel."""

from __future__ import annotations

import torch


class GaussianNoise(torch.nn.Module):
    """``x + N(mean, std)`` per element, drawn from torch's global generator.

    The compat loader runs it in Rust as ``gaussian_noise: {mean, std}`` (drawn from the loader's
    counter-based generator instead, so the noise is reproducible but not torch's).
    """

    def __init__(self, mean: float = 0.0, std: float = 0.1) -> None:
        super().__init__()
        self.mean = mean
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add noise (always float32 noise, on ``x``'s device)."""
        noise = torch.normal(mean=float(self.mean), std=float(self.std), size=tuple(x.shape))
        return x + noise.to(x.device)

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"

"""``RandomGamma``: a random power of values in ``[0, 1]``."""

from __future__ import annotations

from typing import Sequence

import torch


class RandomGamma(torch.nn.Module):
    """``clamp(x ** g, 0, 1)``, ``g ~ U(gamma_range)`` (one draw of ``torch.rand`` per call); NaN
    (from NaN input, or a negative value to a fractional power) and infinities become 0. Integer
    input is first scaled to float32 in ``[0, 1]`` by its type's maximum (as
    ``ToDtype(torch.float32, scale=True)``).

    The compat loader runs it in Rust as ``random_gamma: {range}``, which clamps to ``[0, 1]``
    before the power: the same values for inputs in ``[0, 1]`` and above, 0 for negative ones.
    """

    def __init__(self, gamma_range: Sequence[float] = (0.5, 1.5)) -> None:
        super().__init__()
        self.gamma_range = gamma_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply a random gamma to ``x``."""
        lo, hi = float(self.gamma_range[0]), float(self.gamma_range[1])
        gamma = torch.as_tensor(float(torch.rand(1) * (hi - lo) + lo))
        if not torch.is_floating_point(x):
            import torchvision.transforms.v2 as T

            x = T.ToDtype(torch.float32, scale=True)(x)
        out = (x**gamma).clamp(0.0, 1.0)
        return out.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)

    def extra_repr(self) -> str:
        return f"gamma_range={tuple(self.gamma_range)}"

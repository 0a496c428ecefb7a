"""``RandomContrast``: blend with the mean along the first axis by a random ratio."""

from __future__ import annotations

from typing import Sequence

import torch

from ...utils.misc import torch_max_value


class RandomContrast(torch.nn.Module):
    """``r·x + (1 − r)·x.mean(dim=0)``, ``r ~ U(contrast_range)`` (one draw of ``torch.rand``
    per call), clamped to ``[0, max]`` (``max`` is 1 for float tensors, the type's maximum for
    integers), kept in ``x``'s dtype, NaN and infinities set to 0.

    The mean is taken along the first axis, as cellmap-data does (on a ``[Z, Y, X]`` crop: one
    mean per ``(y, x)`` column). The compat loader runs it in Rust as ``random_contrast: {range}``,
    which blends with the mean of the whole crop instead (see ``docs/python.md``).
    """

    def __init__(self, contrast_range: Sequence[float] = (0.5, 1.5)) -> None:
        super().__init__()
        self.contrast_range = contrast_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Change the contrast of ``x``."""
        lo, hi = float(self.contrast_range[0]), float(self.contrast_range[1])
        ratio = float(torch.rand(1) * (hi - lo) + lo)
        blended = ratio * x + (1.0 - ratio) * x.mean(dim=0, keepdim=True)
        out = blended.clamp(0, torch_max_value(x.dtype)).to(x.dtype)
        return out.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)

    def extra_repr(self) -> str:
        return f"contrast_range={tuple(self.contrast_range)}"

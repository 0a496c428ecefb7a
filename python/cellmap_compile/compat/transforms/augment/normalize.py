"""``Normalize``: ``(x + shift) · scale`` (cellmap-data before 2025-12; the segmentation
challenge still imports it)."""

from __future__ import annotations

from typing import Any

import torchvision.transforms.v2 as T


class Normalize(T.Transform):
    """``(x + shift) * scale``; the defaults map uint8 values 0–255 to 0–1.

    cellmap-data 2026.3 no longer has this class (its raw default became
    ``T.ToDtype(torch.float, scale=True)``, which does not rescale there, see
    ``docs/python.md``); it is kept here because cellmap-segmentation-challenge imports it. The
    compat loader runs it in Rust as ``normalize: {shift: -shift, scale: 1/scale}``.
    """

    def __init__(self, shift: float = 0.0, scale: float = 1 / 255) -> None:
        super().__init__()
        self.shift = shift
        self.scale = scale

    def transform(self, inpt: Any, params: dict[str, Any] | None = None) -> Any:
        """Normalize one tensor."""
        return self._transform(inpt, params)

    def _transform(self, inpt: Any, params: dict[str, Any] | None = None) -> Any:
        return (inpt + self.shift) * self.scale

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shift={self.shift}, scale={self.scale})"

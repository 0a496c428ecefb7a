"""``Binarize``: 1 above a threshold, 0 elsewhere, NaN kept (cellmap-data's target transform)."""

from __future__ import annotations

from typing import Any

import torch
import torchvision.transforms.v2 as T


class Binarize(T.Transform):
    """``x > threshold`` in ``x``'s dtype; NaN voxels of a float tensor stay NaN (unknown stays
    unknown). Integer tensors (which cannot hold NaN) give integer 0/1.

    The compat loader runs it in Rust as the spec transform ``binarize: {threshold}``.
    """

    def __init__(self, threshold: float = 0.0) -> None:
        super().__init__()
        self.threshold = threshold

    def transform(self, inpt: Any, params: dict[str, Any] | None = None) -> Any:
        """Binarize one tensor."""
        return self._transform(inpt, params)

    def _transform(self, inpt: Any, params: dict[str, Any] | None = None) -> Any:
        above = inpt > self.threshold
        if not torch.is_floating_point(inpt):
            return above.to(inpt.dtype)
        out = above.to(inpt.dtype)
        nan = torch.isnan(inpt)
        if bool(nan.any()):
            out[nan] = float("nan")
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold})"

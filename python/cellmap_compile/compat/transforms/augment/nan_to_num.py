"""``NaNtoNum``: ``torch.nan_to_num`` with fixed arguments, as a torchvision v2 transform."""

from __future__ import annotations

from typing import Any, Mapping

import torchvision.transforms.v2 as T


class NaNtoNum(T.Transform):
    """``x.nan_to_num(**params)``; ``params`` takes ``nan``, ``posinf`` and ``neginf`` as
    :func:`torch.nan_to_num` does (``None`` for an infinity means the dtype's extreme value).

    The compat loader runs it in Rust as the spec transform ``nan_to_num``.
    """

    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__()
        unknown = set(params) - {"nan", "posinf", "neginf"}
        if unknown:
            raise TypeError(f"NaNtoNum params take `nan`, `posinf` and `neginf`, not {sorted(unknown)}")
        self.params = dict(params)

    def transform(self, inpt: Any, params: dict[str, Any] | None = None) -> Any:
        """Replace NaN and infinities of one tensor."""
        return self._transform(inpt, params)

    def _transform(self, inpt: Any, params: dict[str, Any] | None = None) -> Any:
        return inpt.nan_to_num(**self.params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(params={self.params})"

"""``ImageWriter``: not provided by the compat layer (see ``docs/python.md``)."""

from __future__ import annotations

from typing import Any


class ImageWriter:
    """cellmap-data's single-class patch writer. The compat layer writes predictions through
    :class:`~cellmap_compile.compat.CellMapDatasetWriter` (the Rust prediction writer) and has no
    patch-level writer; constructing one raises ``NotImplementedError``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "cellmap_compile.compat has no ImageWriter; write predictions with CellMapDatasetWriter "
            "(writer[batch['idx']] = outputs), which tiles and writes them in Rust"
        )

"""The ``cellmap-compile`` command line as the package's console script."""

from __future__ import annotations

import sys

from . import _native


def main(argv: list[str] | None = None) -> int:
    """Run ``cellmap-compile`` with ``argv`` (default: the process's arguments) and exit with its code."""
    args = sys.argv[1:] if argv is None else argv
    sys.stdout.flush()
    code = _native.cli(["cellmap-compile", *args])
    if argv is None:
        sys.exit(code)
    return code

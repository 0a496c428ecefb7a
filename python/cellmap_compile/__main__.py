"""``python -m cellmap_compile ARGS``: the ``cellmap-compile`` command line."""

from .cli import main

main()

#!/usr/bin/env bash
# Source this file: installs (once, cached under ~/.cache) a Python venv with the FULL torch
# 2.13.0 wheel from PyPI (`import torch` needs it; ~2.7 GB, ~90 s) plus maturin, and exports
# CELLMAP_PY_VENV pointing at it.
#   source scripts/python-env.sh && "$CELLMAP_PY_VENV/bin/python" -c 'import torch'
venv="${CELLMAP_PY_VENV:-$HOME/.cache/cellmap-compile/torch-2.13.0}"
if [ ! -f "$venv/.complete" ]; then
  echo "installing torch 2.13.0 (full wheel, ~2.7 GB) and maturin into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check torch==2.13.0 numpy 'maturin>=1.9,<2'
  touch "$venv/.complete"
fi
export CELLMAP_PY_VENV="$venv"

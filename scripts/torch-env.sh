#!/usr/bin/env bash
# Source this file: installs (once, cached under ~/.cache) a CPU-only libtorch for tch 0.26
# from the torch 2.13.0 wheel on PyPI and exports LIBTORCH and LD_LIBRARY_PATH for it.
#   source scripts/torch-env.sh && cargo test -p cellmap-runtime --features torch
# On a GPU machine use the full wheel instead (see docs/torch.md).
venv="${CELLMAP_TORCH_VENV:-$HOME/.cache/cellmap-compile/torch-2.13.0-cpu}"
if [ ! -f "$venv/.complete" ]; then
  echo "installing torch 2.13.0 (CPU libraries only, ~540 MB) into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
    torch==2.13.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  touch "$venv/.complete"
fi
LIBTORCH="$(echo "$venv"/lib/python3*/site-packages/torch)"
export LIBTORCH
export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

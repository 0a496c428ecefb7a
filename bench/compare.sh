#!/usr/bin/env bash
# cellmap-data 2026.3.20.1935 (PyPI, with torch 2.13.0) against cellmap-compile on the same
# synthetic data and settings: 128³ raw + 4 classes at 8 nm, batch 8; no augmentation, then
# mirror+transpose+rotate; cellmap-data num_workers 0 and 2, ours workers 1 and 2, and
# cellmap_compile.compat: cellmap-data's own script with the import changed (same num_workers).
# Prints one table and writes bench/results.json and docs/bench.png.
#   bench/compare.sh [DATA_DIR]     (default: a fresh temporary directory)
# The venv (~4.7 GB, the full torch wheel with its nvidia-* deps) is cached under ~/.cache.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CELLMAP_DATA_VENV:-$HOME/.cache/cellmap-compile/cellmap-data-venv}"
if [ ! -f "$venv/.complete" ]; then
  echo "installing cellmap-data 2026.3.20.1935 + torch 2.13.0 into $venv (~2.7 GB download)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    cellmap-data==2026.3.20.1935 torch==2.13.0 matplotlib
  touch "$venv/.complete"
fi

target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p cellmap-codegen
bin="$target/release/cellmap-compile"

data="${1:-$(mktemp -d)/synth}"
if [ ! -f "$data/datasplit.csv" ]; then
  "$bin" synth "$data"
fi

# cellmap_compile.compat is measured in the same venv, installed as the README says (a release
# build of python/ through pip and maturin).
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps ./python

"$venv/bin/python" bench/compare_cellmap_data.py --data "$data" --bin "$bin" --compat \
  --out bench/results.json --plot docs/bench.png

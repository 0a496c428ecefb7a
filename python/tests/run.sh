#!/usr/bin/env bash
# The Python package's tests, as a user gets it: one release wheel (`maturin build`), installed
# into a fresh virtual environment with no Rust toolchain on PATH, then
#   - pytest python/tests (the package's API and cellmap_compile.compat), and
#   - a package built with `cellmap-compile build --python` (pure Python over the wheel),
#     installed there too and run by python/tests/generated_package.py.
# torch 2.13.0, torchvision, numpy and pytest come from pip's cache after the first run.
#   python/tests/run.sh [PYTEST_ARGS...]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cache="$HOME/.cache/cellmap-compile"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# maturin, in a small cached venv of its own.
tools="$cache/maturin-venv"
if [ ! -x "$tools/bin/maturin" ]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check 'maturin>=1.9,<2'
fi
echo "building the wheel (maturin build --release)"
"$tools/bin/maturin" build --quiet --release --manifest-path python/Cargo.toml --out "$work/dist" 2>&1 |
  grep -v '^ *Compiling' || true
wheel=$(ls "$work"/dist/cellmap_compile-*.whl)
echo "wheel: $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"

echo "a fresh venv with the wheel, torch 2.13.0, torchvision, numpy, pytest, matplotlib, zarr 2"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check \
  torch==2.13.0 torchvision==0.28.0 numpy pytest matplotlib "zarr>=2.18,<3" "$wheel"

# Nothing of Rust on PATH from here on: the wheel must be self-contained.
clean_path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v -e '\.cargo' -e rustup | paste -sd: -)
export PATH="$work/venv/bin:$clean_path"
if command -v cargo >/dev/null || command -v rustc >/dev/null; then
  echo "a Rust toolchain is still on PATH: $(command -v cargo rustc)" >&2
  exit 1
fi
cd "$work"  # import the installed package, not the source tree

python -m pytest -q -p no:cacheprovider "$root/python/tests" "$@"

echo "examples/train_torch.py as a user runs it (synthetic data, one short epoch)"
python "$root/examples/train_torch.py" --epochs 1 --steps 4

echo "a package built with cellmap-compile build --python (pure Python over the wheel)"
cellmap-compile synth "$work/data" >/dev/null
cat >"$work/data/pyloader.yaml" <<'SPEC'
version: 1
name: pyloader
classes: [mito, er, nuc, pm]
arrays:
  inputs:
    raw: { shape: [24, 24, 24], scale: [8, 8, 8] }
  targets:
    labels: { shape: [16, 16, 16], scale: [8, 8, 8] }
data:
  csv: datasplit.csv
sampling:
  seed: 42
  iterations_per_epoch: 24
loader:
  batch_size: 4
  workers: 2
  prefetch: 3
SPEC
cellmap-compile build "$work/data/pyloader.yaml" -o "$work/pyloader" --python >/dev/null
pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps "$work/pyloader"
CELLMAP_COMPILE="$(command -v cellmap-compile)" CELLMAP_SPEC="$work/data/pyloader.yaml" CELLMAP_DATA="$work/data/v2" \
  python "$root/python/tests/generated_package.py"

#!/usr/bin/env bash
# Builds the Python package of a small synthetic spec (`cellmap-compile build --python`), installs
# it with torch 2.13.0 into the cached venv of scripts/python-env.sh and runs test_module.py.
#   tests/python/run.sh           the tests (CI)
#   tests/python/run.sh --bench   also builds release binaries and runs bench.py on the synth spec
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
# shellcheck source=../../scripts/python-env.sh
source scripts/python-env.sh
py="$CELLMAP_PY_VENV/bin/python"
export PATH="$CELLMAP_PY_VENV/bin:$PATH"  # maturin, for pip's build hook
export PYO3_PYTHON="$py"
target="${CARGO_TARGET_DIR:-$root/target}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cargo build --quiet -p cellmap-codegen
# A private copy: the shared target folder may be rebuilt meanwhile by someone else.
cp "$target/debug/cellmap-compile" "$work/cellmap-compile"
cli="$work/cellmap-compile"

"$cli" synth "$work/data" >/dev/null
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
"$cli" check "$work/data/pyloader.yaml" >/dev/null
"$cli" build "$work/data/pyloader.yaml" -o "$work/pyloader" --python >/dev/null
echo "building and installing the pyloader wheel (maturin, release)"
"$py" -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall "$work/pyloader"

CELLMAP_COMPILE="$cli" CELLMAP_SPEC="$work/data/pyloader.yaml" CELLMAP_DATA="$work/data/v2" \
  "$py" tests/python/test_module.py

if [ "${1:-}" = "--bench" ]; then
  cargo build --quiet --release -p cellmap-codegen
  cp "$target/release/cellmap-compile" "$work/cellmap-compile-release"
  "$cli" build "$work/data/spec.yaml" -o "$work/synth" --python >/dev/null
  "$py" -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall "$work/synth"
  "$py" tests/python/bench.py synth "$work/data/spec.yaml" "$work/cellmap-compile-release" "${BENCH_BATCHES:-200}"
fi

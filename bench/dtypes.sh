#!/usr/bin/env bash
# Batch dtypes: samples/s and bytes per batch of float32, float16, bfloat16 and uint8 batches on the
# synthetic dataset (128³ raw + 4 classes at 8 nm, batch 8, 2 workers, warm chunk cache), without
# augmentation (strided copies) and with mirror + transpose + rotate (interpolated gathers), the
# dtypes alternated over ROUNDS rounds in one run. Prints one JSON line per measurement.
#   bench/dtypes.sh [DATA_DIR] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p cellmap-codegen
bin="$target/release/cellmap-compile"
data="${1:-$(mktemp -d)/synth}"
rounds="${2:-2}"
[ -f "$data/datasplit.csv" ] || "$bin" synth "$data" >/dev/null

spec() { # dtype augment
  local inputs="  inputs: [{ normalize: { scale: 255 } }]"
  [ "$1" = uint8 ] && inputs="  inputs: []"
  local spatial=""
  [ "$2" = rotate ] && spatial="  spatial: { mirror: { z: 0.5, y: 0.5, x: 0.5 }, transpose: [z, y, x], rotate: { z: [-180, 180] } }"
  cat <<YAML
version: 1
name: dtypes
classes: [mito, er, nuc, pm]
arrays:
  inputs:
    raw: { shape: [128, 128, 128], scale: [8, 8, 8], dtype: $1 }
  targets:
    labels: { shape: [128, 128, 128], scale: [8, 8, 8], dtype: $1 }
data:
  csv: datasplit.csv
sampling: { seed: 42 }
augment:
$inputs
$spatial
loader: { batch_size: 8, workers: 2 }
YAML
}

for round in $(seq "$rounds"); do
  for augment in none rotate; do
    for dtype in float32 float16 bfloat16 uint8; do
      f="$data/dtypes-$dtype-$augment.yaml"
      spec "$dtype" "$augment" > "$f"
      batches=40
      [ "$augment" = rotate ] && batches=12
      line=$("$bin" bench "$f" --batches "$batches" --warmup 4 --quiet | tail -1)
      printf '{"round": %s, "augment": "%s", "dtype": "%s", "report": %s}\n' "$round" "$augment" "$dtype" "$line"
    done
  done
done

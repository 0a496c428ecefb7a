#!/usr/bin/env bash
# Trains the example network: synthetic data → spec → generated crate → tch training loop.
#   bash examples/train/run.sh [STEPS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
cd "$root"
cargo build --release -p cellmap-codegen
bin="${CARGO_TARGET_DIR:-$root/target}/release/cellmap-compile"
[ -d "$here/data/v2" ] || "$bin" synth "$here/data"
"$bin" check --data "$here/train.yaml"
"$bin" build "$here/train.yaml" -o "$here/../train-generated" --force
# shellcheck source=/dev/null
source "$root/scripts/torch-env.sh"
cd "$here"
cargo run --release -- "${1:-300}" "$root/docs/train_loss.png"

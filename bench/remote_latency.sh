#!/usr/bin/env bash
# Remote data at 50 ms a request, at scale (issue #15: "S3-compatible server with 50 ms per
# request: ≥ 50 % of the local cold speed"), one binary against another in the same run.
#
#     bash bench/remote_latency.sh NEW_BIN [OLD_BIN] [ROUNDS]  > bench/remote-latency.txt
#
# Data: bench/regimes.py's `many300` (20 raw volumes, 300 crops × 4 classes, zarr v2 blosc-zstd,
# 64³ chunks; written by `python3 bench/regimes.py --bin BIN --only ws10x` if missing), spec
# `regime-ws10x.yaml` (64³ samples, batch 8, 2 workers, 64 MiB decoded cache: the 224 MB working
# set does not fit). Rows, each a fresh `bench` process (60 measured batches after 2):
#   local      the local files, default settings and `--no-cache` (the denominators);
#   delay      the local files with CELLMAP_STORE_DELAY_MS=50: every chunk request sleeps 50 ms
#              in the thread that makes it, and the loader reads them as remote data;
#   s3         the same files served by s3s-fs (a Rust S3 server, installed once under
#              ~/.cache/cellmap-compile/s3s) on 127.0.0.1, read through `s3://` with the same
#              50 ms added per request. The server shares the 2 cores with the loader.
# The lines are `bench`'s summary: samples/s, CPU cores busy, store requests per sample, most
# requests in flight, the compressed tier's hit rate, chunks fetched ahead (decoded, encoded).
set -euo pipefail
NEW=$1
OLD=${2:-}
ROUNDS=${3:-2}
WORK=${WORK:-/tmp/cellmap-regimes}
MANY=$WORK/many300
[ -f "$MANY/datasplit.csv" ] || python3 "$(dirname "$0")/regimes.py" --bin "$NEW" --only ws10x --work "$WORK" >/dev/null

S3S_ROOT=${S3S_ROOT:-$HOME/.cache/cellmap-compile/s3s}
if [ ! -x "$S3S_ROOT/bin/s3s-fs" ]; then
    # 0.14.1: the newest release that builds with rustc 1.95.
    cargo install s3s-fs@0.14.1 --features binary --root "$S3S_ROOT" --target-dir "$S3S_ROOT/target" >&2
fi
SERVE=$(mktemp -d)
mkdir -p "$SERVE/bench"
ln -s "$MANY/v2" "$SERVE/bench/v2"
PORT=${PORT:-9123}
"$S3S_ROOT/bin/s3s-fs" --host 127.0.0.1 --port "$PORT" --access-key testing --secret-key testing "$SERVE" >/dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$SERVE"' EXIT
S3=$(mktemp -d)
sed 's#"v2/#"s3://bench/v2/#g' "$MANY/datasplit.csv" >"$S3/datasplit.csv"
cp "$MANY/regime-ws10x.yaml" "$S3/"
grep -q 's3://' "$S3/datasplit.csv"

row() { # NAME BIN SPEC [flags...]
    local name=$1 bin=$2 spec=$3
    shift 3
    "$bin" bench "$spec" --batches 60 --warmup 2 --quiet "$@" | tail -1 | python3 -c "
import json, sys
d = json.loads(sys.stdin.read()); f = d['fetch'] or {}
print('$name', json.dumps({'samples_per_s': round(d['samples_per_s'], 1), 'cpu_cores': round(d['cpu_cores'], 2),
    'requests_per_sample': round(f.get('store_requests_per_sample') or 0, 1), 'max_in_flight': f.get('max_in_flight'),
    'tier_hit_rate': round(f.get('compressed_hit_rate') or 0, 2), 'ahead_chunks': f.get('ahead_chunks'),
    'ahead_encoded': f.get('ahead_encoded'), 'first_batch_s': round(d['first_batch_seconds'], 2),
    'peak_rss_mib': d['peak_rss_bytes'] >> 20, 'allocations_per_batch': round(d['allocations_per_batch'])}))"
}

export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export CELLMAP_CACHE_DIR
for round in $(seq "$ROUNDS"); do
    for tag in new old; do
        bin=$NEW
        [ "$tag" = old ] && { [ -n "$OLD" ] || continue; bin=$OLD; }
        CELLMAP_CACHE_DIR=$(mktemp -d)
        row "round$round $tag local" "$bin" "$MANY/regime-ws10x.yaml"
        row "round$round $tag local-no-cache" "$bin" "$MANY/regime-ws10x.yaml" --no-cache
        CELLMAP_STORE_DELAY_MS=50 row "round$round $tag delay-50ms" "$bin" "$MANY/regime-ws10x.yaml"
        CELLMAP_STORE_DELAY_MS=50 row "round$round $tag s3s-fs+50ms" "$bin" "$S3/regime-ws10x.yaml"
        rm -rf "$CELLMAP_CACHE_DIR"
    done
done

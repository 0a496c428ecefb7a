"""Seconds to the first batch with 300 crops (issue #15): cellmap-data against ours in the same run.

    python3 bench/first_batch.py BIN ROUNDS

BIN is a release `cellmap-compile`. Each round runs, one process after the other:
- cellmap-data: split, dataset and loader construction plus one batch (bench/regimes.py's child);
- ours reading the data (`bench --batches 1`);
- ours through the spec's training cache (`bench --no-cache --training-cache DIR`);
- the generated crate's `examples/stream`, built from `many300/ws-tc.yaml` (the same spec naming that
  training cache) into /tmp/gen300:

      cellmap-compile build /tmp/cellmap-regimes/many300/ws-tc.yaml --out /tmp/gen300
      (cd /tmp/gen300 && CARGO_TARGET_DIR=/work/target-rel cargo build --release --example stream)

The data is bench/regimes.py's `many300` (written by it) and its training cache `regime-ws10x-cache`. One
JSON line per round: seconds and ratios.
"""
import json, os, subprocess, sys
sys.path.insert(0, "/work/main/bench")
import regimes
B = sys.argv[1]; rounds = int(sys.argv[2])
many = "/tmp/cellmap-regimes/many300"
s = os.path.join(many, "regime-ws10x.yaml")
tc = os.path.join(many, "regime-ws10x-cache")
py = os.path.expanduser("~/.cache/cellmap-compile/cellmap-data-venv/bin/python")
four = ["mito", "er", "nuc", "pm"]
out = []
for r in range(rounds):
    c = regimes.python(many, four, (64, 64, 64), 8, 1, 0, py)["first_batch_s"]
    d = regimes.ours(B, s, 1, 0)
    t = regimes.ours(B, s, 1, 0, "--no-cache", "--training-cache", tc)
    env = dict(os.environ, CELLMAP_STREAM_JSON="1")
    g = json.loads(subprocess.run(["/work/target-rel/release/examples/stream", "5"], cwd="/tmp/gen300", env=env,
                                  check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    row = {"generated_tc": g["first_batch_seconds"], "generated_open": g["open_seconds"],
           "ratio_generated": round(c / g["first_batch_seconds"], 1), "cellmap_data": round(c, 3), "direct": round(d["first_batch_seconds"], 4), "direct_plan": round(d["plan_seconds"], 4),
           "tc": round(t["first_batch_seconds"], 4), "tc_plan": round(t["plan_seconds"], 4),
           "ratio_direct": round(c / d["first_batch_seconds"], 1), "ratio_tc": round(c / t["first_batch_seconds"], 1)}
    print(json.dumps(row), flush=True)

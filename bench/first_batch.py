"""Seconds to the first batch with 300 crops (issue #15): cellmap-data against ours in the same run.

    python3 bench/first_batch.py --bin BIN [--rounds 4] [--stream PATH] [--baseline OLD] [--python-loader PY]

BIN is a release `cellmap-compile`. Each round runs, one process after the other:
- cellmap-data: split, dataset and loader construction plus one batch (bench/regimes.py's child);
- ours reading the data (`bench --batches 1`);
- ours through the spec's training cache (`bench --no-cache --training-cache DIR`);
- the generated crate's `examples/stream`, built from `many300/ws-tc.yaml` (the same spec naming that
  training cache) into /tmp/gen300:

      cellmap-compile build /tmp/cellmap-regimes/many300/ws-tc.yaml --out /tmp/gen300
      (cd /tmp/gen300 && CARGO_TARGET_DIR=/work/target-rel cargo build --release --example stream)

- with `--baseline OLD` (another release build): OLD reading the data, as `direct_base`;
- with `--python-loader PY` (a Python with `cellmap_compile` installed, a release build): the Python
  package's `Loader` through the training cache and reading the data, its plan from the on-disk plan cache
  (the first round plans and writes it; `import` not counted, as cellmap-data's is not).

The data is bench/regimes.py's `many300` (written by it) and its training cache `regime-ws10x-cache`. One
JSON line per round: seconds and ratios.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import regimes  # noqa: E402

FOUR = ["mito", "er", "nuc", "pm"]

# The Python package's loader, in its own process: seconds to `Loader()` and to its first batch.
PY_LOADER = """
import json, sys, time
import cellmap_compile as cc
spec, tc, plans = sys.argv[1:4]
t = time.perf_counter()
loader = cc.Loader(spec, split="train", cache_dir=plans, training_cache=tc or None)
opened = time.perf_counter() - t
next(iter(loader))
print(json.dumps({"open_s": opened, "first_batch_s": time.perf_counter() - t, "plan_origin": loader.plan_origin}))
"""


def last_json(cmd: list, **kw) -> dict:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--work", default="/tmp/cellmap-regimes")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--stream", default="/work/target-rel/release/examples/stream",
                   help="the generated crate's stream example (built as above)")
    p.add_argument("--crate", default="/tmp/gen300", help="the generated crate (the example runs there)")
    p.add_argument("--python", default=os.path.expanduser("~/.cache/cellmap-compile/cellmap-data-venv/bin/python"))
    p.add_argument("--python-loader", help="a Python with cellmap_compile installed")
    p.add_argument("--baseline", help="another release `cellmap-compile` (an earlier commit) measured reading the "
                   "data in the same round: `direct_base`, `direct_base_plan`")
    a = p.parse_args()
    many = os.path.join(a.work, "many300")
    spec = os.path.join(many, "regime-ws10x.yaml")
    tc = os.path.join(many, "regime-ws10x-cache")
    plans = tempfile.mkdtemp(prefix="cellmap-plans-")
    for _ in range(a.rounds):
        c = regimes.python(many, FOUR, (64, 64, 64), 8, 1, 0, a.python)["first_batch_s"]
        d = regimes.ours(a.bin, spec, 1, 0)
        t = regimes.ours(a.bin, spec, 1, 0, "--no-cache", "--training-cache", tc)
        g = last_json([a.stream, "5"], cwd=a.crate, env=dict(os.environ, CELLMAP_STREAM_JSON="1"))
        row = {"cellmap_data": round(c, 3),
               "generated_tc": g["first_batch_seconds"], "generated_open": g["open_seconds"],
               "tc": round(t["first_batch_seconds"], 4), "tc_plan": round(t["plan_seconds"], 4),
               "direct": round(d["first_batch_seconds"], 4), "direct_plan": round(d["plan_seconds"], 4)}
        if a.baseline:
            b = regimes.ours(a.baseline, spec, 1, 0)
            row["direct_base"] = round(b["first_batch_seconds"], 4)
            row["direct_base_plan"] = round(b["plan_seconds"], 4)
        if a.python_loader:
            for name, cache in [("python_tc", tc), ("python_direct", "")]:
                r = last_json([a.python_loader, "-c", PY_LOADER, spec, cache, plans], cwd=many)
                row[name] = round(r["first_batch_s"], 4)
                row[name + "_plan_origin"] = r["plan_origin"]
        for k in ["generated_tc", "tc", "direct", "direct_base", "python_tc", "python_direct"]:
            if k in row:
                row["ratio_" + k] = round(c / row[k], 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

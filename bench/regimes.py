"""cellmap-data (2026.3.20.1935) against cellmap-compile in the regimes of issue #15, same run.

    python bench/regimes.py --bin target/release/cellmap-compile --work DIR [--only NAME ...]

Regimes (batch 8 unless said, 2 workers / num_workers 2, no augmentation):
- `cold`: 128³ raw + 4 classes at 8 nm, ours without a chunk cache (`bench --no-cache`): every read
  decodes its chunks (cellmap-data has no chunk cache: it always reads through zarr/tensorstore);
- `ws10x`: 300 crops (96³) over 20 volumes, 64³ samples, 4 classes, ours with a 64 MiB cache, far below
  the decoded working set (about 15 MB per crop, 4.5 GB in all), and without one;
- `classes40`: 40 classes per crop at 64³, ours with the default cache and without one;
- `slices2d`: 2D 128² z-slices, 4 classes, batch 16, ours without a cache;
- `slices2d_ws`: 2D 64² z-slices over the 300 crops of `ws10x` (cellmap-data takes no window
  larger than the 96² crops), batch 16, ours with a 64 MiB cache (full all the time: it keeps a
  chunk on its second recent miss) and without one;
- every regime also runs ours through the spec's training cache (`cellmap-compile cache`, written
  once before, its time printed): `tc_no_cache` (no chunk cache: every read decodes a cached
  chunk), and for `ws10x` `tc_cache` (64 MiB chunk cache too) and `tc_cache_locality8` (the
  same with `sampling.locality: 8`);
- `first_batch`: the 300-crop data: seconds from nothing to the first batch (cellmap-data: split,
  dataset and loader construction plus one batch; ours: `bench`'s time to first batch).
`--baseline BIN` also runs every measurement of ours with an earlier build, right after the same
one with `--bin` (keys ending in `@base`), so both meet the same machine. Writes bench/regimes.json. Each measurement runs in a fresh process, with at least 5 warm-up
batches: the batch ring has 4 slots, and a slot's first batch also faults its pages in (about a
third of a second per 335 MB slot on this machine), which a shorter warm-up counts as reading.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def child(a: argparse.Namespace) -> None:
    """One cellmap-data measurement, in its own process."""
    import torch
    from cellmap_data import CellMapDataLoader, CellMapDataSplit

    torch.manual_seed(0)
    os.chdir(a.data)
    classes = a.classes.split(",")
    shape = tuple(int(v) for v in a.shape.split(","))
    t0 = time.perf_counter()
    split = CellMapDataSplit(
        input_arrays={"raw": {"shape": shape, "scale": (8, 8, 8)}},
        target_arrays={"labels": {"shape": shape, "scale": (8, 8, 8)}},
        classes=classes,
        csv_path="datasplit.csv",
    )
    loader = CellMapDataLoader(
        split.train_datasets_combined,
        classes=classes,
        batch_size=a.batch,
        num_workers=a.workers,
        is_train=True,
        weighted_sampler=False,
    )
    it = (b for _ in range(10**9) for b in loader)
    next(it)
    first = time.perf_counter() - t0
    for _ in range(a.warmup):
        next(it)
    t = time.perf_counter()
    for _ in range(a.batches):
        next(it)
    elapsed = time.perf_counter() - t
    print(json.dumps({"samples_per_s": a.batches * a.batch / elapsed, "first_batch_s": first}))


def python(data: str, classes: list, shape: tuple, batch: int, batches: int, warmup: int, venv_python: str) -> dict:
    cmd = [venv_python, os.path.abspath(__file__), "--child", "--data", data, "--classes", ",".join(classes)]
    cmd += ["--shape", ",".join(map(str, shape)), "--batch", str(batch), "--batches", str(batches)]
    cmd += ["--warmup", str(warmup), "--workers", "2"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def spec(data: str, name: str, classes: list, shape: tuple, batch: int, cache: int | None, locality: int = 1) -> str:
    path = os.path.join(data, f"regime-{name}.yaml")
    s = ", ".join(map(str, shape))
    cache_line = f"  cache_bytes: {cache}\n" if cache is not None else ""
    with open(path, "w") as f:
        f.write(
            f"version: 1\nname: regime\nclasses: [{', '.join(classes)}]\narrays:\n"
            f"  inputs:\n    raw: {{ shape: [{s}], scale: [8, 8, 8] }}\n"
            f"  targets:\n    labels: {{ shape: [{s}], scale: [8, 8, 8] }}\n"
            f"data:\n  csv: datasplit.csv\nsampling:\n  seed: 42\n  pad: true\n  locality: {locality}\n"
            f"loader:\n  batch_size: {batch}\n  workers: 2\n{cache_line}"
        )
    return path


def ours(binary: str, spec_path: str, batches: int, warmup: int, *flags: str) -> dict:
    cmd = [binary, "bench", spec_path, "--batches", str(batches), "--warmup", str(warmup), "--quiet", *flags]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def training_cache(binary: str, spec_path: str) -> str:
    """Write the spec's training cache (`cellmap-compile cache`) next to it; returns its folder."""
    out = spec_path[: -len(".yaml")] + "-cache"
    t = time.perf_counter()
    subprocess.run([binary, "cache", spec_path, "--out", out], check=True, capture_output=True)
    print(json.dumps({"training_cache": out, "write_s": round(time.perf_counter() - t, 2)}), flush=True)
    return out


def synth(binary: str, path: str, *args: str) -> None:
    if not os.path.exists(os.path.join(path, "datasplit.csv")):
        subprocess.run([binary, "synth", path, *args], check=True, capture_output=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bin")
    p.add_argument("--baseline", help="an earlier build measured beside --bin, measurement by measurement")
    p.add_argument("--work", default="/tmp/cellmap-regimes")
    p.add_argument("--python", default=os.path.expanduser("~/.cache/cellmap-compile/cellmap-data-venv/bin/python"))
    p.add_argument("--only", nargs="*")
    p.add_argument("--out", default=os.path.join(HERE, "regimes.json"))
    p.add_argument("--no-training-cache", action="store_true", help="skip the training-cache runs")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for k, d in [("data", ""), ("classes", ""), ("shape", ""), ("batch", 8), ("batches", 4), ("warmup", 1), ("workers", 2)]:
        p.add_argument(f"--{k}", type=type(d), default=d, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(a)
        return
    four = ["mito", "er", "nuc", "pm"]
    forty = four + [f"c{i}" for i in range(4, 40)]
    rows = []

    def pair(key: str, spec_path: str, batches: int, warmup: int, *flags: str) -> dict:
        """Ours with `--bin` (and right after with `--baseline`, as `key@base`)."""
        runs = {key: ours(a.bin, spec_path, batches, warmup, *flags)}
        if a.baseline:
            runs[key + "@base"] = ours(a.baseline, spec_path, batches, warmup, *flags)
        return runs

    def want(name: str) -> bool:
        return not a.only or name in a.only

    def row(name: str, py: dict, ours_runs: dict, note: str) -> None:
        r = {"regime": name, "cellmap_data": py, "ours": ours_runs, "note": note}
        r["ratios"] = {k: v["samples_per_s"] / py["samples_per_s"] for k, v in ours_runs.items()}
        rows.append(r)
        print(json.dumps({"regime": name, "cellmap_data": round(py["samples_per_s"], 2),
                          **{k: round(v["samples_per_s"], 1) for k, v in ours_runs.items()},
                          "ratios": {k: round(v, 1) for k, v in r["ratios"].items()}}), flush=True)

    def through_cache(spec_path: str, batches: int, warmup: int, cached_too: bool = False) -> dict:
        """Ours reading through the spec's training cache: without a chunk cache (and with one)."""
        if a.no_training_cache:
            return {}
        tc = training_cache(a.bin, spec_path)
        runs = {"tc_no_cache": ours(a.bin, spec_path, batches, warmup, "--no-cache", "--training-cache", tc)}
        if cached_too:
            runs["tc_cache"] = ours(a.bin, spec_path, batches, warmup, "--training-cache", tc)
        return runs

    one = os.path.join(a.work, "one")
    synth(a.bin, one)
    if want("cold"):
        s = spec(one, "cold", four, (128, 128, 128), 8, None)
        row("cold", python(one, four, (128, 128, 128), 8, 4, 1, a.python),
            {**pair("no_cache", s, 20, 5, "--no-cache"), **pair("cache", s, 30, 5),
             **through_cache(s, 30, 5)},
            "128³ raw + 4 classes, batch 8, 2 workers")
    if want("slices2d"):
        s = spec(one, "slices2d", four, (1, 128, 128), 16, None)
        row("slices2d", python(one, four, (1, 128, 128), 16, 8, 2, a.python),
            {**pair("no_cache", s, 40, 4, "--no-cache"), **pair("cache", s, 200, 20),
             **through_cache(s, 40, 4)},
            "2D 128² z-slices, 4 classes, batch 16, 2 workers")
    many40 = os.path.join(a.work, "many40")
    synth(a.bin, many40, "--volumes", "2", "--crops", "6", "--classes", "40", "--crop-size", "96", "--variants", "v2")
    if want("classes40"):
        s = spec(many40, "classes40", forty, (64, 64, 64), 8, None)
        row("classes40", python(many40, forty, (64, 64, 64), 8, 4, 1, a.python),
            {**pair("no_cache", s, 20, 5, "--no-cache"), **pair("cache", s, 40, 8),
             **through_cache(s, 30, 5)},
            "40 classes per crop at 64³, batch 8, 2 workers")
    many = os.path.join(a.work, "many300")
    synth(a.bin, many, "--volumes", "20", "--crops", "300", "--crop-size", "96", "--variants", "v2")
    if want("ws10x") or want("first_batch"):
        # The decoded working set (every crop's raw and label chunks) is about 4.5 GB: 64 MiB holds
        # a small fraction of it.
        s = spec(many, "ws10x", four, (64, 64, 64), 8, 64 << 20)
        # cellmap-data at ~50–90 samples/s: 20 batches, so that its rate is not a second's noise.
        py = python(many, four, (64, 64, 64), 8, 20, 3, a.python)
        first = pair("cache_64MiB", s, 100, 30)
        r = first["cache_64MiB"]
        if want("ws10x"):
            runs = {**first, **pair("no_cache", s, 100, 30, "--no-cache"),
                    **through_cache(s, 200, 20, cached_too=True)}
            if not a.no_training_cache:
                # The same cache read with 8 draws per crop visit (sampling.locality: 8).
                s8 = spec(many, "ws10x-locality8", four, (64, 64, 64), 8, 64 << 20, locality=8)
                runs["tc_cache_locality8"] = ours(a.bin, s8, 200, 20, "--training-cache", s[: -len(".yaml")] + "-cache")
            row("ws10x", py, runs,
                "300 crops (96³) over 20 volumes, 64³ samples, 4 classes, cache 64 MiB")
        if want("first_batch"):
            rows.append({"regime": "first_batch", "cellmap_data_s": py["first_batch_s"],
                         "ours_s": r.get("first_batch_seconds"), "plan_s": r.get("plan_seconds")})
            print(json.dumps(rows[-1]), flush=True)
    if want("slices2d_ws"):
        s = spec(many, "slices2d-ws", four, (1, 64, 64), 16, 64 << 20)
        row("slices2d_ws", python(many, four, (1, 64, 64), 16, 20, 3, a.python),
            {**pair("cache_64MiB", s, 150, 30), **pair("no_cache", s, 150, 30, "--no-cache")},
            "2D 64² z-slices over 300 crops (96³), 4 classes, batch 16, cache 64 MiB")
    with open(a.out, "w") as f:
        json.dump({"cpus": os.cpu_count(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()

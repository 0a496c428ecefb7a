"""Samples/s through the Python package against the Rust `bench` verb, same spec, same run.

Usage: python bench.py PACKAGE SPEC CELLMAP_COMPILE [BATCHES] [WARMUP]
Prints one line per measurement and a JSON summary as the last line.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time


def python_rate(package: str, handoff: str, batches: int, warmup: int) -> float:
    module = importlib.import_module(package)
    loader = module.Loader(handoff=handoff)
    stream = (b for _ in range(10**9) for b in loader)
    for _ in range(warmup):
        next(stream)
    t = time.perf_counter()
    samples = 0
    for _ in range(batches):
        batch = next(stream)
        samples += int((batch["idx"] >= 0).sum())
        for name in module.ARRAYS:
            batch[name][0, 0, 0, 0, 0].item()  # touch every array once
    return samples / (time.perf_counter() - t)


def rust_rate(cli: str, spec: str, batches: int, warmup: int) -> float:
    out = subprocess.run(
        [cli, "bench", spec, "--batches", str(batches), "--warmup", str(warmup), "--quiet"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["samples_per_s"]


def main() -> None:
    package, spec, cli = sys.argv[1:4]
    batches = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    warmup = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    results = {}
    # Interleave to spread machine noise over every variant.
    for round_ in range(2):
        for name, run in [
            ("rust_bench", lambda: rust_rate(cli, spec, batches, warmup)),
            ("python_dlpack", lambda: python_rate(package, "dlpack", batches, warmup)),
            ("python_copy", lambda: python_rate(package, "copy", batches, warmup)),
        ]:
            rate = run()
            results.setdefault(name, []).append(rate)
            print(f"round {round_} {name:<14} {rate:8.1f} samples/s", flush=True)
    best = {k: max(v) for k, v in results.items()}
    summary = {
        **{f"{k}_samples_per_s": round(v, 1) for k, v in best.items()},
        "dlpack_overhead": round(1 - best["python_dlpack"] / best["rust_bench"], 4),
        "copy_overhead": round(1 - best["python_copy"] / best["rust_bench"], 4),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

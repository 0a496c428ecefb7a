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


class _TimedNative:
    """Proxy of a NativeLoader that accumulates the time spent inside `next_batch`."""

    def __init__(self, native: object) -> None:
        self.native = native
        self.seconds = 0.0

    def next_batch(self):  # noqa: ANN201
        t = time.perf_counter()
        try:
            return self.native.next_batch()
        finally:
            self.seconds += time.perf_counter() - t

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.native, name)


def handoff_seconds(package: str, handoff: str, batches: int) -> float:
    """Seconds per batch spent in Python turning a native batch into tensors (excludes waiting)."""
    module = importlib.import_module(package)
    loader = module.Loader(handoff=handoff)
    timed = _TimedNative(loader._native)
    loader._native = timed

    def fetch() -> float:
        t = time.perf_counter()
        batch = loader._next()
        elapsed = time.perf_counter() - t
        del batch
        loader._step = (loader._step + 1) % len(loader)
        loader.epoch += loader._step == 0
        return elapsed

    for _ in range(5):
        fetch()
    timed.seconds = 0.0
    total = sum(fetch() for _ in range(batches))
    return (total - timed.seconds) / batches


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
    per_batch = {h: handoff_seconds(package, h, batches) for h in ["dlpack", "copy"]}
    rust_batch_s = importlib.import_module(package).BATCH_SIZE / best["rust_bench"]
    for h, s in per_batch.items():
        print(f"hand-off {h:<7} {s * 1e6:8.0f} us per batch = {s / rust_batch_s:.2%} of a Rust batch period")
    summary = {
        **{f"{k}_samples_per_s": round(v, 1) for k, v in best.items()},
        **{f"{h}_handoff_us_per_batch": round(s * 1e6, 1) for h, s in per_batch.items()},
        **{f"{h}_handoff_share": round(s / rust_batch_s, 4) for h, s in per_batch.items()},
        "dlpack_overhead": round(1 - best["python_dlpack"] / best["rust_bench"], 4),
        "copy_overhead": round(1 - best["python_copy"] / best["rust_bench"], 4),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

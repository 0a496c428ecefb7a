"""cellmap-data (2026.3.20.1935) against cellmap-compile on the same synthetic data and settings.

Run by bench/compare.sh, which installs the venv, builds the binary and writes the data:

    python compare_cellmap_data.py --data DIR --bin cellmap-compile --out bench/results.json --plot docs/bench.png

Every measurement runs in a fresh process. cellmap-data: CellMapDataSplit(csv_path=...) and
CellMapDataLoader(batch_size=8, num_workers=0|2, is_train=True). cellmap-compile:
`cellmap-compile bench SPEC --workers 1|2` (its last output line is a JSON object).
"""

import argparse
import json
import os
import subprocess
import sys
import time

CLASSES = ["mito", "er", "nuc", "pm"]
SHAPE = (128, 128, 128)
SCALE = (8, 8, 8)
BATCH = 8

# The same augmentation for both loaders (cellmap-data's canonical spatial config).
SPATIAL_PY = {
    "mirror": {"axes": {"x": 0.5, "y": 0.5, "z": 0.5}},
    "transpose": {"axes": ["x", "y", "z"]},
    "rotate": {"axes": {"x": [-180, 180], "y": [-180, 180], "z": [-180, 180]}},
}
SPATIAL_YAML = """augment:
  spatial:
    mirror: { z: 0.5, y: 0.5, x: 0.5 }
    transpose: [z, y, x]
    rotate: { z: [-180, 180], y: [-180, 180], x: [-180, 180] }
"""

# (augmentation, cellmap-data num_workers, our workers, batches measured, warm-up batches)
ROWS = [
    ("none", 0, 1, 12, 2),
    ("none", 2, 2, 12, 3),
    ("mirror+transpose+rotate", 0, 1, 6, 1),
    ("mirror+transpose+rotate", 2, 2, 8, 2),
]


def spec_yaml(augment: bool, workers: int) -> str:
    return f"""version: 1
name: compare
classes: [{", ".join(CLASSES)}]
arrays:
  inputs:
    raw: {{ shape: [{SHAPE[0]}, {SHAPE[1]}, {SHAPE[2]}], scale: [{SCALE[0]}, {SCALE[1]}, {SCALE[2]}] }}
  targets:
    labels: {{ shape: [{SHAPE[0]}, {SHAPE[1]}, {SHAPE[2]}], scale: [{SCALE[0]}, {SCALE[1]}, {SCALE[2]}] }}
data:
  csv: datasplit.csv
sampling:
  seed: 42
{SPATIAL_YAML if augment else ""}loader:
  batch_size: {BATCH}
  workers: {workers}
"""


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its running descendants (Linux /proc):
    cellmap-data's DataLoader workers are child processes."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, cpu = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        parent[int(d)] = int(rest[1])
        cpu[int(d)] = (int(rest[11]) + int(rest[12])) / tick
    total, frontier = 0.0, [os.getpid()]
    while frontier:
        pid = frontier.pop()
        total += cpu.get(pid, 0.0)
        frontier.extend(c for c, p in parent.items() if p == pid)
    return total


def measure_python(data: str, augment: bool, workers: int, batches: int, warmup: int, module: str) -> dict:
    """Runs in a child process: samples/s of the train loader of `module`: cellmap-data, or
    cellmap_compile.compat (the same script with the import changed)."""
    import importlib

    import torch

    api = importlib.import_module(module)
    CellMapDataLoader, CellMapDataSplit = api.CellMapDataLoader, api.CellMapDataSplit

    torch.manual_seed(0)
    os.chdir(data)  # the datasplit CSV holds paths relative to the data directory
    arrays_in = {"raw": {"shape": SHAPE, "scale": SCALE}}
    arrays_out = {"labels": {"shape": SHAPE, "scale": SCALE}}
    t0 = time.perf_counter()
    split = CellMapDataSplit(
        input_arrays=arrays_in,
        target_arrays=arrays_out,
        classes=CLASSES,
        csv_path="datasplit.csv",
        spatial_transforms=SPATIAL_PY if augment else None,
    )
    dataset = split.train_datasets_combined
    loader = CellMapDataLoader(
        dataset,
        classes=CLASSES,
        batch_size=BATCH,
        num_workers=workers,
        is_train=True,
        weighted_sampler=False,
    )
    setup_s = time.perf_counter() - t0
    it = (batch for _ in range(10**9) for batch in loader)  # epochs back to back
    shape = None
    for _ in range(warmup):
        batch = next(it)
        shape = {k: list(v.shape) for k, v in batch.items() if hasattr(v, "shape")}
    cpu = tree_cpu_seconds()
    t = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
    elapsed = time.perf_counter() - t
    cpu = tree_cpu_seconds() - cpu
    spec = getattr(loader, "spec", None)  # cellmap_compile.compat only: the spec it built
    return {
        "spec": spec,
        "samples_per_s": batches * BATCH / elapsed,
        "cpu_cores": cpu / elapsed,
        "batches": batches,
        "setup_s": setup_s,
        "shapes": shape,
    }


def measure_ours(binary: str, data: str, augment: bool, workers: int, batches: int, warmup: int) -> dict:
    spec = os.path.join(data, f"compare-{'aug' if augment else 'none'}-{workers}.yaml")
    with open(spec, "w") as f:
        f.write(spec_yaml(augment, workers))
    out = subprocess.run(
        [binary, "bench", spec, "--workers", str(workers), "--batches", str(batches), "--warmup", str(warmup), "--quiet"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def child(args: argparse.Namespace) -> None:
    r = measure_python(args.data, args.augment, args.workers, args.batches, args.warmup, args.module)
    print(json.dumps(r))


def plot(rows: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['augment']}\npy workers {r['py_workers']} / ours {r['our_workers']}" for r in rows]
    x = range(len(rows))
    w = 0.38
    fig, ax = plt.subplots(figsize=(9, 4.8))
    py = [r["cellmap_data_samples_per_s"] for r in rows]
    ours = [r["cellmap_compile_samples_per_s"] for r in rows]
    b1 = ax.bar([i - w / 2 for i in x], py, w, label="cellmap-data 2026.3.20.1935")
    b2 = ax.bar([i + w / 2 for i in x], ours, w, label="cellmap-compile")
    for bars in (b1, b2):
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    for i, r in enumerate(rows):
        ax.text(i, max(py[i], ours[i]) * 2.2, f"{r['ratio']:.0f}×", ha="center", fontsize=10, weight="bold")
    ax.set_yscale("log")
    ax.set_ylim(min(py) / 3, max(ours) * 8)
    ax.set_ylabel("samples/s (log)")
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_title(f"128³ raw + {len(CLASSES)} classes at 8 nm, batch {BATCH}, synthetic data")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="directory written by `cellmap-compile synth`")
    p.add_argument("--bin", help="the cellmap-compile binary")
    p.add_argument("--out", default="bench/results.json")
    p.add_argument("--plot", default="docs/bench.png")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--augment", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--batches", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--module", default="cellmap_data", help=argparse.SUPPRESS)
    p.add_argument(
        "--compat",
        action="store_true",
        help="also measure cellmap_compile.compat (cellmap-data's script with the import changed)",
    )
    args = p.parse_args()
    if args.child:
        child(args)
        return
    data = os.path.abspath(args.data)
    rows = []
    for augment, py_workers, our_workers, batches, warmup in ROWS:
        aug = augment != "none"
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--data", data, "--workers", str(py_workers)]
        cmd += ["--batches", str(batches), "--warmup", str(warmup)] + (["--augment"] if aug else [])
        print(f"cellmap-data    {augment:<24} num_workers {py_workers} ...", file=sys.stderr, flush=True)
        py = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(f"cellmap-compile {augment:<24} workers {our_workers} ...", file=sys.stderr, flush=True)
        ours = measure_ours(args.bin, data, aug, our_workers, max(30, batches), 5)
        compat = compat_bench = None
        if args.compat:
            print(f"compat          {augment:<24} num_workers {py_workers} ...", file=sys.stderr, flush=True)
            ccmd = [sys.executable, os.path.abspath(__file__), "--child", "--data", data, "--workers", str(py_workers)]
            ccmd += ["--batches", str(max(30, batches)), "--warmup", "5", "--module", "cellmap_compile.compat"]
            ccmd += ["--augment"] if aug else []
            out = subprocess.run(ccmd, check=True, capture_output=True, text=True).stdout
            compat = json.loads(out.strip().splitlines()[-1])
            # The same spec through `cellmap-compile bench`: what the compat API itself costs.
            # (compat builds cellmap-data's defaults: nearest raw, NaN -> 0, its own seed.)
            compat_spec = os.path.join(data, f"compat-{'aug' if aug else 'none'}-{py_workers}.json")
            with open(compat_spec, "w") as f:
                json.dump(compat["spec"], f)
            print(f"cellmap-compile {augment:<24} compat's spec ...", file=sys.stderr, flush=True)
            bench_cmd = [args.bin, "bench", compat_spec, "--batches", str(max(30, batches)), "--warmup", "5", "--quiet"]
            bench_out = subprocess.run(bench_cmd, check=True, capture_output=True, text=True).stdout
            compat_bench = json.loads(bench_out.strip().splitlines()[-1])
        rows.append(
            {
                "augment": augment,
                "py_workers": py_workers,
                "our_workers": our_workers,
                "cellmap_data_samples_per_s": py["samples_per_s"],
                "cellmap_data_batches": py["batches"],
                "cellmap_data_shapes": py["shapes"],
                "cellmap_data_cpu_cores": py["cpu_cores"],
                "cellmap_compile_samples_per_s": ours["samples_per_s"],
                "cellmap_compile": ours,
                "ratio": ours["samples_per_s"] / py["samples_per_s"],
                "compat_samples_per_s": compat["samples_per_s"] if compat else None,
                "compat_cpu_cores": compat["cpu_cores"] if compat else None,
                "compat_ratio": compat["samples_per_s"] / py["samples_per_s"] if compat else None,
                "compat_vs_bench": compat["samples_per_s"] / ours["samples_per_s"] if compat else None,
                "compat_spec_bench_samples_per_s": compat_bench["samples_per_s"] if compat else None,
                "compat_vs_bench_same_spec": compat["samples_per_s"] / compat_bench["samples_per_s"] if compat else None,
                # Samples per CPU-second of each loader (all its threads and worker processes):
                # num_workers=0 still keeps more than one core busy in cellmap-data.
                "ratio_per_cpu_second": (ours["samples_per_s"] / ours["cpu_cores"])
                / (py["samples_per_s"] / py["cpu_cores"])
                if ours.get("cpu_cores") and py["cpu_cores"] > 0
                else None,
            }
        )
    print(
        f"{'augmentation':<25} {'workers py/ours':>15} {'cellmap-data':>13} {'cellmap-compile':>16} {'ratio':>8}"
        f" {'cores busy py/ours':>19} {'per CPU-s':>10}"
    )
    for r in rows:
        cores = f"{r['cellmap_data_cpu_cores']:.2f} / {r['cellmap_compile'].get('cpu_cores') or float('nan'):.2f}"
        print(
            f"{r['augment']:<25} {str(r['py_workers']) + ' / ' + str(r['our_workers']):>15} "
            f"{r['cellmap_data_samples_per_s']:>13.2f} {r['cellmap_compile_samples_per_s']:>16.1f} {r['ratio']:>7.1f}×"
            f" {cores:>19} {r['ratio_per_cpu_second'] or float('nan'):>9.1f}×"
        )
    if args.compat:
        print(
            f"\n{'cellmap_compile.compat':<25} {'num_workers':>11} {'samples/s':>10} {'vs cellmap-data':>16}"
            f" {'bench, same spec':>17} {'compat / bench':>15}"
        )
        for r in rows:
            print(
                f"{r['augment']:<25} {r['py_workers']:>11} {r['compat_samples_per_s']:>10.1f}"
                f" {r['compat_ratio']:>15.1f}x {r['compat_spec_bench_samples_per_s']:>17.1f}"
                f" {r['compat_vs_bench_same_spec']:>14.3f}x"
            )
    meta = {"cpus": os.cpu_count(), "batch_size": BATCH, "shape_vox": SHAPE, "scale_nm": SCALE, "classes": CLASSES}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"settings": meta, "rows": rows}, f, indent=2)
    plot(rows, args.plot)
    print(f"wrote {args.out} and {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""cellmap-data (2026.3.20.1935) against cellmap-compile reading an S3-compatible server with a fixed
delay per request (issue #15: "S3-compatible server with 50 ms per request: ours ≥ 50× cellmap-data
reading the same server; ours ≥ 50 % of the local cold speed"), same run.

    python3 bench/s3_regime.py --bin PATH --work DIR [--delay-ms 50] [--rounds 2] [--out bench/s3.json]

Regime: the `cold` regime of bench/regimes.py (128³ raw + 4 classes at 8 nm, batch 8, 2 workers /
num_workers 2, no augmentation) on `DIR/one` (`cellmap-compile synth`: raw 192³ and label crops, zarr v2,
blosc-zstd, 64³ chunks; written by regimes.py or here if missing).

The server: `moto_server` (`~/.cache/cellmap-compile/moto-venv`, or `--moto`) on 127.0.0.1, the
`v2/` tree uploaded to `s3://bench/v2/...` with unsigned PUTs straight to moto (no delay). In front of it,
a threaded reverse proxy in this process (`ThreadingHTTPServer`, HTTP/1.1 keep-alive, one upstream
`http.client` connection per client connection) sleeps `--delay-ms` before forwarding each request
(method, path, headers including Host, body) and copies status, headers and body back; it counts the
requests it forwards per client run. Both loaders read through the proxy only (`AWS_ENDPOINT_URL`, the
same dummy credentials `testing`, region us-east-1); the datasplit CSV in `DIR/s3/` names
`s3://bench/v2/synth.zarr` where the local one names `v2/synth.zarr`.

cellmap-data and S3: its CSV rows go through `os.path.join` (fine for `s3://` strings) and zarr-python
2.18's `zarr.open_group` / `open_array` (fsspec URLs: `s3://` reads through s3fs, whose botocore takes the
endpoint from `AWS_ENDPOINT_URL`). One thing does not: `CellMapDataset` keeps a label class only if
`os.path.exists(class_path)`, which is False for every `s3://` path, so every class would silently become
an `EmptyImage` (no label reads at all). The child process therefore wraps `os.path.exists` so that an
`s3://` path is asked of the server (`fsspec.filesystem("s3").exists`, one request per class at
construction) and local paths are unchanged; it fails if any `s3://` class path is reported missing. And
the DataLoader workers are spawned (`multiprocessing.set_start_method("spawn")`), not forked: cellmap-data
opens its zarr arrays (an s3fs instance bound to an asyncio loop) in the main process, and a forked worker
then refuses them (fsspec: "This class is not fork-safe"); spawned workers get the pickled arrays with their
own s3fs. Nothing else in cellmap-data is changed. The request counts at the proxy show it reads from the
server (there is no local copy under `DIR/s3/`).

Runs, each in a fresh process (rounds alternate the ours-rows; cellmap-data runs once, it is slow):
- `local_cold`: ours on local files, `bench --no-cache` (the denominator of "50 % of local cold");
- `cellmap_data_s3`: cellmap-data through the proxy (bench/regimes.py's `child()`: split, loader with
  num_workers 2; warm-up then measured batches);
- `ours_s3_no_cache`: ours through the proxy, `bench --no-cache` (every read fetches and decodes its chunks);
- `ours_s3`: ours through the proxy with default settings (decoded cache plus, for remote data, the
  512 MiB compressed tier: each chunk is fetched once; this data set is small, so after the first batch
  this runs from memory);
- `cache_write`: `cellmap-compile cache SPEC --out DIR` from the S3 source through the proxy (seconds,
  requests): the training cache, a local rechunked copy of what the spec reads;
- `ours_tc_no_cache` / `ours_tc`: `bench --training-cache DIR` with `--no-cache` / without (the cache checks
  the source metadata through the proxy, then reads locally).
Ours runs with `CELLMAP_CACHE_DIR` set to a fresh folder per run, so every run plans from the server (no
plan cached by an earlier run). Also measured: moto's own throughput, undelayed (GETs of one raw chunk
straight to moto, 1 and 8 keep-alive connections), which bounds every row above: at 50 ms a request
and `k` requests in flight the delay alone allows `k × 20` requests/s.

The proxy counts requests by method and status per run (404s are expected: both loaders probe metadata
that is absent, and absent label chunks are read as fill value) and writes every request line to
`DIR/s3-requests/RUN-ROUND.log`.

Writes `--out` (bench/s3.json) with every row (samples/s, seconds to the first batch, requests forwarded,
ratios to cellmap-data and to local cold) and prints a summary.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import regimes  # noqa: E402  (child(), spec(), ours(), synth())

BUCKET = "bench"
FOUR = ["mito", "er", "nuc", "pm"]
SHAPE = (128, 128, 128)
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}


# ---------------------------------------------------------------------------------------------
# cellmap-data child: os.path.exists for s3:// paths, then regimes.child
# ---------------------------------------------------------------------------------------------


def s3_child(a: argparse.Namespace) -> None:
    import fsspec

    local_exists = os.path.exists
    fs = fsspec.filesystem("s3")
    asked = []

    def exists(path) -> bool:
        if isinstance(path, str) and path.startswith("s3://"):
            ok = fs.exists(path)
            asked.append(path)
            if not ok:
                raise SystemExit(f"cellmap-data: {path} missing on the server")
            return ok
        return local_exists(path)

    os.path.exists = exists
    # zarr opens its arrays (s3fs, an asyncio loop) in this process; a forked DataLoader worker then
    # refuses them ("This class is not fork-safe"): workers are spawned instead.
    multiprocessing.set_start_method("spawn")
    regimes.child(a)
    print(json.dumps({"s3_class_paths_checked": len(asked)}), file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# The delaying reverse proxy
# ---------------------------------------------------------------------------------------------


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests = 0
            self.by_method: dict[str, int] = {}
            self.by_status: dict[str, int] = {}  # "GET 200", "HEAD 404", ...
            self.log: list[str] = []
            self.errors = 0  # status >= 400 (404s included: absent chunks, probed metadata) or upstream failures
            self.bytes_out = 0
            self.in_flight = 0
            self.max_in_flight = 0

    def snapshot(self) -> dict:
        with self.lock:
            return {"requests": self.requests, "by_method": dict(self.by_method),
                    "by_status": dict(sorted(self.by_status.items())), "errors": self.errors,
                    "bytes": self.bytes_out, "max_in_flight": self.max_in_flight}


def make_proxy(upstream_port: int, delay_s: float, counter: Counter) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        upstream: http.client.HTTPConnection | None = None

        def log_message(self, *args) -> None:  # quiet
            pass

        def forward(self) -> None:
            with counter.lock:
                counter.in_flight += 1
                counter.max_in_flight = max(counter.max_in_flight, counter.in_flight)
            try:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                time.sleep(delay_s)
                for attempt in range(2):  # one reconnect if moto closed the kept-alive connection
                    try:
                        if self.upstream is None:
                            self.upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
                        self.upstream.request(self.command, self.path, body=body, headers=headers)
                        r = self.upstream.getresponse()
                        data = r.read()
                        break
                    except (http.client.HTTPException, OSError):
                        if self.upstream is not None:
                            self.upstream.close()
                        self.upstream = None
                        if attempt:
                            with counter.lock:
                                counter.requests += 1
                                counter.errors += 1
                            self.send_error(502)
                            return
                self.send_response_only(r.status, r.reason)
                for k, v in r.getheaders():
                    if k.lower() not in HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                length = r.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length if length is not None else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                with counter.lock:
                    counter.requests += 1
                    counter.by_method[self.command] = counter.by_method.get(self.command, 0) + 1
                    k = f"{self.command} {r.status}"
                    counter.by_status[k] = counter.by_status.get(k, 0) + 1
                    counter.log.append(f"{time.perf_counter():.3f} {k} {self.path}")
                    counter.bytes_out += len(data)
                    if r.status >= 400:
                        counter.errors += 1
            finally:
                with counter.lock:
                    counter.in_flight -= 1

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = forward

        def finish(self) -> None:
            super().finish()
            if self.upstream is not None:
                self.upstream.close()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    return server


# ---------------------------------------------------------------------------------------------
# moto
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def put(url: str, body: bytes = b"", headers: dict | None = None) -> int:
    """An unsigned S3 PUT (moto accepts them; the octet-stream type keeps moto from parsing a form)."""
    headers = {"Content-Type": "application/octet-stream", **(headers or {})}
    req = urllib.request.Request(url, data=body, method="PUT", headers=headers)
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status


def upload(moto: str, root: str) -> int:
    assert put(f"{moto}/{BUCKET}") == 200
    n = 0
    for dirpath, _, files in os.walk(os.path.join(root, "v2")):
        for name in sorted(files):
            f = os.path.join(dirpath, name)
            key = os.path.relpath(f, root).replace(os.sep, "/")
            with open(f, "rb") as fh:
                assert put(f"{moto}/{BUCKET}/{key}", fh.read(), {"x-amz-acl": "public-read"}) == 200
            n += 1
    return n


def moto_throughput(port: int, key: str, connections: int, seconds: float) -> dict:
    """Undelayed GETs of one object straight to moto over `connections` keep-alive connections."""
    stop = time.perf_counter() + seconds
    counts = [0] * connections
    nbytes = [0] * connections

    def worker(i: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < stop:
            c.request("GET", f"/{BUCKET}/{key}")
            r = c.getresponse()
            nbytes[i] += len(r.read())
            assert r.status == 200, r.status
            counts[i] += 1
        c.close()

    t = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    el = time.perf_counter() - t
    return {"connections": connections, "requests_per_s": round(sum(counts) / el, 1),
            "MB_per_s": round(sum(nbytes) / el / 1e6, 2), "object_bytes": nbytes[0] // max(counts[0], 1)}


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=False)
    p.add_argument("--work", default="/tmp/cellmap-regimes")
    p.add_argument("--python", default=os.path.expanduser("~/.cache/cellmap-compile/cellmap-data-venv/bin/python"))
    p.add_argument("--moto", default=os.path.expanduser("~/.cache/cellmap-compile/moto-venv/bin/moto_server"))
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--rounds", type=int, default=2, help="rounds of the ours-rows (alternating)")
    p.add_argument("--py-batches", type=int, default=3, help="cellmap-data: measured batches (1 warm-up before)")
    p.add_argument("--s3-batches", type=int, default=3, help="ours --no-cache on S3: measured batches (1 warm-up)")
    p.add_argument("--batches", type=int, default=20, help="local / cached rows: measured batches (5 warm-up)")
    p.add_argument("--skip-python", action="store_true", help="leave out the cellmap-data run")
    p.add_argument("--out", default=os.path.join(HERE, "s3.json"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for k, d in [("data", ""), ("classes", ""), ("shape", ""), ("batch", 8), ("warmup", 1), ("workers", 2)]:
        p.add_argument(f"--{k}", type=type(d), default=d, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        a.batches = a.py_batches
        s3_child(a)
        return

    t_start = time.perf_counter()
    one = os.path.join(a.work, "one")
    regimes.synth(a.bin, one)
    local_spec = regimes.spec(one, "cold", FOUR, SHAPE, 8, None)
    s3dir = os.path.join(a.work, "s3")
    shutil.rmtree(s3dir, ignore_errors=True)
    os.makedirs(s3dir)
    with open(os.path.join(one, "datasplit.csv")) as f:
        csv = f.read()
    assert '"v2/synth.zarr"' in csv
    with open(os.path.join(s3dir, "datasplit.csv"), "w") as f:
        f.write(csv.replace('"v2/synth.zarr"', f'"s3://{BUCKET}/v2/synth.zarr"'))
    s3_spec = regimes.spec(s3dir, "cold", FOUR, SHAPE, 8, None)

    counter = Counter()
    moto_port = free_port()
    moto = subprocess.Popen([a.moto, "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = None
    rows: list[dict] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", moto_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto did not start within 60 s"
                time.sleep(0.1)
        moto_url = f"http://127.0.0.1:{moto_port}"
        t = time.perf_counter()
        uploaded = upload(moto_url, one)
        print(json.dumps({"uploaded_objects": uploaded, "upload_s": round(time.perf_counter() - t, 2)}), flush=True)
        chunk_key = "v2/synth.zarr/recon-1/em/fibsem-uint8/s0/1/1/1"
        moto_raw = [moto_throughput(moto_port, chunk_key, c, 3.0) for c in (1, 8)]
        print(json.dumps({"moto_undelayed": moto_raw}), flush=True)

        proxy = make_proxy(moto_port, a.delay_ms / 1000.0, counter)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ENDPOINT_URL=proxy_url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1")
        plans = os.path.join(a.work, "s3-plans")

        def run(name: str, cmd: list, parse_json: bool = True, round_: int | None = None) -> dict:
            shutil.rmtree(plans, ignore_errors=True)
            e = dict(env, CELLMAP_CACHE_DIR=plans)
            counter.reset()
            t = time.perf_counter()
            pr = subprocess.run(cmd, env=e, capture_output=True, text=True)
            wall = time.perf_counter() - t
            net = counter.snapshot()
            with counter.lock:
                log = list(counter.log)
            os.makedirs(os.path.join(a.work, "s3-requests"), exist_ok=True)
            with open(os.path.join(a.work, "s3-requests", f"{name}-{round_}.log"), "w") as f:
                f.write("\n".join(log) + "\n")
            if pr.returncode != 0:
                raise RuntimeError(f"{name} failed ({pr.returncode}):\n{pr.stdout[-3000:]}\n{pr.stderr[-3000:]}")
            r = json.loads(pr.stdout.strip().splitlines()[-1]) if parse_json else {}
            row = {"run": name, "round": round_, "wall_s": round(wall, 2), "proxy": net, "result": r}
            sps = r.get("samples_per_s")
            first = r.get("first_batch_seconds", r.get("first_batch_s"))
            print(json.dumps({"run": name, "round": round_, "samples_per_s": sps and round(sps, 2),
                              "first_batch_s": first and round(first, 2), "wall_s": row["wall_s"],
                              "requests": net["requests"], "errors": net["errors"]}), flush=True)
            rows.append(row)
            return row

        def bench(spec_path: str, batches: int, warmup: int, *flags: str) -> list:
            return [a.bin, "bench", spec_path, "--batches", str(batches), "--warmup", str(warmup), "--quiet", *flags]

        tc = os.path.join(a.work, "s3-training-cache")
        for rnd in range(a.rounds):
            run("local_cold", bench(local_spec, a.batches, 5, "--no-cache"), round_=rnd)
            if rnd == 0 and not a.skip_python:
                cmd = [a.python, os.path.abspath(__file__), "--child", "--data", s3dir, "--classes", ",".join(FOUR),
                       "--shape", ",".join(map(str, SHAPE)), "--batch", "8", "--py-batches", str(a.py_batches),
                       "--warmup", "1", "--workers", "2"]
                run("cellmap_data_s3", cmd, round_=rnd)
            run("ours_s3_no_cache", bench(s3_spec, a.s3_batches, 1, "--no-cache"), round_=rnd)
            run("ours_s3", bench(s3_spec, a.batches, 5), round_=rnd)
            shutil.rmtree(tc, ignore_errors=True)
            run("cache_write", [a.bin, "cache", s3_spec, "--out", tc, "--quiet"], parse_json=False, round_=rnd)
            run("ours_tc_no_cache", bench(s3_spec, a.batches, 5, "--no-cache", "--training-cache", tc), round_=rnd)
            run("ours_tc", bench(s3_spec, a.batches, 5, "--training-cache", tc), round_=rnd)
    finally:
        if proxy is not None:
            proxy.shutdown()
            proxy.server_close()
        moto.kill()
        moto.wait()

    def rates(name: str) -> list:
        return [r["result"]["samples_per_s"] for r in rows if r["run"] == name]

    local = statistics.median(rates("local_cold"))
    py = rates("cellmap_data_s3")
    py_rate = py[0] if py else None
    summary = {}
    for name in ["local_cold", "cellmap_data_s3", "ours_s3_no_cache", "ours_s3", "ours_tc_no_cache", "ours_tc"]:
        rs = [r for r in rows if r["run"] == name]
        if not rs:
            continue
        sps = [r["result"]["samples_per_s"] for r in rs]
        firsts = [r["result"].get("first_batch_seconds", r["result"].get("first_batch_s")) for r in rs]
        summary[name] = {
            "samples_per_s": [round(v, 3) for v in sps],
            "first_batch_s": [round(v, 2) if v is not None else None for v in firsts],
            "requests": [r["proxy"]["requests"] for r in rs],
            "vs_cellmap_data": [round(v / py_rate, 1) for v in sps] if py_rate else None,
            "vs_local_cold": [round(v / local, 3) for v in sps],
        }
        for r, v in zip(rs, sps):
            r["vs_cellmap_data"] = v / py_rate if py_rate else None
            r["vs_local_cold_median"] = v / local
    writes = [r for r in rows if r["run"] == "cache_write"]
    summary["cache_write"] = {"seconds": [r["wall_s"] for r in writes],
                              "requests": [r["proxy"]["requests"] for r in writes]}
    total = time.perf_counter() - t_start
    out = {
        "regime": "128³ raw + 4 classes at 8 nm, batch 8, 2 workers / num_workers 2, no augmentation",
        "delay_ms": a.delay_ms, "cpus": os.cpu_count(), "moto_undelayed": moto_raw,
        "cellmap_data_s3_access": "CSV rows s3://bench/v2/synth.zarr via zarr 2.18 + s3fs (AWS_ENDPOINT_URL = proxy); "
                                  "os.path.exists wrapped to ask the server for s3:// class paths",
        "local_cold_median_samples_per_s": local, "summary": summary, "rows": rows, "total_s": round(total, 1),
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps({"summary": summary, "total_s": round(total, 1)}, indent=1), flush=True)


if __name__ == "__main__":
    main()

"""cellmap-data (2026.3.20.1935) against cellmap-compile reading an S3-compatible server with a fixed
delay per request (issue #15: "S3-compatible server with 50 ms per request: ours ≥ 50× cellmap-data
reading the same server; ours ≥ 50 % of the local cold speed"), same run.

    python3 bench/s3_regime.py --bin PATH --work DIR [--regime cold|scale|both] [--delay-ms 50] [--rounds 2]
                               [--out bench/s3.json] [--scale-out bench/s3-scale.json] [--skip-python]

Two regimes, one server (moto and the proxy below, started once, stopped on the way out, errors included):
`cold` (the default; writes `--out`) on a 7 MB data set that fits in memory, and `scale` (writes
`--scale-out`) on 300 crops whose encoded data (224 MB) does not fit the caches it is given.

The server: `moto_server` (`~/.cache/cellmap-compile/moto-venv`, or `--moto`) on 127.0.0.1, each
regime's `v2/` tree uploaded to `s3://bench/v2/...` with unsigned PUTs straight to moto (no delay). In
front of it, a threaded reverse proxy in this process (`ThreadingHTTPServer`, HTTP/1.1 keep-alive, one upstream
`http.client` connection per client connection) sleeps `--delay-ms` before forwarding each request
(method, path, headers including Host, body) and copies status, headers and body back; it counts the
requests it forwards per client run. Both loaders read through the proxy only (`AWS_ENDPOINT_URL`, the
same dummy credentials `testing`, region us-east-1); each regime's datasplit CSV in its own folder
(`DIR/s3/`, `DIR/s3-scale/`) names `s3://bench/v2/NAME.zarr` where the local one names `v2/NAME.zarr`.

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
server (there is no local copy under `DIR/s3/` or `DIR/s3-scale/`).

The proxy counts requests by method and status per run (404s are expected: both loaders probe metadata
that is absent, and absent label chunks are read as fill value) and writes every request line to
`DIR/s3-requests/RUN-ROUND.log`.

## `cold`

Regime: the `cold` regime of bench/regimes.py (128³ raw + 4 classes at 8 nm, batch 8, 2 workers /
num_workers 2, no augmentation) on `DIR/one` (`cellmap-compile synth`: raw 192³ and label crops, zarr v2,
blosc-zstd, 64³ chunks; written by regimes.py or here if missing).

`cold` runs, each in a fresh process (rounds alternate the ours-rows; cellmap-data runs once, it is slow):
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

Writes `--out` (bench/s3.json) with every row (samples/s, seconds to the first batch and to the plan,
requests forwarded, ours' fetch stats, ratios to cellmap-data and to local cold) and prints a summary.

## `scale`

Regime: `ws10x` of bench/regimes.py (64³ raw + 4 classes at 8 nm, batch 8, 2 workers / num_workers 2,
spec `cache_bytes` 64 MiB) on `DIR/many300` (`synth --volumes 20 --crops 300 --crop-size 96 --variants
v2`: 20 raw volumes of 192³, 300 crops × 4 classes, zarr v2 blosc-zstd 64³ chunks; 224 MB encoded in
14,540 objects, about 4.5 GB decoded). The whole `v2/` tree is uploaded (`--upload-threads` PUTs at once,
moto-bound); `DIR/s3-scale/datasplit.csv` names `s3://bench/v2/volN.zarr` for each `v2/volN.zarr`. moto's
undelayed rate is measured for a raw chunk, a `.zarray` and a group LIST of that bucket (what the plan
sends). Runs, each in a fresh process with a fresh `CELLMAP_CACHE_DIR`, `--scale-warmup` batches first:
- `scale_local` / `scale_local_no_cache`: ours on local files with the spec's 64 MiB chunk cache / with
  `--no-cache` (`--scale-batches` measured): the local references;
- `scale_s3_default`: ours through the proxy with the default remote settings except
  `--compressed-cache-bytes 64 MiB`, so that the encoded working set does not fit in memory and chunks
  are fetched again (otherwise, after one pass, everything is served from the compressed tier);
- `scale_s3_default_tier`: the same with the default 512 MiB compressed tier, which holds the whole
  encoded set (each chunk fetched at most once per run);
- `scale_cache_write`: `cellmap-compile cache` from the S3 source through the proxy (seconds, requests;
  a one-time cost: 20 raw copies and 300 class packs);
- `scale_tc_no_cache` / `scale_tc`: `bench --training-cache` (`--scale-tc-batches` measured) without /
  with the spec's chunk cache: local cache files read after the source metadata is checked through
  the proxy;
- `scale_first_batch_cellmap_data` (unless `--skip-python`): cellmap-data through the proxy (the child
  above): split, loader, its first batch, then `--scale-py-batches` measured; the process group is killed
  after `--py-timeout` seconds (15 min) and the timeout recorded as a lower bound of its first batch.
Every ours row reports samples/s, `first_batch_seconds`, `plan_seconds` (over S3: the plan opens the
300 crops' metadata through the proxy), requests at the proxy and bench's `fetch` stats; the summary
adds the ratios to both local rows and `first_batch_over_s3` (issue #15's time-to-first-batch target:
generic binary ≤ 5 s and ≥ 20× faster than cellmap-data, here both over S3).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import http.server
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import regimes  # noqa: E402  (child(), spec(), synth())

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


def upload(moto: str, root: str, threads: int = 8) -> int:
    """PUTs every file of `root/v2/` to `s3://bench/v2/...` straight to moto, `threads` at a time (moto-bound)."""
    files = [os.path.join(d, name) for d, _, names in os.walk(os.path.join(root, "v2")) for name in sorted(names)]

    def one(f: str) -> None:
        key = os.path.relpath(f, root).replace(os.sep, "/")
        with open(f, "rb") as fh:
            assert put(f"{moto}/{BUCKET}/{key}", fh.read(), {"x-amz-acl": "public-read"}) == 200

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(one, files):
            pass
    return len(files)


def moto_throughput(port: int, path: str, connections: int, seconds: float) -> dict:
    """Undelayed GETs of one path (an object, a listing) straight to moto over `connections` keep-alive
    connections."""
    stop = time.perf_counter() + seconds
    counts = [0] * connections
    nbytes = [0] * connections

    def worker(i: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < stop:
            c.request("GET", path)
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
# The harness: moto + proxy, one measured child process per run
# ---------------------------------------------------------------------------------------------


class Runner:
    """Runs one measurement in a fresh process against the proxy and records what the proxy saw."""

    def __init__(self, a: argparse.Namespace, moto_port: int, proxy_url: str, counter: Counter) -> None:
        self.a = a
        self.moto_port = moto_port
        self.moto_url = f"http://127.0.0.1:{moto_port}"
        self.counter = counter
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update(AWS_ENDPOINT_URL=proxy_url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                        AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1")
        self.plans = os.path.join(a.work, "s3-plans")

    def upload(self, root: str) -> None:
        t = time.perf_counter()
        n = upload(self.moto_url, root, self.a.upload_threads)
        print(json.dumps({"uploaded": root, "objects": n, "upload_s": round(time.perf_counter() - t, 2)}), flush=True)

    def moto_undelayed(self, **paths: str) -> dict:
        """moto's own rate (no delay) per kind of request: label -> path (an object key, or a query)."""
        r = {k: [moto_throughput(self.moto_port, f"/{BUCKET}{v}", c, 3.0) for c in (1, 8)] for k, v in paths.items()}
        print(json.dumps({"moto_undelayed": r}), flush=True)
        return r

    def run(self, name: str, cmd: list, round_: int | None = None, parse_json: bool = True,
            timeout: float | None = None) -> dict:
        """`cmd` with a fresh `CELLMAP_CACHE_DIR`, in its own process group (killed whole on a timeout or an
        interrupt: cellmap-data's DataLoader workers included). A timed-out run is recorded, not raised."""
        shutil.rmtree(self.plans, ignore_errors=True)
        env = dict(self.env, CELLMAP_CACHE_DIR=self.plans)
        self.counter.reset()
        t = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        timed_out = False
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            timed_out = True
        except BaseException:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            raise
        wall = time.perf_counter() - t
        net = self.counter.snapshot()
        with self.counter.lock:
            log = list(self.counter.log)
        os.makedirs(os.path.join(self.a.work, "s3-requests"), exist_ok=True)
        with open(os.path.join(self.a.work, "s3-requests", f"{name}-{round_}.log"), "w") as f:
            f.write("\n".join(log) + "\n")
        if timed_out:
            r = {"timed_out_after_s": timeout}
        elif p.returncode != 0:
            raise RuntimeError(f"{name} failed ({p.returncode}):\n{out[-3000:]}\n{err[-3000:]}")
        else:
            r = json.loads(out.strip().splitlines()[-1]) if parse_json else {}
        row = {"run": name, "round": round_, "wall_s": round(wall, 2), "proxy": net, "result": r}
        sps, first = r.get("samples_per_s"), first_batch(r)
        print(json.dumps({"run": name, "round": round_, "samples_per_s": sps and round(sps, 2),
                          "first_batch_s": first and round(first, 2), "plan_s": r.get("plan_seconds") and
                          round(r["plan_seconds"], 2), "wall_s": row["wall_s"], "requests": net["requests"],
                          "errors": net["errors"], **({"timed_out": True} if timed_out else {})}), flush=True)
        return row


@contextlib.contextmanager
def serve(a: argparse.Namespace):
    """moto with the bucket and the delaying proxy in front of it; both stopped on the way out, errors included."""
    counter = Counter()
    moto_port = free_port()
    moto = subprocess.Popen([a.moto, "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", moto_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto did not start within 60 s"
                time.sleep(0.1)
        assert put(f"http://127.0.0.1:{moto_port}/{BUCKET}") == 200
        proxy = make_proxy(moto_port, a.delay_ms / 1000.0, counter)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        yield Runner(a, moto_port, f"http://127.0.0.1:{proxy.server_address[1]}", counter)
    finally:
        if proxy is not None:
            proxy.shutdown()
            proxy.server_close()
        moto.kill()
        moto.wait()


# ---------------------------------------------------------------------------------------------
# Commands, data, summaries
# ---------------------------------------------------------------------------------------------


def bench(a: argparse.Namespace, spec_path: str, batches: int, warmup: int, *flags: str) -> list:
    return [a.bin, "bench", spec_path, "--batches", str(batches), "--warmup", str(warmup), "--quiet", *flags]


def cellmap_data(a: argparse.Namespace, data: str, shape: tuple, batches: int, warmup: int) -> list:
    """The cellmap-data child (s3_child): split, loader (num_workers 2), first batch, warm-up, measured batches."""
    return [a.python, os.path.abspath(__file__), "--child", "--data", data, "--classes", ",".join(FOUR),
            "--shape", ",".join(map(str, shape)), "--batch", "8", "--py-batches", str(batches),
            "--warmup", str(warmup), "--workers", "2"]


def s3_datasplit(root: str, dest: str) -> str:
    """`dest/datasplit.csv`: `root`'s, every `"v2/NAME.zarr"` container named `"s3://bench/v2/NAME.zarr"`
    (no data under `dest`: both loaders read the server). Returns `dest`."""
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    with open(os.path.join(root, "datasplit.csv")) as f:
        csv, n = re.subn(r'"(v2/[^"/]+\.zarr)"', rf'"s3://{BUCKET}/\1"', f.read())
    assert n, f"no v2/*.zarr containers in {root}/datasplit.csv"
    with open(os.path.join(dest, "datasplit.csv"), "w") as f:
        f.write(csv)
    return dest


def first_batch(r: dict) -> float | None:
    return r.get("first_batch_seconds", r.get("first_batch_s"))


FETCH = ["fetch_wait_seconds", "ahead_chunks", "max_in_flight", "store_requests_per_sample", "cache_hit_rate",
         "compressed_hit_rate", "compressed_bytes", "compressed_budget_bytes"]


def summarise(rows: list, names: list, refs: dict) -> dict:
    """Per run name: every round's samples/s, seconds to the first batch and to the plan, requests at the
    proxy, the fetch stats (ours) and the ratio of samples/s to each reference rate (`refs`: label -> rate;
    also written into each row as `vs_LABEL`)."""
    summary = {}
    for name in names:
        rs = [r for r in rows if r["run"] == name]
        if not rs:
            continue
        sps = [r["result"].get("samples_per_s") for r in rs]
        s = {"samples_per_s": [v and round(v, 3) for v in sps],
             "first_batch_s": [(v := first_batch(r["result"])) and round(v, 2) for r in rs],
             "plan_s": [(v := r["result"].get("plan_seconds")) and round(v, 2) for r in rs],
             "wall_s": [r["wall_s"] for r in rs],
             "requests": [r["proxy"]["requests"] for r in rs],
             "proxy_max_in_flight": [r["proxy"]["max_in_flight"] for r in rs]}
        if any("fetch" in r["result"] for r in rs):
            s["fetch"] = [{k: r["result"].get("fetch", {}).get(k) for k in FETCH} for r in rs]
        if any("timed_out_after_s" in r["result"] for r in rs):
            s["timed_out_after_s"] = [r["result"].get("timed_out_after_s") for r in rs]
        for label, ref in refs.items():
            if ref:
                s[f"vs_{label}"] = [v and round(v / ref, 3) for v in sps]
                for r, v in zip(rs, sps):
                    r[f"vs_{label}"] = v and v / ref
        summary[name] = s
    return summary


def one_time(rows: list, name: str) -> dict:
    """A run without bench output (`cellmap-compile cache`): its seconds and requests per round."""
    rs = [r for r in rows if r["run"] == name]
    return {"seconds": [r["wall_s"] for r in rs], "requests": [r["proxy"]["requests"] for r in rs]}


def median_rate(rows: list, name: str) -> float | None:
    v = [r["result"]["samples_per_s"] for r in rows if r["run"] == name and "samples_per_s" in r["result"]]
    return statistics.median(v) if v else None


def write(path: str, out: dict, summary: dict, t_start: float) -> None:
    out["total_s"] = round(time.perf_counter() - t_start, 1)
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps({"out": path, "summary": summary, "total_s": out["total_s"]}, indent=1), flush=True)


# ---------------------------------------------------------------------------------------------
# The regimes
# ---------------------------------------------------------------------------------------------


def cold(a: argparse.Namespace, h: Runner) -> None:
    """The `cold` regime on `DIR/one` (7 MB): writes `--out`."""
    t_start = time.perf_counter()
    one = os.path.join(a.work, "one")
    regimes.synth(a.bin, one)
    local_spec = regimes.spec(one, "cold", FOUR, SHAPE, 8, None)
    s3dir = s3_datasplit(one, os.path.join(a.work, "s3"))
    s3_spec = regimes.spec(s3dir, "cold", FOUR, SHAPE, 8, None)
    h.upload(one)
    moto_raw = h.moto_undelayed(chunk="/v2/synth.zarr/recon-1/em/fibsem-uint8/s0/1/1/1")["chunk"]
    tc = os.path.join(a.work, "s3-training-cache")
    rows: list[dict] = []
    for rnd in range(a.rounds):
        rows.append(h.run("local_cold", bench(a, local_spec, a.batches, 5, "--no-cache"), rnd))
        if rnd == 0 and not a.skip_python:
            rows.append(h.run("cellmap_data_s3", cellmap_data(a, s3dir, SHAPE, a.py_batches, 1), rnd))
        rows.append(h.run("ours_s3_no_cache", bench(a, s3_spec, a.s3_batches, 1, "--no-cache"), rnd))
        rows.append(h.run("ours_s3", bench(a, s3_spec, a.batches, 5), rnd))
        shutil.rmtree(tc, ignore_errors=True)
        rows.append(h.run("cache_write", [a.bin, "cache", s3_spec, "--out", tc, "--quiet"], rnd, parse_json=False))
        rows.append(h.run("ours_tc_no_cache", bench(a, s3_spec, a.batches, 5, "--no-cache", "--training-cache", tc),
                          rnd))
        rows.append(h.run("ours_tc", bench(a, s3_spec, a.batches, 5, "--training-cache", tc), rnd))
    local = median_rate(rows, "local_cold")
    summary = summarise(rows, ["local_cold", "cellmap_data_s3", "ours_s3_no_cache", "ours_s3", "ours_tc_no_cache",
                               "ours_tc"], {"cellmap_data": median_rate(rows, "cellmap_data_s3"), "local_cold": local})
    summary["cache_write"] = one_time(rows, "cache_write")
    write(a.out, {
        "regime": "128³ raw + 4 classes at 8 nm, batch 8, 2 workers / num_workers 2, no augmentation",
        "delay_ms": a.delay_ms, "cpus": os.cpu_count(), "moto_undelayed": moto_raw,
        "cellmap_data_s3_access": "CSV rows s3://bench/v2/synth.zarr via zarr 2.18 + s3fs (AWS_ENDPOINT_URL = proxy); "
                                  "os.path.exists wrapped to ask the server for s3:// class paths",
        "local_cold_median_samples_per_s": local, "summary": summary, "rows": rows,
    }, summary, t_start)


SCALE_SHAPE = (64, 64, 64)
SCALE_CACHE = 64 << 20  # the ws10x spec's cache_bytes; also the scale_s3_default compressed tier


def scale(a: argparse.Namespace, h: Runner) -> None:
    """The `scale` regime (bench/regimes.py's ws10x) on `DIR/many300` (300 crops, 224 MB): writes `--scale-out`."""
    t_start = time.perf_counter()
    many = os.path.join(a.work, "many300")
    regimes.synth(a.bin, many, "--volumes", "20", "--crops", "300", "--crop-size", "96", "--variants", "v2")
    local_spec = regimes.spec(many, "ws10x", FOUR, SCALE_SHAPE, 8, SCALE_CACHE)
    s3dir = s3_datasplit(many, os.path.join(a.work, "s3-scale"))
    s3_spec = regimes.spec(s3dir, "ws10x", FOUR, SCALE_SHAPE, 8, SCALE_CACHE)
    h.upload(many)
    # moto's own rate for what the plan sends (a group LIST of the 14,540-key bucket, a .zarray) and for a chunk.
    raw = "/v2/vol0.zarr/recon-1/em/fibsem-uint8"
    moto_raw = h.moto_undelayed(chunk=f"{raw}/s0/1/1/1", zarray=f"{raw}/s0/.zarray",
                                list=f"?delimiter=%2F&list-type=2&prefix={raw[1:].replace('/', '%2F')}%2F")
    n, w = a.scale_batches, a.scale_warmup
    tc = os.path.join(a.work, "s3-scale-training-cache")
    rows: list[dict] = []
    for rnd in range(a.rounds):
        rows.append(h.run("scale_local", bench(a, local_spec, n, w), rnd))
        rows.append(h.run("scale_local_no_cache", bench(a, local_spec, n, w, "--no-cache"), rnd))
        rows.append(h.run("scale_s3_default", bench(a, s3_spec, n, w, "--compressed-cache-bytes", str(SCALE_CACHE)),
                          rnd))
        rows.append(h.run("scale_s3_default_tier", bench(a, s3_spec, n, w), rnd))
        shutil.rmtree(tc, ignore_errors=True)
        rows.append(h.run("scale_cache_write", [a.bin, "cache", s3_spec, "--out", tc, "--quiet"], rnd,
                          parse_json=False))
        rows.append(h.run("scale_tc_no_cache", bench(a, s3_spec, a.scale_tc_batches, w, "--no-cache",
                                                     "--training-cache", tc), rnd))
        rows.append(h.run("scale_tc", bench(a, s3_spec, a.scale_tc_batches, w, "--training-cache", tc), rnd))
    if not a.skip_python:
        rows.append(h.run("scale_first_batch_cellmap_data", cellmap_data(a, s3dir, SCALE_SHAPE, a.scale_py_batches, 0),
                          0, timeout=a.py_timeout))
    ours = ["scale_local", "scale_local_no_cache", "scale_s3_default", "scale_s3_default_tier", "scale_tc_no_cache",
            "scale_tc"]
    summary = summarise(rows, ours + ["scale_first_batch_cellmap_data"],
                        {"scale_local": median_rate(rows, "scale_local"),
                         "scale_local_no_cache": median_rate(rows, "scale_local_no_cache")})
    summary["scale_cache_write"] = one_time(rows, "scale_cache_write")
    # Time to the first batch over S3, 300 crops: ours (generic binary; target ≤ 5 s) against cellmap-data
    # (target: ≥ 20× faster). A timed-out cellmap-data run gives a lower bound on its time and on the ratio.
    py = next((r for r in rows if r["run"] == "scale_first_batch_cellmap_data"), None)
    py_first = py and (first_batch(py["result"]) or py["result"].get("timed_out_after_s"))
    fb = {"cellmap_data_s": py_first, "cellmap_data_timed_out": bool(py and "timed_out_after_s" in py["result"]),
          "target": "generic ≤ 5 s, ≥ 20× faster than cellmap-data"}
    for name in ["scale_s3_default", "scale_s3_default_tier", "scale_tc_no_cache", "scale_tc"]:
        firsts = summary.get(name, {}).get("first_batch_s", [])
        fb[name] = {"first_batch_s": firsts, "cellmap_data_over_ours": [py_first and v and round(py_first / v, 1)
                                                                      for v in firsts]}
    summary["first_batch_over_s3"] = fb
    write(a.scale_out, {
        "regime": "ws10x: 300 crops (96³) over 20 volumes (zarr v2, blosc-zstd, 64³ chunks; 224 MB encoded, "
                  "14,540 objects), 64³ samples, 4 classes, batch 8, 2 workers / num_workers 2, cache_bytes 64 MiB",
        "delay_ms": a.delay_ms, "cpus": os.cpu_count(), "moto_undelayed": moto_raw,
        "notes": {
            "scale_s3_default": "default remote settings, compressed tier 64 MiB (--compressed-cache-bytes): the "
                                "224 MB encoded working set does not fit, chunks are fetched again",
            "scale_s3_default_tier": "default remote settings: the 512 MiB compressed tier holds the whole 224 MB "
                                     "encoded set, each chunk is fetched at most once per run",
            "scale_tc_no_cache / scale_tc": "the training cache (written by scale_cache_write through the proxy) "
                                            "read locally after the source metadata is checked through the proxy; "
                                            "without / with the spec's 64 MiB chunk cache",
            "scale_first_batch_cellmap_data": f"split + loader + first batch over S3, then {a.scale_py_batches} "
                                              f"measured batch(es); killed after {a.py_timeout} s",
        },
        "summary": summary, "rows": rows,
    }, summary, t_start)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=False)
    p.add_argument("--work", default="/tmp/cellmap-regimes")
    p.add_argument("--python", default=os.path.expanduser("~/.cache/cellmap-compile/cellmap-data-venv/bin/python"))
    p.add_argument("--moto", default=os.path.expanduser("~/.cache/cellmap-compile/moto-venv/bin/moto_server"))
    p.add_argument("--regime", choices=["cold", "scale", "both"], default="cold")
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--rounds", type=int, default=2, help="rounds of the ours-rows (alternating)")
    p.add_argument("--upload-threads", type=int, default=8, help="PUTs to moto at once")
    p.add_argument("--skip-python", action="store_true", help="leave out the cellmap-data run")
    g = p.add_argument_group("cold")
    g.add_argument("--py-batches", type=int, default=3, help="cellmap-data: measured batches (1 warm-up before)")
    g.add_argument("--s3-batches", type=int, default=3, help="ours --no-cache on S3: measured batches (1 warm-up)")
    g.add_argument("--batches", type=int, default=20, help="local / cached rows: measured batches (5 warm-up)")
    g.add_argument("--out", default=os.path.join(HERE, "s3.json"))
    g = p.add_argument_group("scale")
    g.add_argument("--scale-batches", type=int, default=40, help="local and S3 rows: measured batches")
    g.add_argument("--scale-warmup", type=int, default=5, help="every ours row: warm-up batches")
    g.add_argument("--scale-tc-batches", type=int, default=200, help="training-cache rows: measured batches")
    g.add_argument("--scale-py-batches", type=int, default=1, help="cellmap-data: measured batches after the first")
    g.add_argument("--py-timeout", type=float, default=900.0, help="cellmap-data run killed after this many seconds")
    g.add_argument("--scale-out", default=os.path.join(HERE, "s3-scale.json"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for k, d in [("data", ""), ("classes", ""), ("shape", ""), ("batch", 8), ("warmup", 1), ("workers", 2)]:
        p.add_argument(f"--{k}", type=type(d), default=d, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        a.batches = a.py_batches
        s3_child(a)
        return
    t_start = time.perf_counter()
    with serve(a) as h:
        if a.regime in ("cold", "both"):
            cold(a, h)
        if a.regime in ("scale", "both"):
            scale(a, h)
    print(json.dumps({"total_s": round(time.perf_counter() - t_start, 1)}), flush=True)


if __name__ == "__main__":
    main()

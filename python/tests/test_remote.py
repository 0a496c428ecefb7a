"""`s3://` data through `cellmap_compile.Loader`: the synthetic dataset uploaded to a real
S3-compatible server (moto, `moto_server` from `moto[server]`) on 127.0.0.1 with plain S3 REST
requests, read back through a datasplit CSV of `s3://` rows, batch for batch equal to the local
copy.

The server: `CELLMAP_MOTO_SERVER` (the `moto_server` executable; `.ci/run` creates
`~/.cache/cellmap-compile/moto-venv` and sets it), else that default path when it exists. Without
either the test fails under CI (`CI` set) and is skipped elsewhere.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import cellmap_compile as cc
from conftest import Synth, loader_dict

BUCKET = "cellmap-pytest"


def moto_server() -> str | None:
    path = os.environ.get("CELLMAP_MOTO_SERVER") or str(
        Path.home() / ".cache/cellmap-compile/moto-venv/bin/moto_server"
    )
    return path if os.path.isfile(path) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def put(url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> int:
    """An unsigned S3 PUT (moto accepts unsigned writes); the status. The explicit content type
    matters: urllib's default (a form) makes the server try to parse the bytes as form fields."""
    headers = {"Content-Type": "application/octet-stream", **(headers or {})}
    req = urllib.request.Request(url, data=body, method="PUT", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


@pytest.fixture
def moto() -> str:
    exe = moto_server()
    if exe is None:
        how = (
            "set CELLMAP_MOTO_SERVER to a moto_server executable "
            "(python3 -m venv ~/.cache/cellmap-compile/moto-venv && "
            "~/.cache/cellmap-compile/moto-venv/bin/pip install 'moto[server]'; .ci/run does this)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"the S3 test needs moto under CI: {how}")
        pytest.skip(how)
    port = free_port()
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto did not start within 60 s"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def test_an_s3_loader_equals_the_local_one(
    synth_copy: Synth, moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = synth_copy.root
    assert put(f"{moto}/{BUCKET}") == 200
    for f in sorted((root / "v2").rglob("*")):
        if f.is_file():
            key = f.relative_to(root).as_posix()
            assert put(f"{moto}/{BUCKET}/{key}", f.read_bytes(), {"x-amz-acl": "public-read"}) == 200

    remote = tmp_path / "remote"
    remote.mkdir()
    csv = synth_copy.csv.read_text()
    assert '"v2/synth.zarr"' in csv
    (remote / "datasplit.csv").write_text(csv.replace('"v2/synth.zarr"', f'"s3://{BUCKET}/v2/synth.zarr"'))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    monkeypatch.setenv("CELLMAP_REMOTE_TIMEOUT_S", "10")
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"]:
        monkeypatch.delenv(var, raising=False)

    monkeypatch.chdir(root)  # the local rows are relative
    local = cc.Loader(loader_dict(str(synth_copy.csv)))
    s3 = cc.Loader(loader_dict(str(remote / "datasplit.csv")))
    n = 0
    for a, b in zip(local, s3):
        assert set(a) == set(b)
        for name in a:
            x, y = a[name].detach().cpu().numpy(), b[name].detach().cpu().numpy()
            if x.dtype == np.float32:  # bit for bit, NaN included
                x, y = x.view(np.uint32), y.view(np.uint32)
            assert x.shape == y.shape and np.array_equal(x, y), name
        n += 1
        if n == 3:
            break
    assert n == 3

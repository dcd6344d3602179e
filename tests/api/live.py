"""`mloncall server` as a real subprocess on a free port, for tests that talk to it over sockets."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from mloncall.stores.context import Context
from tests.conftest import free_port
from tests.serving.conftest import server_env


@contextmanager
def live_server(ctx: Context, **env: str) -> Iterator[str]:
    """`mloncall server` over ctx's installation, yielded as its base URL once /healthz answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "mloncall", "server", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        cmd,
        env=server_env(ctx, **env),
        cwd=ctx.settings.home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

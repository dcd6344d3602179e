"""A real `mloncall server` in a subprocess with steady client traffic, as in production."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from mloncall.data import iris
from tests.conftest import free_port
from tests.helpers import run_cli


@dataclass
class Traffic:
    """Client traffic with feedback labels; remembers every failed request and which version answered."""

    base: str
    model: str = "iris-classifier"
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        rows = iris.iris_like_samples(500, seed=11)
        features = rows[iris.FEATURES].to_numpy(np.float64)
        truth = rows[iris.TARGET].tolist()
        with httpx.Client(base_url=self.base, timeout=10) as client:
            i = 0
            while not self._stop.is_set() and self.sent < 200_000:
                k = i % len(rows)
                body = {
                    "model": self.model,
                    "instances": [dict(zip(iris.FEATURES, features[k].tolist(), strict=True))],
                }
                try:
                    r = client.post("/predict", json=body)
                    if r.status_code != 200:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                    else:
                        doc = r.json()
                        self.versions.append(int(doc["version"]))
                        pid = doc["predictions"][0]["id"]
                        client.post(
                            f"/v2/models/{self.model}/feedback",
                            json={"labels": [{"id": pid, "label": truth[k]}]},
                        )
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.sent += 1
                i += 1
                time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass
class LiveServer:
    env: dict[str, str]
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mloncall", "server", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/v2/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}"
                )
            time.sleep(0.2)
        raise RuntimeError("server did not become ready in 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def ok(*args: str, env: dict[str, str]) -> str:
    res = run_cli(*args, env=env)
    assert res.returncode == 0, f"mloncall {' '.join(args)} -> {res.returncode}: {res.stderr}"
    return res.stdout


@pytest.fixture
def served(cli_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[LiveServer, Traffic]]:
    """iris-classifier v1 in production behind a live server, with traffic flowing."""
    ok("init", env=cli_env)
    ok("train", "iris-classifier", env=cli_env)
    ok("deploy", "iris-classifier:1", "--strategy", "direct", env=cli_env)
    server = LiveServer(cli_env, free_port()).start()
    traffic = Traffic(server.base).start()
    try:
        yield server, traffic
    finally:
        traffic.stop()
        server.stop()

"""A local server and simulated client traffic, for the demo and the end-to-end tests.

`LocalServer` runs `mloncall server` in a child process on a free localhost port. `Traffic` sends /predict
calls with feedback labels from Iris-like samples; `shift` moves features to inject drift. Every answer's
version and every failure are kept, so a caller can show the traffic mix and prove nothing was dropped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np


@dataclass
class Traffic:
    """A background client: one request at a time, `pause` seconds apart, each answered one fed back."""

    base: str
    model: str = "iris-classifier"
    pause: float = 0.004
    seed: int = 11
    feedback: bool = True
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    shift: dict[str, float] = field(default_factory=dict)
    max_requests: int = 1_000_000
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, name="mloncall-traffic", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        from mloncall.data import iris

        rows = iris.iris_like_samples(600, seed=self.seed)
        features = rows[iris.FEATURES].to_numpy(np.float64)
        truth = rows[iris.TARGET].tolist()
        with httpx.Client(base_url=self.base, timeout=10) as client:
            i = 0
            while not self._stop.is_set() and self.sent < self.max_requests:
                k = i % len(rows)
                values = features[k] + np.array([self.shift.get(f, 0.0) for f in iris.FEATURES])
                body: dict[str, Any] = {
                    "model": self.model,
                    "instances": [dict(zip(iris.FEATURES, values.round(3).tolist(), strict=True))],
                }
                try:
                    r = client.post("/predict", json=body)
                    if r.status_code != 200:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                    else:
                        doc = r.json()
                        self.versions.append(int(doc["version"]))
                        self.times.append(time.monotonic())
                        if self.feedback:
                            pid = doc["predictions"][0]["id"]
                            client.post(
                                f"/v2/models/{self.model}/feedback",
                                json={"labels": [{"id": pid, "label": truth[k]}]},
                            )
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.sent += 1
                i += 1
                time.sleep(self.pause)

    def mix(self, last: int = 200) -> dict[int, float]:
        """Share of the last `last` answers per version."""
        tail = self.versions[-last:]
        return {v: n / len(tail) for v, n in sorted(Counter(tail).items())} if tail else {}

    def last_time_of(self, version: int) -> float | None:
        """When a response from `version` last arrived (monotonic clock)."""
        for v, t in zip(reversed(self.versions), reversed(self.times), strict=False):
            if v == version:
                return t
        return None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalServer:
    """`mloncall server` as a child process, with the given environment."""

    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    port: int = field(default_factory=free_port)
    workers: int = 1
    proc: subprocess.Popen[bytes] | None = None
    #: Most workers `mloncall scale` may run it with (None: --workers, no supervisor for one).
    max_workers: int | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> LocalServer:
        """Start and wait until the inference routes answer ready."""
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mloncall",
                "server",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                *(["--max-workers", str(self.max_workers)] if self.max_workers else []),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/v2/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"mloncall server exited with {self.proc.returncode}: {err[-2000:]}")
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mloncall server did not become ready within {timeout:.0f} s")

    def stop(self) -> None:
        """SIGTERM (the server flushes its logs), then SIGKILL if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

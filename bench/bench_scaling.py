"""Scale under load: changing the worker count under 1,000 requests/s loses no request.

One `mloncall server --workers 1 --max-workers 4` serving iris-classifier (trained, registered and deployed
with the CLI under a temporary MLONCALL_HOME). Two runs of the paced open-loop client of `mloncall loadtest`
(`mloncall.scaling.loadgen`, 20 keep-alive connections, latency from each request's due time) at 1,000 req/s
for 20 s, side by side:
  anchor  the load on an unchanged server (1 worker throughout);
  ours    the same load while `mloncall scale` moves the workers 1 -> 4 at 4 s and 4 -> 1 at 12 s.
Figures: requests sent, failed (non-2xx, connection errors, timeouts: the target is 0), resent on a keep-alive
connection a retired worker closed before answering, p50/p99 and the ratio of the two runs' p99.
The machine has 2 cores shared with others: the load average is printed at the start and the end.
Run: .venv/bin/python bench/bench_scaling.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from mloncall.demo.traffic import LocalServer
from mloncall.scaling import loadtest
from mloncall.scaling.loadgen import PacedLoad, raw_request

MODEL = "iris-classifier"
RATE = 1000.0
SECONDS = 20.0
CHANGES = ((4.0, 4), (12.0, 1))


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} cores)"


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mloncall", *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"mloncall {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return done.stdout


def one_run(server: LocalServer, env: dict[str, str], *, scale: bool) -> tuple[PacedLoad, list[str]]:
    target = loadtest.target_of(f"{server.base}/v2/models/{MODEL}/infer", model=None, body=None)
    due = loadtest.schedule(loadtest.make_shape("constant", rate=RATE, duration_s=SECONDS))
    load = PacedLoad(target.host, target.port, raw_request(target.host, target.port, target.path, target.body), due,
                     connections=20, timeout_s=10.0)  # fmt: skip
    runner = threading.Thread(target=lambda: loadtest.run_loop(load.run()))
    began = time.monotonic()
    runner.start()
    notes = []
    if scale:
        for at, workers in CHANGES:
            time.sleep(max(0.0, at - (time.monotonic() - began)))
            out = cli(env, "scale", MODEL, "--workers", str(workers))
            notes.append(f"at {time.monotonic() - began:4.1f}s: {out.strip()}")
    runner.join()
    return load, notes


def line(name: str, load: PacedLoad) -> tuple[str, float]:
    ok = np.array([s.latency_ms for s in load.samples if not s.error])
    failed = sum(1 for s in load.samples if s.error)
    p50, p99 = (float(np.percentile(ok, q)) for q in (50, 99)) if ok.size else (float("nan"),) * 2
    text = (f"  {name:7s} sent {len(load.samples):6d}  failed {failed}  resent {load.resent}  "
            f"p50 {p50:6.2f} ms  p99 {p99:7.2f} ms  ({len(ok) / load.elapsed_s:,.0f} answered/s)")  # fmt: skip
    return text, p99


def main() -> None:
    print(f"load average at start: {loadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLONCALL_")}
        env["MLONCALL_HOME"] = str(Path(tmp) / "home")
        cli(env, "init")
        cli(env, "train", MODEL)
        cli(env, "deploy", f"{MODEL}:1", "--strategy", "direct")
        server = LocalServer(env, workers=1, max_workers=4).start(timeout=180)
        try:
            anchor, _ = one_run(server, env, scale=False)
            ours, notes = one_run(server, env, scale=True)
        finally:
            server.stop()
    print(f"scale under load: {RATE:,.0f} req/s for {SECONDS:.0f} s, 20 connections, latency from due time")
    anchor_line, anchor_p99 = line("anchor", anchor)
    ours_line, ours_p99 = line("ours", ours)
    print(anchor_line + "   (1 worker throughout)")
    print(ours_line + "   (1 -> 4 -> 1 workers)")
    for n in notes:
        print(f"    {n}")
    lost = sum(1 for s in ours.samples if s.error)
    print(
        f"  p99 ratio ours/anchor {ours_p99 / anchor_p99:.2f}; target: 0 requests lost -> {'met' if lost == 0 else 'MISSED'}"
    )
    print(f"load average at end: {loadavg()}")


if __name__ == "__main__":
    main()

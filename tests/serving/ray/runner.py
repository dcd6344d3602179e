"""Runs inside the network and process namespace `tests/serving/test_ray.py` creates: a real local Ray
cluster, `mloncall server --backend ray` on it, and a client, with only loopback to talk over.

It drives the CLI the way a user does and writes what it saw as JSON (argv[1]); the test asserts on it.
Ray listens on every interface and rewrites localhost to the machine's address: in here the only
interface is loopback, so nothing can reach out or in. Processes left over die with the namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[3]
GCS = "127.0.0.1:6379"
SERVE = "http://127.0.0.1:8000"
CONTROL = "http://127.0.0.1:8100"
MODEL = "iris-classifier"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mloncall", *args], env=env, capture_output=True, text=True, timeout=180
    )


def setup_installation(env: dict[str, str]) -> None:
    """v1 in production and v2 as a 50% canary, through the CLI in this process (one start-up, not five)."""
    from typer.testing import CliRunner

    from mloncall.cli.main import app

    os.environ.update(env)
    for args in (
        ("init",),
        ("train", MODEL),
        ("deploy", f"{MODEL}:1", "--strategy", "direct"),
        ("train", MODEL, "--seed", "3"),
        ("deploy", f"{MODEL}:2", "--steps", "50,100", "--step-duration", "10m"),
    ):
        res = CliRunner().invoke(app, list(args))
        if res.exit_code != 0:
            raise RuntimeError(f"mloncall {' '.join(args)} -> {res.exit_code}: {res.output}")


def start_cluster(env: dict[str, str], temp: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ray")), "start", "--head", "--port", GCS.split(":")[1],
            "--node-ip-address", "127.0.0.1", "--num-cpus", "4", "--include-dashboard", "false",
            "--disable-usage-stats", "--temp-dir", temp,
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


READY = (f"{SERVE}/v2/health/ready", f"{CONTROL}/healthz")


def wait_ready(proc: subprocess.Popen[bytes], timeout: float = 150) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            # Serve's proxy answers before the server has started its own control plane beside it
            if all(httpx.get(url, timeout=2).status_code == 200 for url in READY):
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the Ray deployment did not become ready")


#: Every prediction answered, by version: what the prediction log must hold afterwards.
SERVED: Counter[str] = Counter()


def predict_versions(client: httpx.Client, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        r = client.post("/predict", json={"model": MODEL, "instances": [ROW]})
        seen[str(r.json()["version"]) if r.status_code == 200 else f"http {r.status_code}"] += 1
    SERVED.update(seen)
    return seen


def scenario(env: dict[str, str], work: Path, out: dict[str, Any]) -> None:
    log = (work / "server.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mloncall", "server", "--backend", "ray", "--ray-address", GCS,
            "--port", "8100", "--ray-http-port", "8000", "--target-p99", "50ms", "--replica-capacity", "400",
            "--max-replicas", "2",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        out["ready_s"] = wait_ready(server)
        with httpx.Client(base_url=SERVE, timeout=10) as c:
            meta = c.get(f"/v2/models/{MODEL}").json()
            out["routing_before"] = meta.get("routing")
            out["canary_versions"] = dict(predict_versions(c, 60))
            inputs = [
                {"name": name, "shape": [1], "datatype": "FP64", "data": [value]}
                for name, value in ROW.items()
            ]
            r = c.post(f"/v2/models/{MODEL}/infer", json={"inputs": inputs})
            out["oip"] = {"status": r.status_code, "body": r.json()}
            SERVED[r.json().get("model_version", "?")] += 1
            r = c.post("/predict", json={"model": MODEL, "instances": [{**ROW, "petal_width": "wide"}]})
            out["bad_input"] = {"status": r.status_code, "body": r.json()}
            out["control_plane"] = httpx.get(f"{CONTROL}/healthz", timeout=5).status_code
            abort = cli(env, "rollout", "abort", MODEL, "--reason", "canary abort on ray")
            out["abort"] = {"rc": abort.returncode, "stdout": abort.stdout, "stderr": abort.stderr}
            t0, stable_run = time.monotonic(), 0
            while stable_run < 30 and time.monotonic() - t0 < 30:
                seen = predict_versions(c, 1)
                stable_run = stable_run + 1 if seen.get("1") else 0
            out["abort_applied_s"] = time.monotonic() - t0
            out["after_abort_versions"] = dict(predict_versions(c, 40))
            out["routing_after"] = c.get(f"/v2/models/{MODEL}").json().get("routing")
    finally:
        out["served_versions"] = dict(SERVED)
        t0 = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            out["server_rc"] = server.wait(timeout=60)
            out["stop_s"] = time.monotonic() - t0
        except subprocess.TimeoutExpired:
            server.kill()
            out["server_rc"] = "killed"
        log.close()
        out["server_log"] = (work / "server.log").read_text(errors="replace")[-4000:]
    # With the app deleted, Serve's proxy has no route left: it answers 404 to every path.
    out["after_stop_status"] = httpx.get(f"{SERVE}/v2/health/ready", timeout=5).status_code
    out["logged_versions"] = logged_versions()


def logged_versions() -> dict[str, dict[str, int]]:
    """Rows of the prediction log the replicas wrote (the log the monitors read): answered predictions by
    version, and failed requests by status."""
    from mloncall.stores.context import Context
    from mloncall.stores.predlog import read_log

    ctx = Context.from_settings()
    try:
        table = read_log(ctx.store, "predictions", MODEL)
    finally:
        ctx.close()
    if table is None:
        return {"answered": {}, "failed": {}}
    rows = list(zip(table.column("version").to_pylist(), table.column("status").to_pylist(), strict=True))
    return {
        "answered": dict(Counter(str(v) for v, status in rows if status == 200)),
        "failed": dict(Counter(str(status) for _, status in rows if status != 200)),
    }


def main() -> None:
    target = Path(sys.argv[1])
    work = target.parent
    temp = sys.argv[2]  # short (Ray's socket paths must be), made and removed by the test outside
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLONCALL_", "RAY_"))}
    env.update(
        HOME=str(work / "home"),  # no ~/.ray/auth_token from the machine switches the cluster to token mode
        RAY_TMPDIR=temp,
        MLONCALL_HOME=str(work / "mloncall"),
        PYTHONPATH=str(ROOT / "src"),
        RAY_USAGE_STATS_ENABLED="0",
    )
    (work / "home").mkdir(exist_ok=True)
    os.chdir(work)
    out: dict[str, Any] = {}
    t0 = time.monotonic()
    head = start_cluster(env, temp)  # about 16 s: the installation is set up meanwhile
    try:
        setup_installation(env)
        out["setup_s"] = time.monotonic() - t0
        _, err = head.communicate(timeout=120)
        if head.returncode != 0:
            raise RuntimeError(f"ray start failed: {err.decode(errors='replace')[-2000:]}")
        out["ray_start_s"] = time.monotonic() - t0
        scenario(env, work, out)
    except Exception as exc:
        where = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == __file__][-1]
        out["error"] = f"{type(exc).__name__}: {exc} (runner.py line {where.lineno}: {where.line})"
    finally:
        # The cluster is stopped with the namespace: when this process (its pid 1) exits, the kernel ends
        # every process left in it.
        target.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()

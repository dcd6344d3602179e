"""Ray backend throughput: `mloncall server --backend ray` (validation, metrics and prediction logging on)
against a minimal Ray Serve deployment of the same ONNX model, on the same local Ray cluster, in one run.

Ours: the inference app as the Serve application `mloncall` (one replica), POST /v2/models/iris/infer with a
1-row OIP body, the model trained, registered and deployed with the CLI (`init`, `train`, `deploy --strategy
direct`). Anchor: a Serve deployment (one replica, the same CPUs) that reads the same model version's ONNX
bytes into an onnxruntime session and answers the same body with orjson: parse, run, dump, nothing else
(route /minimal, the same proxy). Each is warmed for 5 s, then `wrk -t 2 -c 10 -d 10s`; the two alternate,
ROUNDS times, and the ratio is of the means. Target: at least 0.9x.

Ray listens on every interface whatever it is told, so the whole benchmark re-runs itself inside a network
and pid namespace (`unshare -n -p -f -m --mount-proc`, with -r when not root) where only loopback exists;
the cluster ends with it. The machine has 2 cores that the load generator, the proxy and both replicas
share, and other work may be using them: the load average is printed at the start and the end.
Run: .venv/bin/python bench/bench_ray.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")
MODEL = "iris"
GCS = "127.0.0.1:6379"
PROXY = 8000
CONTROL = 8100
ROUNDS = 3
WARMUP_S = 5
DURATION_S = 10
CONNECTIONS = 10
ROW = [5.1, 3.5, 1.4, 0.2]
BODY = orjson.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ROW}]})
INSIDE = "MLONCALL_BENCH_RAY_INSIDE"


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def post(path: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{PROXY}{path}", data=BODY, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        return 0, str(exc).encode()


def wrk(path: str, seconds: int, tmp: Path) -> tuple[float, int, str]:
    """req/s, requests and any errors from `wrk -t 2 -c 10` POSTing the body."""
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{BODY.decode()}]==]\n"
    )
    argv = ["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", f"{seconds}s", "-s", str(script)]
    out = subprocess.run([*argv, f"http://127.0.0.1:{PROXY}{path}"], capture_output=True, text=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rps is None or total is None:
        sys.exit(f"cannot read wrk's report:\n{out}")
    problems = [m.group(0) for m in re.finditer(r"(Non-2xx or 3xx responses|Socket errors):.*", out)]
    return float(rps.group(1)), int(total.group(1)), "; ".join(problems)


class Minimal:
    """The anchor: the ONNX model behind Serve, parse-run-dump and nothing else."""

    def __init__(self, onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    async def __call__(self, request: Any) -> Any:
        import numpy as np
        from starlette.responses import Response

        doc = orjson.loads(await request.body())
        tensor = doc["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        label, probabilities = self.session.run(None, {self.input: x})[:2]
        outputs = [
            {"name": "label", "datatype": "BYTES", "shape": [len(label)], "data": [str(v) for v in label]},
            {"name": "probabilities", "datatype": "FP32", "shape": list(probabilities.shape),
             "data": probabilities.ravel().tolist()},
        ]  # fmt: skip
        return Response(
            orjson.dumps({"model_name": "minimal", "outputs": outputs}), media_type="application/json"
        )


def setup(env: dict[str, str]) -> bytes:
    """iris v1 in production through the CLI (in this process); its ONNX bytes for the anchor."""
    from typer.testing import CliRunner

    from mloncall.cli.main import app
    from mloncall.registry import service as registry
    from mloncall.stores.context import Context

    os.environ.update(env)
    for args in (("init",), ("train", MODEL), ("deploy", f"{MODEL}:1", "--strategy", "direct")):
        res = CliRunner().invoke(app, list(args))
        if res.exit_code != 0:
            sys.exit(f"mloncall {' '.join(args)} failed: {res.output}")
    ctx = Context.from_settings()
    try:
        with ctx.db.session() as session:
            mv = registry.get_version_or_raise(session=session, name=MODEL, version=1)
            return registry.read_file(store=ctx.store, model_version=mv, name=registry.ONNX_FILE)
    finally:
        ctx.close()


def wait_for(path: str, proc: subprocess.Popen[bytes] | None, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"the server exited with {proc.returncode}")
        if post(path)[0] == 200:
            return
        time.sleep(0.5)
    sys.exit(f"{path} did not answer 200 within {timeout:g} s")


def logged_rows() -> int:
    from mloncall.stores.context import Context
    from mloncall.stores.predlog import PREDICTIONS, read_log

    ctx = Context.from_settings()
    try:
        table = read_log(ctx.store, PREDICTIONS, MODEL)
    finally:
        ctx.close()
    return 0 if table is None else table.num_rows


def inside(tmp: Path) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLONCALL_", "RAY_"))}
    env.update(
        HOME=str(tmp / "home"),  # no ~/.ray/auth_token of the machine's user switches the cluster to tokens
        RAY_TMPDIR=str(tmp),
        RAY_USAGE_STATS_ENABLED="0",
        MLONCALL_HOME=str(tmp / "mloncall"),
        PYTHONPATH=str(ROOT / "src"),
    )
    (tmp / "home").mkdir()
    os.chdir(tmp)
    print(f"load average at start: {loadavg()}", flush=True)
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--port", GCS.split(":")[1], "--node-ip-address", "127.0.0.1",
         "--num-cpus", "4", "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(tmp)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    onnx_bytes = setup(env)
    if head.wait(timeout=180) != 0:
        sys.exit(f"ray start failed: {head.stderr.read().decode() if head.stderr else ''}")
    log = (tmp / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "mloncall", "server", "--backend", "ray", "--ray-address", GCS,
         "--port", str(CONTROL), "--ray-http-port", str(PROXY), "--min-replicas", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    ours_path = f"/v2/models/{MODEL}/infer"
    wait_for(ours_path, server)

    import logging

    import ray
    from ray import serve

    ray.init(address=GCS, logging_level=logging.WARNING, log_to_driver=False)
    anchor = serve.deployment(name="minimal", num_replicas=1, ray_actor_options={"num_cpus": 1})(Minimal)
    serve.run(anchor.bind(onnx_bytes), name="minimal", route_prefix="/minimal")
    wait_for("/minimal", None)
    ours_answer, anchor_answer = orjson.loads(post(ours_path)[1]), orjson.loads(post("/minimal")[1])
    assert ours_answer["outputs"][0]["data"] == anchor_answer["outputs"][0]["data"], (
        ours_answer,
        anchor_answer,
    )

    figures: dict[str, list[float]] = {"ours": [], "minimal": []}
    requests = 0
    for name, path in (("ours", ours_path), ("minimal", "/minimal")):
        warm = wrk(path, WARMUP_S, tmp)
        requests += warm[1] if name == "ours" else 0
    for _ in range(ROUNDS):
        for name, path in (("ours", ours_path), ("minimal", "/minimal")):
            rps, total, problems = wrk(path, DURATION_S, tmp)
            requests += total if name == "ours" else 0
            figures[name].append(rps)
            print(f"  {name:8} {rps:8.0f} req/s  {total:7d} requests  {problems or 'no errors'}", flush=True)
    serve.delete("minimal")
    ray.shutdown()
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=120)
    log.close()
    logged = logged_rows()
    ours = sum(figures["ours"]) / len(figures["ours"])
    minimal = sum(figures["minimal"]) / len(figures["minimal"])
    ratio = ours / minimal
    print(
        json.dumps(
            {
                "ours_rps": round(ours),
                "minimal_rps": round(minimal),
                "ratio": round(ratio, 3),
                "target": 0.9,
                "ours_requests": requests,
                "ours_logged_rows": logged,
                "load_average_end": loadavg(),
            }
        )
    )
    print(
        f"Ray backend: {ours:.0f} req/s with validation and logging vs {minimal:.0f} minimal: {ratio:.2f}x (target >= 0.9x)"
    )
    print(f"load average at end: {loadavg()}")
    return 0


def main() -> int:
    if os.environ.get(INSIDE) == "1":
        return inside(Path(sys.argv[1]))
    from bench_serving import ensure_wrk  # the same Debian package bench_serving installs when missing

    ensure_wrk()
    tmp = Path(tempfile.mkdtemp(prefix="mlrb", dir="/tmp"))  # short: Ray's socket paths must stay short
    script = f'ip link set lo up && exec "{sys.executable}" "{Path(__file__).resolve()}" "{tmp}"'
    try:
        for unshare in (
            ["unshare", "-n", "-p", "-f", "-m", "--mount-proc"],
            ["unshare", "-r", "-n", "-p", "-f", "-m", "--mount-proc"],
        ):
            if subprocess.run([*unshare, "true"], capture_output=True).returncode == 0:
                return subprocess.run(
                    [*unshare, "sh", "-c", script], env={**os.environ, INSIDE: "1"}
                ).returncode
        sys.exit("cannot create a network namespace here (unshare -n, or -rn with user namespaces)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

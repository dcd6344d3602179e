"""Serving figures, side by side in one run: the machine's HTTP floor, mloncall's inference server and
`mlflow models serve` on the same Iris model; latency at half of mloncall's peak; how fast a canary abort
moves all traffic back to stable.

1. Throughput, 1-row requests over 10 connections, 2 workers each, every server started at once on its own
   free localhost port and measured in turn (`--runs N` times over), each warmed for 3 s, then
   `wrk -t 2 -c 10 -d 10s --latency` (req/s and p99 from its output). Beside req/s, the CPU each server's
   processes spent per answered request (utime + stime from /proc over the measured run): on a machine
   shared with other work that figure moves less than req/s, which also counts the cores others took.
   The floor: a minimal ASGI app (reads the body, answers a constant JSON) on uvicorn with mloncall's own
   settings (2 workers, uvloop, httptools, no access log, the same keep-alive timeout).
   The model floor: that app plus what any Python server running this model pays per 1-row OIP request
   (JSON decode, the float32 row, the ONNX Runtime call mloncall's predictor makes, the OIP answer encoded),
   over the deployed v1's verified ONNX bytes; nothing else. Between it and mloncall lies mloncall's own
   per-request work (validation, routing, the prediction log, metrics, limits).
   Ours: `mloncall server --workers 2` with validation, metrics and prediction logging on (the defaults),
   POST /v2/models/iris/infer with a 1-row OIP body, and POST /predict with one instance; the model is
   trained, registered and deployed with the CLI (`init`, `train`, `deploy --strategy direct`).
   Anchor: MLflow 3 `mlflow models serve -m DIR --env-manager local --workers 2` in its own environment,
   bench/.envs/mlflow (`python3 -m venv` + pip: mlflow 3, scikit-learn, uvloop, httptools, pyarrow<26;
   reused when present), POST /invocations with an `inputs` body (columnar: {feature: [value]}), the
   fastest of its documented request formats (`dataframe_split` was 4.5x slower on this machine), uvloop
   and httptools picked up, its access log off through UVICORN_ACCESS_LOG. Same model: the scikit-learn
   pipeline mloncall trains (StandardScaler + LogisticRegression(max_iter=1000), seed 42) on the same
   stratified 70% of sklearn's Iris.
   The workers share one listening socket and the kernel hands each connection to whichever accepts first,
   so the split of connections per worker (from `ss`) is printed with each figure: it moves them.
   `--profile` records one mloncall worker with py-spy during the measured OIP run and prints its top frames.
2. Latency at half of that peak, against the same mloncall server, measured in each round after mloncall's
   throughput and before the floor's and MLflow's (once the other servers are quiet). wrk2 is not in Debian, and wrk's Lua
   `delay()` waits whole milliseconds after each answer, so its rate drifts with the latency and a stall
   hides the requests it held up. Instead mloncall's open-loop paced client (`mloncall.scaling.loadgen`:
   asyncio on uvloop, raw HTTP/1.1 keep-alive, one prebuilt request, about 70 us of client CPU per request)
   over 20 connections (see PACED_CONNECTIONS), as many on each worker: each connection sends on a fixed
   schedule; a request that falls due while its connection still waits for the previous answer is timed
   from when it was due, so a stall counts for every request it delayed (no coordinated omission), the
   others from when sent. The p50/p99 counted from the write, as wrk does, are printed beside them.
3. Canary abort: v2 as a 50% canary of v1 (`deploy iris:2 --steps 50,100 --step-duration 10m`), the same
   client at 1,000 req/s recording each answer's time and `model_version`, then `mloncall rollout abort
   iris`; figure = last v2 answer minus the moment the abort command returned, and failed requests (non-200
   or a connection error). Three times; the worst is the figure.

Everything runs under a temporary MLONCALL_HOME. The machine has 2 cores that load generator and servers
share, and others may be using them: the load average is printed at the start and the end, and the ratios
measured side by side are the figures that count.
Run: .venv/bin/python bench/bench_serving.py [--runs 3] [--profile]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import uvloop

from mloncall.core.config import Settings
from mloncall.scaling.loadgen import Connection, PacedLoad, Sample, raw_request
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.predlog import PREDICTIONS, read_log

ROOT = Path(__file__).resolve().parent
HOST = "127.0.0.1"
MLFLOW_ENV = ROOT / ".envs" / "mlflow"
MLFLOW_READY = MLFLOW_ENV / ".bench-installed"
MLFLOW_PACKAGES = ("mlflow>=3,<4", "scikit-learn", "uvloop", "httptools", "pyarrow<26")
MLONCALL = Path(sys.executable).parent / "mloncall"
MODEL = "iris"
WORKERS = 2
CONNECTIONS = 10
WARMUP_S = 3
DURATION_S = 10
CANARY_RATE = 1000.0
CANARY_REPEATS = 3
CONNECT_GAP_S = 0.005
#: At ~6,000 req/s, 10 connections would leave each one 1.7 ms per request, about its round trip on this
#: shared 2-core machine: the client's own pace would queue requests. 20 leave twice that.
PACED_CONNECTIONS = 20
AFTER_ABORT_S = 3.0
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = [5.1, 3.5, 1.4, 0.2]
OIP_BODY = orjson.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ROW}]})
PREDICT_BODY = orjson.dumps({"instances": [dict(zip(FEATURES, ROW, strict=True))]})
MLFLOW_BODY = orjson.dumps({"inputs": {f: [v] for f, v in zip(FEATURES, ROW, strict=True)}})
FLOOR_APP = r"""
BODY = b'{"ok":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def lifespan(receive, send):
    while True:
        message = await receive()
        kind = message["type"].replace("lifespan.", "")
        await send({"type": f"lifespan.{kind}.complete"})
        if kind == "shutdown":
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
"""

#: The model floor: the floor's app plus what any Python server that runs this model must do for a 1-row OIP
#: request, and nothing else: decode the JSON body, build the float32 row, run the ONNX Runtime session
#: through the same binding mloncall's predictor calls, and encode the OIP answer (labels as class names and
#: probabilities). No validation, routing, logging or metrics: what is left between it and mloncall is
#: mloncall's own per-request work.
MODEL_FLOOR_APP = r"""
import os
import numpy as np
import onnxruntime as ort
import orjson
from floor_app import lifespan  # the floor's module, beside this one

opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
SESSION = ort.InferenceSession(os.environ["BENCH_ONNX"], opts, providers=["CPUExecutionProvider"])
RUN = SESSION._sess.run
CLASSES = os.environ["BENCH_CLASSES"].split(",")
OUTPUTS = ["label", "probabilities"]
JSON = b"application/json"
# as mloncall's predictor: string classes come out as strings, integer ones as positions
BY_INDEX = {o.name: o.type for o in SESSION.get_outputs()}["label"] != "tensor(string)"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    if not body:  # the readiness probe's GET
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    tensor = orjson.loads(body)["inputs"][0]
    x = np.array(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    labels, probs = RUN(OUTPUTS, {"input": x}, None)
    names = [CLASSES[int(i)] for i in labels] if BY_INDEX else labels.tolist()
    body = orjson.dumps(
        {
            "model_name": "iris",
            "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [len(names)], "data": names},
                {"name": "probabilities", "datatype": "FP32", "shape": list(probs.shape),
                 "data": probs.ravel().tolist()},
            ],
        }
    )
    headers = [(b"content-type", JSON), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""

MLFLOW_TRAIN = r"""
import json, sys
from importlib import metadata
import numpy as np, pandas as pd
import mlflow.sklearn
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

bunch = load_iris()
X = pd.DataFrame(np.asarray(bunch.data, dtype=np.float64), columns=json.loads(sys.argv[2]))
y = np.asarray(bunch.target_names)[bunch.target].astype(str)
X_train, X_hold, y_train, y_hold = train_test_split(X, y, test_size=0.3, random_state=42, stratify=y)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=42))
model.fit(X_train, y_train)
mlflow.sklearn.save_model(model, sys.argv[1], signature=infer_signature(X_train, model.predict(X_train)))
libs = {p: metadata.version(p) for p in ("mlflow", "scikit-learn", "pandas", "uvicorn", "uvloop", "httptools")}
print(json.dumps({"accuracy": float(model.score(X_hold, y_hold)), **libs}))
"""


# --- plumbing ----------------------------------------------------------------------------------------------


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} cores)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def mloncall_env(home: Path) -> dict[str, str]:
    """This machine's environment with every MLONCALL_ setting dropped but the temporary home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLONCALL_")}
    env["MLONCALL_HOME"] = str(home)
    return env


def cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    """Run `mloncall ARGS...`; its stdout, or exit with its stderr."""
    done = subprocess.run(
        [str(MLONCALL), *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"mloncall {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return done.stdout


def ensure_wrk() -> str:
    """wrk's path, installing the Debian package when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk with apt-get ...", flush=True)
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        subprocess.run(install, env=env, capture_output=True, check=True)
    return shutil.which("wrk") or sys.exit("wrk is not installed and apt-get could not install it")


def post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Server:
    """A server process group we started, its port and its log."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, path: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url(path), timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-1500:]
        self.stop()
        sys.exit(f"{self.name} did not become ready on {path} within {timeout_s:.0f}s:\n{tail}")

    def stop(self) -> str:
        """SIGTERM to the group and wait; SIGKILL only if it hangs. Says how it ended."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return "did not stop within 30 s of SIGTERM: killed"
        return f"stopped on SIGTERM (exit {code})"


@contextlib.contextmanager
def serving(name: str, argv: list[str], env: dict[str, str], cwd: Path, port: int) -> Iterator[Server]:
    log = cwd / f"{name.split()[0].lower()}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, proc, port, log)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            print(f"  {name}: {server.stop()}")


# --- wrk -----------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: str
    #: Connections per server process, as the kernel handed them out.
    split: str
    warmup_requests: int = 0
    #: CPU seconds the server's processes spent per answered request, in microseconds.
    cpu_us: float = float("nan")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(output: str, label: str) -> float:
    m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def server_sockets(port: int) -> dict[int, int] | None:
    """The server process holding each accepted connection to `port`, by the client's port (None: no `ss`)."""
    with contextlib.suppress(OSError):
        found = subprocess.run(
            ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode == 0:
            pattern = r":(\d+)\s+users:\(\(\"[^\"]*\",pid=(\d+)"
            return {int(m.group(1)): int(m.group(2)) for m in re.finditer(pattern, found.stdout)}
    return None


def connection_split(port: int) -> str:
    """How the established connections to `port` are spread over the server's processes, e.g. "6+4".

    The workers share one listening socket and whichever is awake accepts: a burst of connections can all land
    on one worker, and with few keep-alive connections that decides how many workers do the work.
    """
    held = server_sockets(port)
    if held is None:
        return "unknown"
    counts = Counter(held.values())
    return "+".join(str(n) for n in sorted(counts.values(), reverse=True)) or "none"


def wrk(binary: str, port: int, path: str, body: bytes, seconds: int, tmp: Path) -> WrkResult:
    """`wrk -t 2 -c 10 --latency` POSTing `body`; req/s, p50/p99 and any errors from its report."""
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body.decode()}]==]\n"
    )
    argv = [binary, "-t", "2", "-c", str(CONNECTIONS), "-d", f"{seconds}s", "--latency", "-s", str(script)]
    url = f"http://127.0.0.1:{port}{path}"
    with subprocess.Popen([*argv, url], stdout=subprocess.PIPE, text=True) as proc:
        time.sleep(min(1.0, seconds / 2))
        split = connection_split(port)
        out, _ = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"wrk failed ({proc.returncode}):\n{out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    problems = [m.group(0) for m in re.finditer(r"(Non-2xx or 3xx responses|Socket errors):.*", out)]
    if rps is None or total is None:
        sys.exit(f"cannot read wrk's report:\n{out}")
    return WrkResult(
        float(rps.group(1)),
        int(total.group(1)),
        _ms(out, "50%"),
        _ms(out, "99%"),
        "; ".join(problems),
        split,
    )


def group_cpu_s(pgid: int) -> float:
    """utime + stime of every live process in a process group, in seconds."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # pgrp is the 5th field, the 3rd after the command
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def settle(servers: list[Server], quiet: float = 0.05, most_s: float = 30.0) -> float:
    """Wait until the servers measured before use less than `quiet` of a core together, so the paced client
    and the server it measures do not share the cores with them. Returns the seconds waited."""
    start = time.monotonic()
    groups = [s.proc.pid for s in servers]
    while time.monotonic() - start < most_s:
        before = sum(group_cpu_s(g) for g in groups)
        time.sleep(0.5)
        if sum(group_cpu_s(g) for g in groups) - before < quiet * 0.5:
            break
    return time.monotonic() - start


def measure(
    binary: str, server: Server, path: str, body: bytes, tmp: Path, profile: bool = False
) -> WrkResult:
    warmup = wrk(binary, server.port, path, body, WARMUP_S, tmp)
    spy = start_profile(server, tmp) if profile else None
    before = group_cpu_s(server.proc.pid)
    result = wrk(binary, server.port, path, body, DURATION_S, tmp)
    result.cpu_us = (group_cpu_s(server.proc.pid) - before) / max(result.requests, 1) * 1e6
    result.warmup_requests = warmup.requests
    if spy is not None:
        print_profile(spy, tmp)
    return result


# --- py-spy ------------------------------------------------------------------------------------------------


def start_profile(server: Server, tmp: Path) -> subprocess.Popen[bytes] | None:
    """py-spy recording one worker of the server for the measured run (raw collapsed stacks)."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    workers = worker_pids(server.proc.pid)
    if not Path(pyspy).exists() or not workers:
        print("  --profile: py-spy or a worker not found")
        return None
    argv = [pyspy, "record", "--pid", str(workers[0]), "--duration", str(DURATION_S - 1), "--rate", "250"]
    argv += ["--format", "raw", "--nonblocking", "--output", str(tmp / "profile.txt")]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def worker_pids(pgid: int) -> list[int]:
    """The uvicorn workers of a server's process group: the processes that run the app."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(cmdline.parent.name)
            if os.getpgid(pid) == pgid and b"spawn_main" in cmdline.read_bytes():
                found.append(pid)
    return sorted(found)


def print_profile(spy: subprocess.Popen[bytes], tmp: Path, top: int = 15) -> None:
    """The top frames of the recording: by own time (line) and by time inside (function)."""
    spy.wait(timeout=60)
    own: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    total = 0
    with contextlib.suppress(OSError):
        for line in (tmp / "profile.txt").read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = [f for f in stack.split(";") if " (" in f]
            if not frames or not count.isdigit():
                continue
            n = int(count)
            total += n
            own[frames[-1]] += n
            for name in {f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0] + ")" for f in frames}:
                inside[name] += n
    if not total:
        print("  --profile: no samples")
        return
    print(f"  py-spy, one worker, {total} samples; top frames by own time:")
    for frame, n in own.most_common(top):
        print(f"    {n / total:6.1%}  {frame}")
    print("  by time inside (serving frames):")
    shown = [(f, n) for f, n in inside.most_common() if "mloncall/" in f or "onnxruntime" in f]
    for frame, n in shown[:top]:
        print(f"    {n / total:6.1%}  {frame}")


# --- the paced client: mloncall's (mloncall.scaling.loadgen), its connections spread over the workers -------


class FirstCallConnection(Connection):
    """A connection opened for the load, which the server may have closed while it sat idle before the load
    began (balancing can take longer than the server's header timeout on a busy machine). The first call that
    finds it closed, or answered 408, opens it again and sends once more; the load notes it in `stale`."""

    def __init__(self, opened: Connection, load: BalancedLoad) -> None:
        super().__init__(opened.reader, opened.writer)
        self.load = load
        self.first = True

    async def call(self, request: bytes) -> tuple[int, bytes]:
        if not self.first:
            return await super().call(request)
        self.first = False
        try:
            status, body = await super().call(request)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        else:
            if status != 408:
                return status, body
            why = "HTTP 408 on the idle connection"
        self.load.stale.append(why)
        self.close()
        fresh = await Connection.open(self.load.host, self.load.port, self.load.timeout_s)
        self.reader, self.writer = fresh.reader, fresh.writer
        return await super().call(request)


@dataclass
class BalancedLoad(PacedLoad):
    """Open-loop load at `rate` requests/s for `seconds` (or until stopped), as many connections a worker."""

    rate: float = 0.0
    seconds: float = 0.0
    keep_versions: bool = False
    #: (perf_counter time of the answer, model_version), when keep_versions.
    answers: list[tuple[float, str]] = field(default_factory=list)
    #: Connections the server closed while they waited for the load to start (sent again, not failures).
    stale: list[str] = field(default_factory=list)
    split: str = ""

    @classmethod
    def oip(
        cls,
        port: int,
        rate: float,
        seconds: float,
        connections: int = CONNECTIONS,
        keep_versions: bool = False,
    ) -> BalancedLoad:
        """The OIP infer request of one row, due every 1/rate s; no request waits longer than 10 s."""
        request = raw_request(HOST, port, f"/v2/models/{MODEL}/infer", OIP_BODY)
        due = [k / rate for k in range(math.ceil(rate * seconds))]
        return cls(HOST, port, request, due, connections, timeout_s=10.0, rate=rate, seconds=seconds,
                   keep_versions=keep_versions)  # fmt: skip

    def __post_init__(self) -> None:
        if self.keep_versions:
            self.on_answer = self._keep_version

    def _keep_version(self, answered: float, body: bytes) -> None:
        self.answers.append((answered, orjson.loads(body)["model_version"]))

    @property
    def latencies_ms(self) -> list[float]:
        """Of each answer, from when its request was due (or sent, when its connection was free in time)."""
        return [s.latency_ms for s in self.samples if not s.error]

    @property
    def sent_latencies_ms(self) -> list[float]:
        """Of each answer, from when its request was written, as wrk counts (hides waits behind slow ones)."""
        return [s.sent_latency_ms for s in self.samples if not s.error]

    @property
    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.error]

    async def open_connections(self) -> list[Connection]:
        """The connections, as many on each worker (as a load balancer would spread them), when `ss` can tell.

        Left to the kernel, whichever worker is awake accepts, and with a handful of keep-alive connections a
        split such as 8+2 puts most of the load on one worker: the figure would measure that draw.
        """
        share = -(-self.connections // WORKERS)
        kept: list[Connection] = []
        per_worker: Counter[int] = Counter()
        for _ in range(20 * self.connections):
            if len(kept) == self.connections:
                break
            conn = await Connection.open(self.host, self.port, self.timeout_s)
            pid = None
            for _ in range(50):  # until a worker has accepted it
                await asyncio.sleep(CONNECT_GAP_S)
                held = await asyncio.to_thread(server_sockets, self.port)
                pid = None if held is None else held.get(conn.local_port)
                if held is None or pid is not None:
                    break
            if pid is None or per_worker[pid] < share:
                kept.append(conn)
                if pid is not None:
                    per_worker[pid] += 1
            else:
                conn.close()
        while len(kept) < self.connections:  # could not balance: take what comes
            kept.append(await Connection.open(self.host, self.port, self.timeout_s))
        self.split = await asyncio.to_thread(connection_split, self.port)
        return [FirstCallConnection(conn, self) for conn in kept]


# --- the three parts ---------------------------------------------------------------------------------------


def mlflow_env() -> tuple[Path | None, str]:
    """The environment's python and how it came to be, or None and why it could not be made."""
    python = MLFLOW_ENV / "bin" / "python"
    if MLFLOW_READY.exists() and python.exists():
        return python, f"reused {MLFLOW_ENV.relative_to(ROOT.parent)}"
    shutil.rmtree(MLFLOW_ENV, ignore_errors=True)
    print(f"creating {MLFLOW_ENV.relative_to(ROOT.parent)}: pip install {' '.join(MLFLOW_PACKAGES)} ...")
    started = time.perf_counter()
    base = shutil.which("python3") or sys.executable
    made = subprocess.run([base, "-m", "venv", str(MLFLOW_ENV)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return None, f"python3 -m venv failed: {made.stderr.strip()[-300:]}"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *MLFLOW_PACKAGES],
        capture_output=True,
        text=True,
        check=False,
    )
    if pip.returncode != 0:
        shutil.rmtree(MLFLOW_ENV, ignore_errors=True)
        return None, f"pip install failed: {pip.stderr.strip()[-300:]}"
    MLFLOW_READY.touch()
    return python, f"created in {time.perf_counter() - started:.0f} s"


def mlflow_server(tmp: Path, stack: contextlib.ExitStack) -> Server | None:
    """`mlflow models serve` of the same pipeline, started and ready, or None (said why)."""
    python, how = mlflow_env()
    print(f"MLflow environment: {how}")
    if python is None:
        return None
    model_dir = tmp / "mlflow-model"
    script = tmp / "train_mlflow.py"
    script.write_text(MLFLOW_TRAIN)
    trained = subprocess.run(
        [str(python), str(script), str(model_dir), json.dumps(FEATURES)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if trained.returncode != 0:
        print(f"  MLflow model not trained: {trained.stderr.strip()[-600:]}")
        return None
    libs = json.loads(trained.stdout.strip().splitlines()[-1])
    print(
        f"  MLflow {libs['mlflow']} (scikit-learn {libs['scikit-learn']}, pandas {libs['pandas']}, "
        f"uvicorn {libs['uvicorn']}, uvloop {libs['uvloop']}, httptools {libs['httptools']}); "
        f"holdout accuracy {libs['accuracy']:.4f}"
    )
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",  # its `uvicorn`, not ours
        "UVICORN_ACCESS_LOG": "false",
    }
    argv = [str(python.parent / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local"]
    argv += ["--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(port)]
    server = stack.enter_context(serving("MLflow serve", argv, env, tmp, port))
    server.wait_ready("/ping", timeout_s=180)
    status, body = post(server.url("/invocations"), MLFLOW_BODY)
    if status != 200:
        sys.exit(f"MLflow answered {status}: {body[:400]!r}")
    print(f"  POST /invocations {MLFLOW_BODY.decode()} -> {orjson.loads(body)['predictions']}")
    return server


def floor_server(tmp: Path, stack: contextlib.ExitStack) -> Server:
    """The minimal ASGI app on uvicorn, with the settings `mloncall server` gives uvicorn."""
    return _bare_server("floor", FLOOR_APP, {}, tmp, stack)


def model_floor_server(home: Path, tmp: Path, stack: contextlib.ExitStack) -> Server:
    """The model floor (MODEL_FLOOR_APP) on the same uvicorn settings, over v1's verified ONNX bytes."""
    from mloncall.registry import service as registry
    from mloncall.stores.db import Database

    settings = Settings.load(env={"MLONCALL_HOME": str(home)})
    db = Database(settings.db_url)
    with db.session() as session:
        mv = registry.get_version_or_raise(session=session, name=MODEL, version=1)
        onnx = registry.read_file(
            store=ArtifactStore(settings.artifacts), model_version=mv, name=registry.ONNX_FILE
        )
        classes = [str(c) for c in (mv.signature or {})["classes"]]
    db.engine.dispose()
    (tmp / "model_floor.onnx").write_bytes(onnx)
    env = {"BENCH_ONNX": str(tmp / "model_floor.onnx"), "BENCH_CLASSES": ",".join(classes)}
    server = _bare_server("model floor", MODEL_FLOOR_APP, env, tmp, stack)
    status, body = post(server.url("/"), OIP_BODY)
    if status != 200:
        sys.exit(f"the model floor answered {status}: {body[:400]!r}")
    return server


def _bare_server(
    name: str, source: str, env: dict[str, str], tmp: Path, stack: contextlib.ExitStack
) -> Server:
    from mloncall.api.connections import ServerLimits

    module = name.replace(" ", "_") + "_app"
    (tmp / f"{module}.py").write_text(source)
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", f"{module}:app", "--workers", str(WORKERS), "--port", str(port)]
    argv += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    argv += ["--timeout-keep-alive", str(int(ServerLimits().keep_alive_timeout))]
    server = stack.enter_context(
        serving(name, argv, {**os.environ, **env, "PYTHONPATH": str(tmp)}, tmp, port)
    )
    server.wait_ready("/", timeout_s=60)
    return server


def setup_mloncall(env: dict[str, str], cwd: Path) -> float:
    """init, train v1 and deploy it directly, train v2 (the canary to be): the v1 holdout accuracy."""
    cli(env, cwd, "init", "--json")
    v1 = json.loads(cli(env, cwd, "train", MODEL, "--json"))
    cli(env, cwd, "deploy", f"{MODEL}:{v1['version']}", "--strategy", "direct", "--json")
    v2 = json.loads(cli(env, cwd, "train", MODEL, "--json"))
    assert (v1["version"], v2["version"]) == (1, 2), (v1["version"], v2["version"])
    return float(v1["metrics"]["accuracy"])


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def half_peak(port: int, rate: float) -> BalancedLoad:
    load = BalancedLoad.oip(port, rate, DURATION_S, PACED_CONNECTIONS)
    await load.run()
    return load


@dataclass
class AbortRun:
    switch_s: float | None
    abort_cli_s: float
    failed: int
    answered: int
    v2_share_before: float
    split: str
    problem: str = ""


async def canary_abort(port: int, env: dict[str, str], cwd: Path) -> AbortRun:
    """Start a 50% canary, load it, abort it; when the last v2 answer came relative to the abort's return."""
    deploy = await asyncio.create_subprocess_exec(
        str(MLONCALL), "deploy", f"{MODEL}:2", "--steps", "50,100", "--step-duration", "10m", "--json",
        env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await deploy.communicate()
    if deploy.returncode != 0:
        sys.exit(f"mloncall deploy {MODEL}:2 failed: {err.decode()[-600:]}")
    load = BalancedLoad.oip(port, CANARY_RATE, 60.0, keep_versions=True)
    task = asyncio.create_task(load.run())
    deadline = time.perf_counter() + 10
    while not any(v == "2" for _, v in load.answers[-200:]) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # each worker polls its routing every 0.3 s: let both take the canary
    window = load.answers[-1000:]
    share = sum(v == "2" for _, v in window) / len(window) if window else 0.0
    started = time.perf_counter()
    abort = await asyncio.create_subprocess_exec(
        str(MLONCALL), "rollout", "abort", MODEL, "--reason", "bench_serving", "--json",
        env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await abort.communicate()
    returned = time.perf_counter()
    problem = "" if abort.returncode == 0 else f"abort failed ({abort.returncode}): {err.decode()[-300:]}"
    await asyncio.sleep(AFTER_ABORT_S)
    load.stopped.set()
    await task
    v2_times = [t for t, v in load.answers if v == "2"]
    if not v2_times:
        problem = problem or "v2 never answered: the canary did not take traffic"
    return AbortRun(
        switch_s=max(v2_times) - returned if v2_times else None,
        abort_cli_s=returned - started,
        failed=len(load.failures),
        answered=len(load.answers),
        v2_share_before=share,
        split=load.split,
        problem=problem or (f"first failure: {load.failures[0].error}" if load.failures else ""),
    )


def logged_rows(home: Path) -> int:
    """Rows of the prediction log that record an answered request (status 200)."""
    settings = Settings.load(env={"MLONCALL_HOME": str(home)})
    table = read_log(ArtifactStore(settings.artifacts), PREDICTIONS, MODEL)
    if table is None:
        return 0
    return int((table.column("status").to_numpy() == 200).sum())


@dataclass
class Round:
    """One round of throughput figures, every server measured in turn."""

    floor: WrkResult
    model_floor: WrkResult
    oip: WrkResult
    predict: WrkResult
    mlflow: WrkResult | None
    paced: BalancedLoad | None = None


def report_round(i: int, r: Round) -> None:
    print(
        f"\n1.{i} throughput, 1-row requests, {CONNECTIONS} connections, {WORKERS} workers each "
        f"(wrk, {DURATION_S} s after {WARMUP_S} s warm-up; CPU per request from /proc)"
    )
    rows = [
        ("floor (minimal ASGI app)", r.floor),
        ("model floor (+ parse, ORT)", r.model_floor),
        ("mloncall OIP infer", r.oip),
        ("mloncall /predict", r.predict),
    ]
    if r.mlflow is not None:
        rows.append(("MLflow serve, inputs body", r.mlflow))
    for name, w in rows:
        share = f"{w.rps / r.floor.rps:6.1%} of floor req/s, {r.floor.cpu_us / w.cpu_us:6.1%} by CPU"
        print(
            f"  {name:<27} {w.rps:>8,.0f} req/s  {w.cpu_us:6.0f} us CPU/req  p99 {w.p99_ms:6.2f} ms  "
            f"{share}  (per worker {w.split}){'  ' + w.errors if w.errors else ''}"
        )
    for name, w in (("OIP", r.oip), ("/predict", r.predict)):
        part = w.rps / r.floor.rps
        print(
            f"  mloncall {name}: {part:.1%} of the floor (target >= 50%: {'met' if part >= 0.5 else 'MISSED'})"
        )
    print(
        f"  mloncall OIP: {r.oip.rps / r.model_floor.rps:.1%} of the model floor's req/s, "
        f"{r.model_floor.cpu_us / r.oip.cpu_us:.1%} by CPU; the model floor is "
        f"{r.model_floor.rps / r.floor.rps:.1%} of the floor's req/s, {r.floor.cpu_us / r.model_floor.cpu_us:.1%} by CPU"
    )
    if r.mlflow is not None:
        ratio = r.oip.rps / r.mlflow.rps
        print(f"  mloncall OIP / MLflow: {ratio:.1f}x (target >= 10x: {'met' if ratio >= 10 else 'MISSED'})")


def report_half_peak(paced: BalancedLoad) -> None:
    lat = paced.latencies_ms
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    print(
        f"\n2. latency at half of peak, paced client: {paced.rate:,.0f} req/s asked for {paced.seconds:.0f} s, "
        f"{len(lat) / paced.elapsed_s:,.0f} answered/s; {paced.connections} connections (per worker {paced.split})"
    )
    print(
        f"  p50 {p50:.2f} ms   p99 {p99:.2f} ms   max {max(lat, default=float('nan')):.2f} ms "
        f"(target p99 <= 5 ms: {'met' if p99 <= 5 else 'MISSED'})   failed {len(paced.failures)}"
    )
    if paced.failures:
        print(f"  first failure: {paced.failures[0].error}")
    if paced.stale:
        print(
            f"  {len(paced.stale)} connections closed by the server before the load began, reopened: {paced.stale[0]}"
        )
    print(
        f"  counted from the write, as wrk would: p50 {percentile(paced.sent_latencies_ms, 50):.2f} ms   "
        f"p99 {percentile(paced.sent_latencies_ms, 99):.2f} ms"
    )


def report_abort(i: int, run: AbortRun) -> None:
    when = "n/a"
    if run.switch_s is not None:
        when = (
            f"{run.switch_s:+.3f} s after the abort command returned "
            f"({run.switch_s + run.abort_cli_s:.2f} s after it started; it ran {run.abort_cli_s:.2f} s)"
        )
    print(
        f"  run {i} ({run.split} connections per worker): v2 served {run.v2_share_before:.0%} before the abort; "
        f"last v2 answer {when}; "
        f"{run.failed} failed of {run.answered + run.failed:,}" + (f"; {run.problem}" if run.problem else "")
    )


def mloncall_server(env: dict[str, str], tmp: Path, stack: contextlib.ExitStack) -> Server:
    port = free_port()
    argv = [str(MLONCALL), "server", "--workers", str(WORKERS), "--port", str(port)]
    server = stack.enter_context(serving("mloncall server", argv, env, tmp, port))
    server.wait_ready("/v2/health/ready", timeout_s=90)
    path = f"/v2/models/{MODEL}/infer"
    status, body = post(server.url(path), OIP_BODY)
    if status != 200:
        sys.exit(f"mloncall answered {status}: {body[:400]!r}")
    print(f"  POST {path} {ROW} -> {orjson.loads(body)['outputs'][0]['data']}")
    return server


def canary_figures(server: Server, env: dict[str, str], tmp: Path) -> int:
    print(f"\n3. canary abort: v2 at 50%, {CANARY_RATE:,.0f} req/s, `mloncall rollout abort {MODEL}`")
    runs = []
    for i in range(CANARY_REPEATS):
        runs.append(uvloop.run(canary_abort(server.port, env, tmp)))
        report_abort(i + 1, runs[-1])
    switches = [r.switch_s for r in runs if r.switch_s is not None]
    worst = max(switches) if len(switches) == len(runs) else float("nan")
    failed = max(r.failed for r in runs)
    print(
        f"  worst of {CANARY_REPEATS}: last v2 answer {worst:+.3f} s after abort, {failed} failed requests "
        f"(target < 1 s and zero failures: {'met' if worst < 1.0 and failed == 0 else 'MISSED'})"
    )
    return sum(r.answered for r in runs)


def summary(rounds: list[Round]) -> None:
    print(f"\nsummary of {len(rounds)} rounds (min / median / max; the spread is the machine's noise)")

    def line(name: str, values: list[float], fmt: str) -> None:
        v = sorted(values)
        print(f"  {name:<34} {fmt.format(v[0])} / {fmt.format(v[len(v) // 2])} / {fmt.format(v[-1])}")

    line("floor req/s", [r.floor.rps for r in rounds], "{:,.0f}")
    line("model floor req/s", [r.model_floor.rps for r in rounds], "{:,.0f}")
    line("model floor share (req/s)", [r.model_floor.rps / r.floor.rps for r in rounds], "{:.1%}")
    line("model floor share (CPU/req)", [r.floor.cpu_us / r.model_floor.cpu_us for r in rounds], "{:.1%}")
    line("mloncall OIP req/s", [r.oip.rps for r in rounds], "{:,.0f}")
    line("mloncall /predict req/s", [r.predict.rps for r in rounds], "{:,.0f}")
    line("OIP share of floor (req/s)", [r.oip.rps / r.floor.rps for r in rounds], "{:.1%}")
    line("/predict share of floor (req/s)", [r.predict.rps / r.floor.rps for r in rounds], "{:.1%}")
    line("OIP share of floor (CPU/req)", [r.floor.cpu_us / r.oip.cpu_us for r in rounds], "{:.1%}")
    line("/predict share of floor (CPU/req)", [r.floor.cpu_us / r.predict.cpu_us for r in rounds], "{:.1%}")
    if all(r.mlflow is not None for r in rounds):
        line("MLflow req/s", [r.mlflow.rps for r in rounds if r.mlflow], "{:,.0f}")
        line("OIP / MLflow", [r.oip.rps / r.mlflow.rps for r in rounds if r.mlflow], "{:.1f}x")
    paced = [r.paced for r in rounds if r.paced is not None]
    if paced:
        line("p99 at half of peak, ms", [percentile(p.latencies_ms, 99) for p in paced], "{:.2f}")


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1, help="rounds of throughput and latency figures")
    parser.add_argument("--profile", action="store_true", help="py-spy's top frames of a mloncall worker")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the MLflow anchor")
    parser.add_argument("--no-canary", action="store_true", help="skip the canary aborts")
    args = parser.parse_args()
    print(f"load average at start: {loadavg()}")
    wrk_bin = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        home = tmp / "home"
        env = mloncall_env(home)
        accuracy = setup_mloncall(env, tmp)
        print(f"mloncall: {MODEL} v1 deployed (holdout accuracy {accuracy:.4f}), v2 trained for the canary")
        anchor = None if args.no_mlflow else mlflow_server(tmp, stack)
        floor = floor_server(tmp, stack)
        model_floor = model_floor_server(home, tmp, stack)
        ours = mloncall_server(env, tmp, stack)
        path = f"/v2/models/{MODEL}/infer"
        rounds: list[Round] = []
        answered = 1
        for i in range(args.runs):
            oip = measure(wrk_bin, ours, path, OIP_BODY, tmp, profile=args.profile and i == 0)
            predict = measure(wrk_bin, ours, "/predict", PREDICT_BODY, tmp)
            # The paced run comes before MLflow's: measured just after MLflow's run, the paced client fell up
            # to 0.8 s behind its own schedule while the server's answers stayed fast (p99 from the write
            # 5.7-7.5 ms), a stall of the client's, not of the server it measures.
            waited = settle([floor, model_floor] + ([anchor] if anchor else []))
            paced = uvloop.run(half_peak(ours.port, oip.rps / 2))
            r = Round(
                floor=measure(wrk_bin, floor, "/", OIP_BODY, tmp),
                model_floor=measure(wrk_bin, model_floor, "/", OIP_BODY, tmp),
                oip=oip,
                predict=predict,
                mlflow=measure(wrk_bin, anchor, "/invocations", MLFLOW_BODY, tmp) if anchor else None,
            )
            r.paced = paced
            report_round(i + 1, r)
            print(f"  (the other servers were quiet {waited:.1f} s before the paced run)")
            report_half_peak(r.paced)
            rounds.append(r)
            answered += sum(w.warmup_requests + w.requests for w in (r.oip, r.predict))
            answered += len(r.paced.latencies_ms)
        if not args.no_canary:
            answered += canary_figures(ours, env, tmp)
        summary(rounds)
        print(f"  mloncall server: {ours.stop()}")
        print(
            f"\nprediction log: {logged_rows(home):,} rows with status 200; the clients counted {answered:,} "
            "answers (wrk leaves up to 10 in flight uncounted at each stop)"
        )
    print(f"load average at end: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

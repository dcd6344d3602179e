"""Serving figures: mloncall's inference server against `mlflow models serve` on the same Iris model, latency
at half of mloncall's peak, and how fast a canary abort moves all traffic back to stable.

1. Throughput, 1-row requests over 10 connections, 2 workers each, one server at a time on a free localhost
   port, each warmed for 3 s, then `wrk -t 2 -c 10 -d 10s --latency` (req/s and p99 from its output).
   Ours: `mloncall server --workers 2` (uvloop, httptools) with validation, metrics and prediction logging
   on (the defaults), POST /v2/models/iris/infer with a 1-row OIP body; the model is trained, registered and
   deployed with the CLI (`init`, `train`, `deploy --strategy direct`).
   Anchor: MLflow 3 `mlflow models serve -m DIR --env-manager local --workers 2` in its own environment,
   bench/.envs/mlflow (`python3 -m venv` + pip: mlflow 3, scikit-learn, uvloop, httptools, pyarrow<26;
   reused when present), POST /invocations with a `dataframe_split` body. Its best configuration: uvicorn
   picks up uvloop and httptools when installed, and its per-request access log is off (as in mloncall),
   through uvicorn's own UVICORN_ACCESS_LOG variable. Same model: the scikit-learn pipeline mloncall trains
   (StandardScaler + LogisticRegression(max_iter=1000), seed 42) on the same stratified 70% of sklearn's
   Iris, fitted on a DataFrame so MLflow's DataFrame input needs no feature-name fix-up.
   The workers share one listening socket and the kernel hands each connection to whichever accepts first,
   so the split of connections per worker (from `ss`) is printed with each figure: it moves them.
2. Latency at half of that peak, against the same mloncall server. wrk2 is not in Debian, and wrk's Lua
   `delay()` waits whole milliseconds after each answer, so its rate drifts with the latency and a stall
   hides the requests it held up. Instead an open-loop paced client here (asyncio on uvloop, raw HTTP/1.1
   keep-alive, one prebuilt request, about 70 us of client CPU per request) over 20 connections (see
   PACED_CONNECTIONS): each connection sends on a fixed schedule; a request that falls due while its
   connection still waits for the previous answer is timed from when it was due, so a stall counts for
   every request it delayed (no coordinated omission), the others from when sent. The p50/p99 counted from
   the write, as wrk does, are printed beside them.
3. Canary abort: v2 as a 50% canary of v1 (`deploy iris:2 --steps 50,100 --step-duration 10m`), the same
   client at 1,000 req/s recording each answer's time and `model_version`, then `mloncall rollout abort
   iris`; figure = last v2 answer minus the moment the abort command returned, and failed requests (non-200
   or a connection error). Three times; the worst is the figure.

Everything runs under a temporary MLONCALL_HOME. The machine has 2 cores that load generator and servers
share, and others may be using them: the load average is printed at the start and the end.
Run: .venv/bin/python bench/bench_serving.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.predlog import PREDICTIONS, read_log

ROOT = Path(__file__).resolve().parent
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
MLFLOW_BODY = orjson.dumps({"dataframe_split": {"columns": FEATURES, "data": [ROW]}})

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


def measure(binary: str, server: Server, path: str, body: bytes, tmp: Path) -> WrkResult:
    warmup = wrk(binary, server.port, path, body, WARMUP_S, tmp)
    result = wrk(binary, server.port, path, body, DURATION_S, tmp)
    result.warmup_requests = warmup.requests
    return result


# --- the paced client --------------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a prebuilt request and reads one answer back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    @property
    def local_port(self) -> int:
        port: int = self.writer.get_extra_info("sockname")[1]
        return port

    async def call(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        start = head.lower().index(b"content-length:") + 15
        length = int(head[start : head.index(b"\r\n", start)])
        return int(head[9:12]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def raw_request(port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@dataclass
class PacedLoad:
    """Open-loop load at `rate` requests/s spread over `connections`, until `seconds` have passed or stopped."""

    port: int
    request: bytes
    rate: float
    seconds: float
    connections: int = CONNECTIONS
    keep_versions: bool = False
    #: From when each request was due (or sent, when its connection was free in time).
    latencies_ms: list[float] = field(default_factory=list)
    #: From when each request was written, as wrk counts: hides the wait behind a slow answer.
    sent_latencies_ms: list[float] = field(default_factory=list)
    #: (perf_counter time of the answer, model_version), when keep_versions.
    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    elapsed_s: float = 0.0
    split: str = ""

    async def open_balanced(self) -> list[Connection]:
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
            conn = await Connection.open(self.port)
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
            kept.append(await Connection.open(self.port))
        return kept

    async def run(self) -> None:
        conns = await self.open_balanced()
        self.split = await asyncio.to_thread(connection_split, self.port)
        interval = self.connections / self.rate
        start = time.perf_counter() + 0.05
        deadline = start + self.seconds
        await asyncio.gather(
            *(
                self._connection(conn, start + i * interval / self.connections, interval, deadline)
                for i, conn in enumerate(conns)
            )
        )
        self.elapsed_s = time.perf_counter() - start  # past `seconds` when answers fell behind the schedule

    async def _connection(self, conn: Connection, due: float, interval: float, deadline: float) -> None:
        try:
            while due < deadline and not self.stopped.is_set():
                now = time.perf_counter()
                if now < due:
                    await asyncio.sleep(due - now)
                    sent = time.perf_counter()
                else:
                    sent = due  # it waited for the previous answer on this connection: that wait counts
                written = time.perf_counter()
                try:
                    status, body = await conn.call(self.request)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    self.failures.append((time.perf_counter(), f"{type(exc).__name__}: {exc}"))
                    conn.close()
                    conn = await Connection.open(self.port)
                else:
                    answered = time.perf_counter()
                    if status != 200:
                        self.failures.append((answered, f"HTTP {status}: {body[:200]!r}"))
                    else:
                        self.latencies_ms.append((answered - sent) * 1000.0)
                        self.sent_latencies_ms.append((answered - written) * 1000.0)
                        if self.keep_versions:
                            self.answers.append((answered, orjson.loads(body)["model_version"]))
                due += interval
        finally:
            conn.close()


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


def mlflow_throughput(wrk_bin: str, tmp: Path) -> WrkResult | None:
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
    with serving("MLflow serve", argv, env, tmp, port) as server:
        server.wait_ready("/ping", timeout_s=120)
        status, body = post(server.url("/invocations"), MLFLOW_BODY)
        if status != 200:
            sys.exit(f"MLflow answered {status}: {body[:400]!r}")
        print(f"  POST /invocations {ROW} -> {orjson.loads(body)['predictions']}")
        result = measure(wrk_bin, server, "/invocations", MLFLOW_BODY, tmp)
        print(f"  MLflow serve: {server.stop()}")
    return result


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


async def half_peak(port: int, rate: float) -> PacedLoad:
    path = f"/v2/models/{MODEL}/infer"
    load = PacedLoad(port, raw_request(port, path, OIP_BODY), rate, DURATION_S, PACED_CONNECTIONS)
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
    path = f"/v2/models/{MODEL}/infer"
    load = PacedLoad(port, raw_request(port, path, OIP_BODY), CANARY_RATE, 60.0, keep_versions=True)
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
        problem=problem,
    )


def logged_rows(home: Path) -> int:
    """Rows of the prediction log that record an answered request (status 200)."""
    settings = Settings.load(env={"MLONCALL_HOME": str(home)})
    table = read_log(ArtifactStore(settings.artifacts), PREDICTIONS, MODEL)
    if table is None:
        return 0
    return int((table.column("status").to_numpy() == 200).sum())


def report_throughput(ours: WrkResult, anchor: WrkResult | None) -> None:
    print(
        f"\n1. throughput, 1-row requests, {CONNECTIONS} connections, {WORKERS} workers each (wrk, 10 s after 3 s warm-up)"
    )
    line = f"  mloncall {ours.rps:,.0f} req/s (connections per worker {ours.split})"
    if anchor is not None:
        ratio = ours.rps / anchor.rps
        line += (
            f"   anchor MLflow serve {anchor.rps:,.0f} req/s ({anchor.split})"
            f"   ratio {ratio:.1f}x (target >= 3x: {'met' if ratio >= 3 else 'MISSED'})"
        )
    print(line)
    line = f"  p99 at peak: mloncall {ours.p99_ms:.2f} ms (p50 {ours.p50_ms:.2f})"
    if anchor is not None:
        line += f"   MLflow {anchor.p99_ms:.2f} ms (p50 {anchor.p50_ms:.2f})"
    print(line)
    for name, result in (("mloncall", ours), ("MLflow", anchor)):
        if result is not None and result.errors:
            print(f"  {name} errors: {result.errors}")


def report_half_peak(paced: PacedLoad) -> None:
    lat = paced.latencies_ms
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    print(
        f"\n2. latency at half of peak, paced client: {paced.rate:,.0f} req/s asked for {paced.seconds:.0f} s, "
        f"{len(lat) / paced.elapsed_s:,.0f} answered/s; {paced.connections} connections (per worker {paced.split})"
    )
    print(
        f"  p50 {p50:.2f} ms   p99 {p99:.2f} ms   max {max(lat, default=float('nan')):.2f} ms "
        f"(target p99 < 10 ms: {'met' if p99 < 10 else 'MISSED'})   failed {len(paced.failures)}"
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


def mloncall_figures(wrk_bin: str, home: Path, tmp: Path, anchor: WrkResult | None) -> int:
    """Serve with 2 workers; throughput, latency at half of it, canary aborts. The answers counted."""
    env = mloncall_env(home)
    accuracy = setup_mloncall(env, tmp)
    print(f"mloncall: {MODEL} v1 deployed (holdout accuracy {accuracy:.4f}), v2 trained for the canary")
    port = free_port()
    argv = [str(MLONCALL), "server", "--workers", str(WORKERS), "--port", str(port)]
    path = f"/v2/models/{MODEL}/infer"
    with serving("mloncall server", argv, env, tmp, port) as server:
        server.wait_ready("/v2/health/ready", timeout_s=60)
        status, body = post(server.url(path), OIP_BODY)
        if status != 200:
            sys.exit(f"mloncall answered {status}: {body[:400]!r}")
        print(f"  POST {path} {ROW} -> {orjson.loads(body)['outputs'][0]['data']}")
        ours = measure(wrk_bin, server, path, OIP_BODY, tmp)
        report_throughput(ours, anchor)

        paced = uvloop.run(half_peak(port, ours.rps / 2))
        report_half_peak(paced)

        print(f"\n3. canary abort: v2 at 50%, {CANARY_RATE:,.0f} req/s, `mloncall rollout abort {MODEL}`")
        runs = []
        for i in range(CANARY_REPEATS):
            runs.append(uvloop.run(canary_abort(port, env, tmp)))
            report_abort(i + 1, runs[-1])
        switches = [r.switch_s for r in runs if r.switch_s is not None]
        worst = max(switches) if len(switches) == len(runs) else float("nan")
        failed = max(r.failed for r in runs)
        print(
            f"  worst of {CANARY_REPEATS}: last v2 answer {worst:+.3f} s after abort, {failed} failed requests "
            f"(target < 1 s and zero failures: {'met' if worst < 1.0 and failed == 0 else 'MISSED'})"
        )
        print(f"  mloncall server: {server.stop()}")
    return 1 + ours.warmup_requests + ours.requests + len(paced.latencies_ms) + sum(r.answered for r in runs)


def main() -> int:
    print(f"load average at start: {loadavg()}")
    wrk_bin = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_name:
        tmp = Path(tmp_name)
        anchor = mlflow_throughput(wrk_bin, tmp)
        home = tmp / "home"
        answered = mloncall_figures(wrk_bin, home, tmp, anchor)
        print(
            f"\nprediction log: {logged_rows(home):,} rows with status 200; the clients counted {answered:,} "
            "answers (wrk leaves up to 10 in flight uncounted at each stop)"
        )
    print(f"load average at end: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

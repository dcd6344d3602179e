"""`mloncall loadtest`: shapes are finite schedules, a dead URL is a clear error at once, and a run against a
live server reports percentiles, errors and a PNG; `mloncall scale` changes the workers under load with no
request lost and refuses a count the server cannot run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from mloncall.core.errors import InvalidInput
from mloncall.demo.traffic import LocalServer
from mloncall.registry.models import ModelVersion
from mloncall.scaling import loadtest
from mloncall.scaling.loadgen import PacedLoad, raw_request
from mloncall.serving.app import create_inference_app
from mloncall.stores.context import Context
from mloncall.stores.predlog import read_log
from tests.conftest import free_port
from tests.helpers import run_cli
from tests.scaling.conftest import MODEL, live, ok
from tests.serving.conftest import ROW, ThreadServer, fast_config, iris_v1, sctx, server_env

__all__ = ["iris_v1", "live", "sctx"]


def test_shapes_are_finite_schedules_at_their_rates() -> None:
    constant = loadtest.schedule(loadtest.make_shape("constant", rate=100, duration_s=2))
    assert len(constant) == 200 and constant[-1] < 2
    spike = loadtest.make_shape("spike", rate=100, duration_s=3, spike_rate=1000, spike_at_s=1, spike_for_s=1)
    due = loadtest.schedule(spike)
    assert sum(1 for t in due if 1 <= t < 2) == 1000 and sum(1 for t in due if t < 1) == 100
    steps = loadtest.schedule(loadtest.make_shape("steps", rate=1, duration_s=3, steps=[10, 20, 30]))
    assert abs(len(steps) - 60) <= 1  # 10 + 20 + 30, give or take a due time on a boundary
    for bad in ({"rate": 0}, {"rate": float("inf")}, {"duration_s": 0}):
        with pytest.raises(InvalidInput):
            loadtest.make_shape("constant", **{"rate": 10.0, "duration_s": 1.0, **bad})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="--steps"):
        loadtest.make_shape("steps", rate=10, duration_s=1)


def test_a_load_test_against_a_dead_url_is_a_clear_error_at_once(cli_env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v2/models/iris/infer"
    started = time.monotonic()
    res = run_cli("loadtest", url, "--rate", "10", "--duration", "1s", env=cli_env)
    assert res.returncode == 7
    assert f"nothing answers at {url}" in res.stderr and "is the server running" in res.stderr
    assert "Traceback" not in res.stderr
    assert time.monotonic() - started < 60  # the CLI's start-up, not a wait on the dead address


@pytest.mark.slow
@pytest.mark.xdist_group("scaling-server")
def test_a_load_test_reports_percentiles_and_draws_latency(
    live: tuple[LocalServer, dict[str, str]], tmp_path: Path
) -> None:
    server, env = live
    png = tmp_path / "latency.png"
    url = f"{server.base}/v2/models/{MODEL}/infer"
    res = run_cli("loadtest", url, "--rate", "200", "--duration", "2s", "--json", "--png", str(png), env=env)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["sent"] == 400 and report["answered"] == 400 and report["errors"] == 0
    assert set(report["percentiles_ms"]) == {"p50", "p90", "p99", "p99.9"}
    assert report["within_slo"] is None and "no SLO" in report["verdict"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_load_tests_requests_are_logged_as_synthetic(sctx: Context, iris_v1: ModelVersion) -> None:
    """`mloncall loadtest` marks every request it sends (OIP and /predict), so the server logs its rows as
    synthetic while a client's request beside it stays real; its --help says so."""
    app = create_inference_app(sctx, config=fast_config())
    env = server_env(sctx)
    with ThreadServer(app) as srv:
        sent = 0
        for url in (f"{srv.url}/v2/models/iris/infer", f"{srv.url}/predict"):
            res = run_cli("loadtest", url, "--model", "iris", "--rate", "40", "--duration", "500ms",
                          "--connections", "2", "--no-record", "--json", env=env)  # fmt: skip
            assert res.returncode == 0, res.stderr
            report = json.loads(res.stdout)
            assert report["answered"] == report["sent"] == 20
            sent += report["sent"]
        real = httpx.post(f"{srv.url}/predict", json={"model": "iris", "instances": [ROW]}, timeout=10)
        assert real.status_code == 200
    table = read_log(sctx.store, "predictions", "iris")  # the server's shutdown wrote every row
    assert table is not None and table.num_rows == sent + 1
    marks = table.column("synthetic").to_pylist()
    assert marks.count(True) == sent and marks.count(False) == 1
    assert set(table.filter(table.column("synthetic")).column("route").to_pylist()) == {"stable"}
    help_text = " ".join(run_cli("loadtest", "--help", env=env).stdout.split())
    assert "x-mloncall-synthetic: 1" in help_text


def _load(server: LocalServer, rate: float, seconds: float) -> PacedLoad:
    target = loadtest.target_of(f"{server.base}/v2/models/{MODEL}/infer", model=None, body=None)
    request = raw_request(target.host, target.port, target.path, target.body)
    due = loadtest.schedule(loadtest.make_shape("constant", rate=rate, duration_s=seconds))
    return PacedLoad(target.host, target.port, request, due, connections=20, timeout_s=10)


@pytest.mark.slow
@pytest.mark.xdist_group("scaling-server")
def test_changing_the_workers_under_load_loses_no_request(live: tuple[LocalServer, dict[str, str]]) -> None:
    server, env = live
    load = _load(server, rate=300, seconds=12)
    runner = threading.Thread(target=lambda: asyncio.run(load.run()))
    runner.start()
    try:
        time.sleep(1.0)
        up = run_cli("scale", MODEL, "--workers", "3", "--json", env=env)
        assert up.returncode == 0, up.stderr
        assert json.loads(up.stdout)["after"] == 3
        down = run_cli("scale", MODEL, "--workers", "1", "--json", env=env)
        assert down.returncode == 0, down.stderr
        assert len(json.loads(down.stdout)["retired"]) == 2
    finally:
        runner.join(timeout=120)
    failed = [s.error for s in load.samples if s.error]
    assert len(load.samples) == 3600 and failed == []
    explained = json.loads(run_cli("scale", "explain", MODEL, "--json", env=env).stdout)
    assert [(e["from_workers"], e["to_workers"], e["applied"]) for e in explained][-2:] == [
        (1, 3, True),
        (3, 1, True),
    ]


@pytest.mark.slow
@pytest.mark.xdist_group("scaling-server")
def test_scale_refuses_zero_workers_and_more_than_the_maximum(
    live: tuple[LocalServer, dict[str, str]],
) -> None:
    _server, env = live
    zero = run_cli("scale", MODEL, "--workers", "0", env=env)
    assert zero.returncode == 2 and "at least 1" in zero.stderr
    above = run_cli("scale", MODEL, "--workers", "4", env=env)
    assert above.returncode == 2 and "above the configured maximum of 3" in above.stderr


@pytest.mark.slow
@pytest.mark.xdist_group("scaling-server")
def test_the_autoscaler_reacts_to_an_injected_spike(live: tuple[LocalServer, dict[str, str]]) -> None:
    """`scale auto` runs while `loadtest` injects a spike far past what one worker answers: the autoscaler
    adds a worker, and `scale explain` shows the decision with the values it read."""
    server, env = live
    ok("slo", "set", MODEL, "--latency-p99", "20ms", "--error-rate", "0.01", "--availability", "0.99",
       "--window", "7d", env=env)  # fmt: skip
    ok("scale", MODEL, "--workers", "1", env=env)
    seen = {e["id"] for e in json.loads(ok("scale", "explain", MODEL, "--limit", "1000", "--json", env=env))}
    auto = subprocess.Popen(
        [sys.executable, "-m", "mloncall", "scale", "auto", MODEL, "--min", "1", "--max", "2", "--for", "20s",
         "--interval", "500ms", "--up-delay", "1s", "--down-delay", "10m", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = f"{server.base}/v2/models/{MODEL}/infer"
        spike = run_cli("loadtest", url, "--rate", "50", "--duration", "8s", "--shape", "spike",
                        "--spike-rate", "6000", "--spike-at", "1s", "--spike-for", "5s", "--connections", "64",
                        "--json", env=env)  # fmt: skip
        assert spike.returncode == 0, spike.stderr
        assert json.loads(spike.stdout)["within_slo"] is False  # the spike broke the 20 ms objective
        out, err = auto.communicate(timeout=120)
    finally:
        if auto.poll() is None:
            auto.kill()
    assert auto.returncode == 0, err
    decisions = json.loads(out)
    outs = [d for d in decisions if d["action"] == "scale_out"]
    assert outs and (outs[0]["from_workers"], outs[0]["to_workers"]) == (1, 2), decisions
    assert "vs objective 20 ms" in outs[0]["reason"] or "queued" in outs[0]["reason"]
    explained = json.loads(ok("scale", "explain", MODEL, "--limit", "1000", "--json", env=env))
    assert any(
        e["id"] not in seen and (e["from_workers"], e["to_workers"], e["applied"]) == (1, 2, True)
        for e in explained
    ), explained
    # a delay is recorded when it starts (again after a tick broke it), not at each tick it keeps running
    pending = [e["reason"] for e in explained if e["id"] not in seen and e["action"] == "pending"]
    assert pending and all(" for 0.0s of the " in r for r in pending), pending
    ok("scale", MODEL, "--workers", "1", env=env)


def _lock_holders(path: Path) -> set[int]:
    """The pids holding a flock on the file, from /proc/locks (`N: FLOCK ADVISORY WRITE pid maj:min:inode`)."""
    inode = path.stat().st_ino
    holders = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            holders.add(int(fields[4]))
    return holders


@pytest.mark.slow
@pytest.mark.xdist_group("scaling-server")
def test_the_supervisor_runs_the_background_jobs_so_no_inference_worker_shares_its_interpreter(
    live: tuple[LocalServer, dict[str, str]],
) -> None:
    """Each background job (its lock file in the home) is held by the supervisor, the process that serves
    nothing; a worker that ran the log summaries held up its own requests every minute."""
    server, env = live
    assert server.proc is not None
    home = Path(env["MLONCALL_HOME"])
    locks = sorted(home.glob("*.lock"))
    jobs = {"scheduler.lock", "alerts-scheduler.lock", "incidents-scheduler.lock", "access-scheduler.lock"}
    jobs |= {"runbooks-auto-run.lock", "log-compaction.lock"}
    assert {p.name for p in locks} >= jobs, [p.name for p in locks]
    runtime = json.loads((home / "run" / "server.json").read_text())
    assert runtime["pid"] == server.proc.pid and runtime["supervised"] is True
    for path in locks:
        assert _lock_holders(path) == {server.proc.pid}, path.name

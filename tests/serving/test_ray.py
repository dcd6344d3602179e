"""`mloncall server --backend ray`: the same models, routes, validation, prediction log and routing table on
a real local Ray cluster, and an address that does not answer refused before anything is deployed.

The cluster, the server and the client run inside a network and process namespace this test creates
(`tests/serving/ray/runner.py`): Ray does not stay on loopback when asked to, and inside the namespace
loopback is all there is. The namespace ends with the run, and every Ray process with it. One cluster for
the whole session (about 16 s to start and 0.9 GB).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mloncall.cli import main as cli_main
from tests.conftest import free_port, unavailable

RUNNER = Path(__file__).parent / "ray" / "runner.py"
HAS_RAY = importlib.util.find_spec("ray") is not None


def _unshare() -> list[str] | None:
    """The unshare command that gives this user a network and pid namespace, or None."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    for cmd in (
        ["unshare", "-n", "-p", "-f", "-m", "--mount-proc"],
        ["unshare", "-r", "-n", "-p", "-f", "-m", "--mount-proc"],
    ):
        probe = subprocess.run([*cmd, "ip", "link", "set", "lo", "up"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return cmd
    return None


@pytest.fixture(scope="session")
def ray_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One run of the runner inside its namespace: what it saw, as a dict."""
    if not HAS_RAY:
        unavailable("Ray is not installed: pip install 'mloncall[ray]'")
    unshare = _unshare()
    if unshare is None:
        unavailable("cannot create a network namespace here (unshare -n, or -rn with user namespaces)")
    assert unshare is not None
    work = tmp_path_factory.mktemp("ray")
    out = work / "out.json"
    temp = tempfile.mkdtemp(prefix="mlray", dir="/tmp")
    script = f'ip link set lo up && exec "{sys.executable}" "{RUNNER}" "{out}" "{temp}"'
    try:
        res = subprocess.run([*unshare, "sh", "-c", script], capture_output=True, text=True, timeout=400)
        if not out.exists():
            pytest.fail(f"the Ray runner wrote nothing (exit {res.returncode}): {res.stderr[-3000:]}")
        seen = json.loads(out.read_text())
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    if "error" in seen:
        pytest.fail(f"the Ray run failed: {seen['error']}\n{seen.get('server_log', '')}")
    print(json.dumps({k: v for k, v in seen.items() if k.endswith("_s")}))  # timings, for the report
    yield seen


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_same_models_serve_on_ray_with_the_same_routes_and_validation(ray_run: dict[str, Any]) -> None:
    assert (
        ray_run["routing_before"]["canary_version"] == 2 and ray_run["routing_before"]["canary_weight"] == 0.5
    )
    # /predict answers from both versions at the canary's weight
    assert set(ray_run["canary_versions"]) == {"1", "2"}
    oip = ray_run["oip"]
    assert oip["status"] == 200 and oip["body"]["model_name"] == "iris-classifier"
    assert {o["name"] for o in oip["body"]["outputs"]} == {"label", "probabilities"}
    bad = ray_run["bad_input"]
    assert bad["status"] == 400
    assert bad["body"]["error"] == "instances[0].petal_width: expected a number, got a string"
    assert ray_run["control_plane"] == 200


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_canary_abort_through_the_rollout_takes_effect_on_ray(ray_run: dict[str, Any]) -> None:
    abort = ray_run["abort"]
    assert abort["rc"] == 0 and "aborted" in abort["stdout"], abort
    assert ray_run["after_abort_versions"] == {"1": 40}
    after = ray_run["routing_after"]
    assert after["stable_version"] == 1 and after["canary_version"] is None


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_ray_replicas_write_the_prediction_log_and_stopping_deletes_the_app(ray_run: dict[str, Any]) -> None:
    # every prediction answered on Ray is in the log the monitors read, under the version that answered it
    assert ray_run["logged_versions"]["answered"] == ray_run["served_versions"]
    assert ray_run["logged_versions"]["failed"] == {"400": 1}  # the bad input, counted as the monitors expect
    assert ray_run["served_versions"]["1"] >= ray_run["canary_versions"]["1"] + 40
    # stopped with SIGTERM: the Serve app is gone (its proxy has no route), and its log was flushed above
    assert ray_run["after_stop_status"] == 404
    assert "Deleting app ['mloncall']" in ray_run["server_log"]
    assert "Traceback" not in ray_run["server_log"]


# --- without a cluster: bad input and the plan ---


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed: pip install 'mloncall[ray]'")
def test_a_ray_address_that_does_not_answer_is_refused_before_anything_is_deployed(
    cli_env: dict[str, str],
    silent_port: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert invoke(capsys, "init")[0] == 0
    closed = free_port()
    for address, message in [
        (f"127.0.0.1:{closed}", f"the Ray cluster at 127.0.0.1:{closed} does not answer: Connection refused"),
        (f"127.0.0.1:{silent_port}", "accepts connections but does not answer as a Ray head within 3 s"),
    ]:
        code, out, err = invoke(
            capsys, "server", "--backend", "ray", "--ray-address", address, "--port", str(free_port())
        )
        assert code == 7, (address, code, err)
        assert message in err and "Traceback" not in err
        assert "serving" not in out and "autoscaling" not in out  # refused before the plan is deployed
    assert "ray" not in sys.modules or not _ray_connected()
    # a serving setting every replica would refuse is refused here, before the cluster is asked
    monkeypatch.setenv("MLONCALL_SERVING_ONNX_THREADS", "5000")
    code, _, err = invoke(capsys, "server", "--backend", "ray", "--ray-address", f"127.0.0.1:{closed}")
    assert code == 2 and "onnx_threads=5000" in err, err


def _ray_connected() -> bool:
    import ray

    return bool(ray.is_initialized())


def invoke(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`mloncall ARGS` in this process (the plan needs no cluster and no installation)."""
    capsys.readouterr()
    code = cli_main.run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ray_autoscaling_is_derived_from_the_models_slo_when_no_objective_is_given(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "mloncall.toml"
    config.write_text(
        '[slo.iris]\nlatency_p99 = "50ms"\nerror_rate = 0.01\navailability = 0.99\nwindow = "30d"\n'
        '[slo.other]\nlatency_p99 = "400ms"\nerror_rate = 0.01\navailability = 0.99\nwindow = "30d"\n'
    )
    monkeypatch.setenv("MLONCALL_CONFIG", str(config))
    monkeypatch.setenv("MLONCALL_HOME", str(tmp_path / "home"))  # no installation: the toml's SLOs
    args = ["server", "--backend", "ray", "--ray-address", "10.0.0.5:6379", "--dry-run"]
    code, out, err = invoke(capsys, *args, "--replica-capacity", "400", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["autoscaling"] and plan["target_ongoing_requests"] == 10.0  # the tightest: iris's 50 ms
    assert "autoscaling for the SLO of iris: p99 ≤ 50 ms" in err
    monkeypatch.setenv("MLONCALL_CONFIG", str(tmp_path / "none.toml"))
    config.rename(tmp_path / "none.toml")
    (tmp_path / "none.toml").write_text("")
    code, _, err = invoke(capsys, *args, "--replica-capacity", "400")
    assert code == 2 and "or with an SLO" in err


def test_ray_plan_is_derived_from_the_latency_objective_and_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["server", "--backend", "ray", "--ray-address", "10.0.0.5:6379", "--dry-run"]
    objective = ["--target-p99", "50ms", "--replica-capacity", "400"]
    code, out, err = invoke(capsys, *args, *objective, "--max-replicas", "6", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert (
        plan["autoscaling"] and plan["target_ongoing_requests"] == 10.0 and plan["max_ongoing_requests"] == 20
    )
    assert (plan["min_replicas"], plan["max_replicas"]) == (1, 6)
    assert plan["downscale_delay_s"] > plan["upscale_delay_s"]
    code, out, _ = invoke(capsys, *args, *objective)
    assert code == 0 and "target_ongoing_requests" in out and "Ray Serve autoscaling" in out
    code, out, _ = invoke(capsys, *args)
    assert code == 0 and "Ray Serve replicas (fixed)" in out
    for extra, message in [
        (["--target-p99", "2ms", "--replica-capacity", "400"], "a p99 of 2 ms cannot be met"),
        (["--target-p99", "50ms"], "--target-p99 needs --replica-capacity"),
        (["--target-p99", "soon", "--replica-capacity", "400"], "bad --target-p99 'soon'"),
        (["--min-replicas", "0"], "at least 1"),
        (["--min-replicas", "1", "--max-replicas", "3"], "needs --target-p99"),
        (["--workers", "2"], "--workers is for the local backend"),
    ]:
        code, _, err = invoke(capsys, *args, *extra)
        assert code == 2 and message in err, (extra, code, err)
    for argv, message in [
        (["server", "--backend", "ray", "--ray-address", "nohost", "--dry-run"], "is not host:port"),
        (["server", "--backend", "ray"], "needs --ray-address"),
        (["server", "--backend", "k8s"], "use local or ray"),
    ]:
        code, _, err = invoke(capsys, *argv)
        assert code == 2 and message in err, (argv, code, err)

"""Interop with a real Prometheus and Alertmanager (Debian packages `prometheus`, `prometheus-alertmanager`,
installed by scripts/prometheus.sh): the generated rules pass promtool, and an alert Prometheus fires reaches
mloncall through Alertmanager's webhook, then resolves.

Select with `pytest -m prometheus`. Without the binaries the tests skip with the reason (and fail on CI).
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from mloncall.alerts import promrules, service
from mloncall.alerts.models import Alert
from mloncall.stores.context import Context
from tests.alerts.conftest import build_app, make_tokens
from tests.conftest import free_port, unavailable

pytestmark = pytest.mark.prometheus


def binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    unavailable(f"{' or '.join(names)} not installed: run scripts/prometheus.sh")
    raise AssertionError("unreachable")


def test_generated_rules_pass_promtool_and_fire_on_5xx(tmp_path: Path) -> None:
    promtool = binary("promtool")
    (tmp_path / "rules.yml").write_text(promrules.prometheus_rules())
    check = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # promtool's rule unit tests: 10% of iris's requests fail with 500 for 20 minutes -> the error-rate alert
    # fires for iris only, with its runbook label
    (tmp_path / "test.yml").write_text(
        textwrap.dedent(
            """\
            rule_files: [rules.yml]
            evaluation_interval: 1m
            tests:
              - interval: 1m
                input_series:
                  - series: 'mloncall_requests_total{model="iris",version="1",route="infer",status="200"}'
                    values: '0+90x30'
                  - series: 'mloncall_requests_total{model="iris",version="1",route="infer",status="500"}'
                    values: '0+10x30'
                  - series: 'mloncall_requests_total{model="other",version="1",route="infer",status="200"}'
                    values: '0+100x30'
                alert_rule_test:
                  - eval_time: 20m
                    alertname: MloncallHighErrorRate
                    exp_alerts:
                      - exp_labels: {model: iris, severity: critical, runbook: deployment, source: mloncall-prometheus}
                        exp_annotations:
                          summary: iris answers with server errors
                          description: "10% of the requests to iris failed with 5xx over 5 minutes (maximum 1.00%)."
                  - eval_time: 3m
                    alertname: MloncallHighErrorRate
                    exp_alerts: []
            """
        )
    )
    unit = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True, check=False
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr


# --- the end-to-end test ---------------------------------------------------------------------------------


@dataclass
class Probe:
    """A scrape target whose one gauge the test sets."""

    url: str
    value: float = 0.0


@pytest.fixture
def probe() -> Iterator[Probe]:
    state = Probe(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (
                "# HELP mloncall_integration_probe A value the test controls.\n"
                "# TYPE mloncall_integration_probe gauge\n"
                f'mloncall_integration_probe{{model="iris-classifier"}} {state.value}\n'
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def mloncall_server(sctx: Context) -> Iterator[tuple[str, str]]:
    """mloncall's control plane on a real uvicorn server; (base URL, an operator token)."""
    import uvicorn

    secrets = make_tokens(sctx)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(sctx), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", secrets["operator"]
    server.should_exit = True
    thread.join(timeout=10)


class Processes:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.running.append((name, proc))
        return proc

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} (exit {proc.poll()}) ---\n{(self.tmp / f'{name}.log').read_text(errors='replace')[-3000:]}"
            for name, proc in self.running
        )

    def stop(self) -> None:
        for _, proc in self.running:
            if proc.poll() is None:
                proc.terminate()
        for _, proc in self.running:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop()


def wait_for(what: str, condition: Callable[[], Any], processes: Processes, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        for name, proc in processes.running:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited while waiting for {what}\n{processes.logs()}")
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{processes.logs()}")


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_an_alert_from_prometheus_reaches_mloncall_through_alertmanager_and_resolves(
    sctx: Context, probe: Probe, mloncall_server: tuple[str, str], processes: Processes, tmp_path: Path
) -> None:
    prometheus = binary("prometheus")
    alertmanager = binary("prometheus-alertmanager", "alertmanager")
    base_url, token = mloncall_server
    am_port, prom_port = free_port(), free_port()
    (tmp_path / "alertmanager.yml").write_text(
        textwrap.dedent(
            f"""\
            route:
              receiver: mloncall
              group_by: [alertname]
              group_wait: 1s
              group_interval: 1s
              repeat_interval: 1h
            receivers:
              - name: mloncall
                webhook_configs:
                  - url: {base_url}/api/v1/alerts/alertmanager
                    send_resolved: true
                    http_config:
                      authorization:
                        type: Bearer
                        credentials: {token}
            """
        )
    )
    (tmp_path / "rules.yml").write_text(
        textwrap.dedent(
            """\
            groups:
              - name: integration
                rules:
                  - alert: MloncallProbeHigh
                    expr: mloncall_integration_probe > 5
                    labels: {severity: critical, runbook: monitoring}
                    annotations:
                      summary: "probe of {{ $labels.model }} is {{ $value }}"
            """
        )
    )
    (tmp_path / "prometheus.yml").write_text(
        textwrap.dedent(
            f"""\
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            rule_files: [rules.yml]
            alerting:
              alertmanagers:
                - static_configs:
                    - targets: ["127.0.0.1:{am_port}"]
            scrape_configs:
              - job_name: mloncall
                static_configs:
                  - targets: ["{probe.url}"]
            """
        )
    )
    (tmp_path / "am-data").mkdir()
    (tmp_path / "prom-data").mkdir()
    processes.start(
        "alertmanager",
        [
            alertmanager,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
    )
    processes.start(
        "prometheus",
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
    )
    wait_for("Alertmanager to be ready", lambda: ready(f"http://127.0.0.1:{am_port}/-/ready"), processes, 30)
    wait_for("Prometheus to be ready", lambda: ready(f"http://127.0.0.1:{prom_port}/-/ready"), processes, 30)

    def alert_in(state: str) -> Alert | None:
        with sctx.db.session() as session:
            found = service.list_alerts(session=session, source="alertmanager", rule="MloncallProbeHigh")
        return next((a for a in found if a.state == state), None)

    probe.value = 10
    firing = wait_for("the alert to fire in mloncall", lambda: alert_in("firing"), processes)
    assert (
        firing.model == "iris-classifier" and firing.severity == "critical" and firing.runbook == "monitoring"
    )
    assert (
        firing.labels["job"] == "mloncall"
        and firing.annotations["summary"] == "probe of iris-classifier is 10"
    )
    assert firing.fingerprint.startswith("alertmanager:") and firing.external_id
    probe.value = 1
    resolved = wait_for("the alert to resolve in mloncall", lambda: alert_in("resolved"), processes)
    assert resolved.id == firing.id
    with sctx.db.session() as session:
        alert = service.get_alert_or_raise(session=session, alert_id=firing.id)
        assert [e.kind for e in alert.events] == ["firing", "resolved"]
        assert (
            alert.group is not None and alert.group.key == 'alertmanager:{}:{alertname="MloncallProbeHigh"}'
        )
        assert alert.events[0].actor == "alertmanager:operator-user"

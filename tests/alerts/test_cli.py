"""`mloncall alerts ...` and `mloncall monitor run|prometheus-rules` end to end through the Typer apps."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mloncall.alerts import evaluation
from mloncall.alerts.cli import app, monitor_app
from mloncall.core import clock, console
from mloncall.core.errors import MloncallError
from mloncall.core.outcome import Outcome
from mloncall.stores.context import Context
from tests.alerts.conftest import FakeMonitor, create_alert_tables
from tests.conftest import unavailable

runner = CliRunner()

RULES = textwrap.dedent(
    """\
    rules:
      - name: errors
        model: iris-classifier
        monitor: error_rate
        params: {max_error_rate: 0.02}
        window: 5m
        for: 0
        severity: critical
        runbook: deployment
      - name: drift
        model: iris-classifier
        monitor: drift
        window: 1h
        for: 10m
        severity: warning
        runbook: monitoring
    """
)


@pytest.fixture
def home(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, frozen_clock: clock.FrozenClock
) -> Iterator[FakeMonitor]:
    """A CLI installation with the alert tables and a monitor the test controls."""
    ctx = Context.from_settings()
    ctx.init()
    create_alert_tables(ctx)
    ctx.close()
    fake = FakeMonitor()
    monkeypatch.setattr(evaluation, "default_monitor", lambda: fake)
    monkeypatch.setattr(console, "out", Console(width=200, soft_wrap=False))
    yield fake


def run(typer_app: Any, *args: str) -> tuple[int, str, Any]:
    """Run a command; a MloncallError becomes its exit code, as `mloncall` does."""
    result = runner.invoke(typer_app, list(args))
    if isinstance(result.exception, MloncallError):
        return result.exception.exit_code, str(result.exception.message), result
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output, result


def test_rules_load_show_and_refusal(home: FakeMonitor, tmp_path: Path) -> None:
    code, out, _ = run(app, "rules", "show", "--json")
    assert code == 0 and json.loads(out)["version"] == 0  # the built-in defaults
    good = tmp_path / "rules.yaml"
    good.write_text(RULES)
    code, out, _ = run(app, "rules", "load", str(good))
    assert code == 0 and "loaded 2 rules" in out and "v1" in out
    code, out, _ = run(app, "rules", "load", str(good))
    assert code == 0 and "nothing changed" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES.replace("window: 1h", "window: an hour"))
    code, message, _ = run(app, "rules", "load", str(bad))
    assert code == 2 and "line 13" in message and "bad duration 'an hour'" in message
    code, out, _ = run(app, "rules", "show", "--json")
    assert json.loads(out)["version"] == 1 and [r["name"] for r in json.loads(out)["rules"]] == [
        "errors",
        "drift",
    ]
    code, out, _ = run(app, "rules", "show")
    assert code == 0 and "rule set v1" in out and "max_error_rate=0.02" in out
    code, out, _ = run(app, "rules", "show", "--yaml")
    assert out == RULES
    code, message, _ = run(app, "rules", "load", str(tmp_path / "missing.yaml"))
    assert code == 2 and "does not exist" in message


def test_monitor_run_and_the_alert_commands(
    home: FakeMonitor, tmp_path: Path, frozen_clock: clock.FrozenClock
) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    run(app, "rules", "load", str(tmp_path / "rules.yaml"))
    home.set("error_rate", "iris-classifier", Outcome.FAILED, value=0.07)
    home.set("drift", "iris-classifier", Outcome.INCONCLUSIVE)
    code, out, _ = run(monitor_app, "run", "--json")
    assert code == 0
    report = json.loads(out)
    assert {(c["rule"], c["check"]["outcome"]) for c in report["checks"]} == {
        ("errors", "failed"),
        ("drift", "inconclusive"),
    }
    (t,) = report["transitions"]
    assert (t["rule"], t["kind"], t["to_state"]) == ("errors", "firing", "firing")
    alert_id = t["alert_id"]
    frozen_clock.advance(minutes=1)
    code, out, _ = run(monitor_app, "run")
    assert code == 0 and "no alert changed state" in out and "inconclusive" in out

    code, out, _ = run(app, "list", "--json")
    assert [(a["id"], a["state"]) for a in json.loads(out)] == [(alert_id, "firing")]
    code, out, _ = run(app, "list")
    assert code == 0 and "errors" in out and "firing" in out
    code, out, _ = run(app, "list", "--state", "resolved")
    assert "no alerts in state resolved" in out
    code, message, _ = run(app, "list", "--state", "on-fire")
    assert code == 2 and "unknown state" in message

    code, out, _ = run(app, "ack", str(alert_id))
    assert code == 0 and f"acknowledged alert #{alert_id}" in out
    code, out, _ = run(app, "ack", str(alert_id))
    assert "already acknowledged" in out
    code, message, _ = run(app, "ack", "999")
    assert code == 3 and "does not exist" in message

    code, out, _ = run(
        app,
        "silence",
        "-m",
        "model=iris-classifier",
        "--matcher",
        "rule=errors",
        "--duration",
        "2h",
        "--comment",
        "deploy",
    )
    assert code == 0 and "silence #1" in out
    code, out, _ = run(app, "silences", "--json")
    assert [s["matchers"] for s in json.loads(out)] == [["model=iris-classifier", "rule=errors"]]
    code, out, _ = run(app, "silences")
    assert "active" in out and "deploy" in out
    code, message, _ = run(app, "silence", "-m", "model", "--duration", "2h", "--comment", "x")
    assert code == 2 and "bad matcher" in message

    code, out, _ = run(app, "resolve", str(alert_id), "--note", "rolled back to v1")
    assert code == 0 and f"resolved alert #{alert_id}" in out
    code, message, _ = run(app, "resolve", str(alert_id), "--note", "again")
    assert code == 4 and "already resolved" in message

    code, out, _ = run(app, "show", str(alert_id), "--json")
    detail = json.loads(out)
    assert [h["kind"] for h in detail["history"]] == ["firing", "acknowledged", "resolved"]
    assert detail["silenced_by"] == 1
    assert [(n["event"], n["status"]) for n in detail["notifications"]] == [
        ("firing", "unrouted"),
        ("resolved", "suppressed"),
    ]
    code, out, _ = run(app, "show", str(alert_id))
    assert code == 0 and "history" in out and "rolled back to v1" in out and "notifications" in out

    code, out, _ = run(app, "expire", "1")
    assert code == 0 and "silence #1 expired" in out
    code, out, _ = run(app, "silences")
    assert "no silences in force" in out
    code, out, _ = run(app, "silences", "--all", "--json")
    assert json.loads(out)[0]["status"] == "expired"

    code, out, _ = run(app, "groups", "--all", "--json")
    assert json.loads(out)[0]["key"] == 'mloncall:{model="iris-classifier",runbook="deployment"}'
    code, out, _ = run(app, "close", str(alert_id), "--root-cause", "bad canary", "--action", "rollback")
    assert code == 0 and "closed alert" in out
    code, out, _ = run(app, "show", str(alert_id), "--json")
    assert (json.loads(out)["state"], json.loads(out)["root_cause"]) == ("closed", "bad canary")
    code, out, _ = run(app, "channels")
    assert "no notification channels" in out


def test_the_audit_log_records_cli_changes(home: FakeMonitor, tmp_path: Path) -> None:
    from mloncall.access import audit

    (tmp_path / "rules.yaml").write_text(RULES)
    run(app, "rules", "load", str(tmp_path / "rules.yaml"))
    (tmp_path / "bad.yaml").write_text("rules: [")
    run(app, "rules", "load", str(tmp_path / "bad.yaml"))
    ctx = Context.from_settings()
    with ctx.db.session() as session:
        records = [(r.action, r.outcome) for r in audit.list_audit(session=session, action="alerts.rules")]
    ctx.close()
    assert records == [("alerts.rules.load", "error:invalid_input"), ("alerts.rules.load", "success")]


def test_prometheus_rules_command(cli_env: dict[str, str], tmp_path: Path) -> None:
    code, out, _ = run(monitor_app, "prometheus-rules")
    assert code == 0 and "MloncallHighErrorRate" in out and "mloncall_request_latency_seconds_bucket" in out
    target = tmp_path / "out" / "mloncall-rules.yml"
    code, out, _ = run(
        monitor_app, "prometheus-rules", "-o", str(target), "--max-error-rate", "0.05", "--job", "ml"
    )
    assert code == 0 and target.is_file()
    text = target.read_text()
    assert "> 0.05" in text and 'up{job="ml"}' in text
    code, message, _ = run(monitor_app, "prometheus-rules", "--max-error-rate", "5")
    assert code == 2 and "between 0 and 1" in message
    if shutil.which("promtool") is None:
        unavailable("promtool is not installed: run scripts/prometheus.sh")
    check = subprocess.run(
        ["promtool", "check", "rules", str(target)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 6 rules found" in check.stdout

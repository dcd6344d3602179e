"""Runbook 3 end to end: an alert on a healthy model served live is a false alarm, silenced and closed."""

from __future__ import annotations

import json
import time

import pytest

from mloncall.alerts import service as alerts
from mloncall.core.config import Settings
from mloncall.core.outcome import Outcome
from mloncall.demo.traffic import LocalServer, Traffic
from mloncall.stores.context import Context
from tests.alerts.conftest import FakeMonitor
from tests.helpers import run_cli
from tests.rollout.conftest import ok

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("live-server")]

RULE = "rules:\n  - {name: flaky-latency, model: iris-classifier, monitor: latency, window: 1m, for: 0s, severity: warning, runbook: monitoring}\n"


def _fire(cli_env: dict[str, str]) -> int:
    """A real alert fired by the rule engine on a monitor that flapped (the model itself is fine)."""
    ctx = Context.from_settings(Settings.load(env=cli_env))
    try:
        with ctx.db.session() as s:
            alerts.load_rules(session=s, text=RULE, origin="test", actor="test")
        alerts.evaluate_rules(ctx=ctx, monitor=FakeMonitor(default=Outcome.FAILED))
        with ctx.db.session() as s:
            (alert,) = alerts.list_alerts(session=s, state="firing")
            return alert.id
    finally:
        ctx.close()


def test_a_false_alarm_ends_with_a_silence_and_the_alert_closed(
    served: tuple[LocalServer, Traffic], cli_env: dict[str, str]
) -> None:
    _server, traffic = served
    deadline = time.monotonic() + 60
    while traffic.sent < 300 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # the workers flush their prediction logs every couple of seconds
    alert_id = _fire(cli_env)
    assert f"mloncall runbook run monitoring --alert {alert_id}" in ok(
        "alerts", "show", str(alert_id), env=cli_env
    )
    res = run_cli("runbook", "run", "monitoring", "--alert", str(alert_id), "--yes", "--json", env=cli_env)
    assert res.returncode == 0, res.stderr + res.stdout[-3000:]
    run = json.loads(res.stdout)
    steps = {s["name"]: s for s in run["steps"]}
    assert run["params"]["model"] == "iris-classifier" and run["alert_id"] == alert_id
    assert steps["decide"]["evidence"]["action"] == "silence as false alarm"
    assert steps["silence"]["state"] == "successful"
    assert {steps[n]["state"] for n in ("rollback", "retraining", "fix-by-hand")} == {"skipped"}
    (report,) = steps["inputs"]["attachments"]
    assert report["name"] == "investigation.html" and len(report["sha256"]) == 64
    assert (run["state"], run["outcome"]) == ("finished", "successful"), run["acceptance"]
    silences = json.loads(ok("alerts", "silences", "--json", env=cli_env))
    assert any(f"run #{run['id']}" in s["comment"] for s in silences)
    shown = json.loads(ok("alerts", "show", str(alert_id), "--json", env=cli_env))
    assert shown["state"] == "closed" and shown["action"].startswith("silence as false alarm")
    assert "likely false alarm" in shown["root_cause"]
    text = ok("runbook", "export", str(run["id"]), "--format", "markdown", env=cli_env)
    assert "- [x] **alert closed with resolution details**" in text and "investigation.html" in text

    for args, code, message in [
        (["runbook", "run", "monitoring", "--yes"], 2, "works on an alert"),
        (["runbook", "run", "monitoring", "--alert", "999", "--yes"], 3, "999"),
        (["runbook", "run", "nope"], 3, "no runbook 'nope'"),
        (["runbook", "run", "deployment", "--yes"], 2, "needs ref"),
        (["runbook", "run", "deployment", "iris-classifier:1", "-p", "steps=50,10"], 2, "invalid steps"),
        (["runbook", "run", "deployment", "iris-classifier:1", "-p", "steps"], 2, "invalid --param 'steps'"),
        (["runbook", "resume", str(run["id"])], 4, "nothing to resume"),
        (["runbook", "export", str(run["id"]), "--format", "pdf"], 2, "unknown format"),
    ]:
        res = run_cli(*args, env=cli_env)
        assert res.returncode == code and message in res.stderr, (args, res.returncode, res.stderr)

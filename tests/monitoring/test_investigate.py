"""`investigate` (runbook 3): the assessment table, and the command on a real alert."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mloncall.alerts import service as alerts
from mloncall.core.outcome import Check, Outcome
from mloncall.runbooks.investigate import assess, focus_on
from mloncall.stores.context import Context
from tests.alerts.conftest import FakeMonitor
from tests.helpers import run_cli

OK, BAD, UNKNOWN = Outcome.SUCCESSFUL, Outcome.FAILED, Outcome.INCONCLUSIVE


def _q(outcome: Outcome = OK, name: str = "out_of_range") -> list[Check]:
    return [Check(name, outcome, "")]


@pytest.mark.parametrize(
    ("drift", "accuracy", "quality", "service", "deploy", "share", "expected"),
    [
        (OK, OK, _q(BAD), [], False, 0.0, ("bad input data", "fix upstream data")),
        (BAD, BAD, _q(), [], True, 0.25, ("drift and degradation", "fix upstream data")),
        (BAD, BAD, _q(), [], False, 0.75, ("drift and degradation", "retrain")),
        (OK, BAD, _q(), [], True, 0.0, ("degradation without drift", "rollback")),
        (OK, BAD, _q(), [], False, 0.0, ("degradation without drift", "retrain")),
        (BAD, OK, _q(), [], True, 0.25, ("drift without degradation", "check upstream data")),
        (BAD, UNKNOWN, _q(), [], False, 0.25, ("drift without degradation", "check upstream data")),
        (
            OK,
            OK,
            _q(),
            [Check("error_rate", BAD, "")],
            True,
            0.0,
            ("service degradation after a deploy", "rollback"),
        ),
        (OK, UNKNOWN, _q(), [], False, 0.0, ("likely false alarm", "silence as false alarm")),
    ],
)
def test_assessment_table(
    drift: Outcome,
    accuracy: Outcome,
    quality: list[Check],
    service: list[Check],
    deploy: bool,
    share: float,
    expected: tuple[str, str],
) -> None:
    got = assess(
        drift=drift,
        accuracy=accuracy,
        quality=quality,
        service=service,
        recent_deploy=deploy,
        drifted_share=share,
        previous_ok=deploy,  # in these histories the version before the deploy verifies and was healthy
    )
    assert got == expected


def test_focus_on_the_production_version() -> None:
    check = Check(
        "accuracy",
        BAD,
        "v3: accuracy 0.02",
        {
            "parts": {
                "v2": {"outcome": "successful", "reason": "accuracy 0.93"},
                "v3": {"outcome": "failed", "reason": "0.02"},
            }
        },
    )
    assert focus_on(check, 2).outcome is OK and focus_on(check, 2).reason == "v2: accuracy 0.93"
    assert focus_on(check, 9) is check


def _firing_alert(ctx: Context) -> int:
    """A firing drift alert on a served model, made by the real rule engine with a monitor that says so."""
    from tests.helpers import train_iris

    train_iris(ctx)
    with ctx.db.session() as s:
        from mloncall.registry import service as registry

        registry.set_alias(session=s, name="iris-classifier", alias="production", version=1, actor="t")
        alerts.load_rules(
            session=s,
            text="rules:\n  - {name: feature-drift, model: '*', monitor: drift, window: 10m, for: 0s, severity: warning, runbook: monitoring}\n",
            origin="t",
            actor="t",
        )
    fake = FakeMonitor(default=Outcome.FAILED)
    alerts.evaluate_rules(ctx=ctx, monitor=fake)
    with ctx.db.session() as s:
        (alert,) = alerts.list_alerts(session=s, state="firing")
        return alert.id


def test_investigate_cli_reports_and_closes_the_alert(cli_env: dict[str, str], tmp_path: Path) -> None:
    from mloncall.core.config import Settings

    ctx = Context.from_settings(Settings.load())
    ctx.init()
    alert_id = _firing_alert(ctx)
    res = run_cli("investigate", str(alert_id), "--json", env=cli_env)
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    # No traffic was logged: nothing drifted, nothing degraded: the alert looks like a false alarm.
    assert found["assessment"] == "likely false alarm"
    assert found["recommendation"]["action"] == "silence as false alarm"
    assert found["alert"]["id"] == alert_id and found["closed"] is None
    report = Path(found["report"])
    assert report.is_file() and "Assessment: likely false alarm" in report.read_text()

    res = run_cli(
        "investigate",
        str(alert_id),
        "--root-cause",
        "rule too sensitive",
        "--action",
        "silenced",
        env=cli_env,
    )
    assert res.returncode == 0, res.stderr
    with ctx.db.session() as s:
        a = alerts.get_alert_or_raise(session=s, alert_id=alert_id)
        assert (a.state, a.root_cause, a.action) == ("closed", "rule too sensitive", "silenced")
    again = run_cli("investigate", str(alert_id), "--root-cause", "x", "--action", "y", env=cli_env)
    assert again.returncode == 4 and "already closed" in again.stderr
    for args, message in [
        ([], "name an alert id"),
        ([str(alert_id), "--root-cause", "x"], "both --root-cause and --action"),
        (["999"], "999"),
    ]:
        res = run_cli("investigate", *args, env=cli_env)
        assert res.returncode != 0 and message in res.stderr, (args, res.stderr)
    ctx.close()

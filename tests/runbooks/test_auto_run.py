"""`auto_run: checks`: when an alert of such a rule fires (the real evaluator on logged traffic), the
read-only checks of its runbook run once per firing and their evidence is on the alert."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from typer.testing import CliRunner

from mloncall.alerts import lifecycle, rules
from mloncall.alerts import service as alerts
from mloncall.alerts.cli import app as alerts_app
from mloncall.cli.main import app as main_app
from mloncall.core import clock, console
from mloncall.core.errors import Conflict, InvalidInput
from mloncall.data import iris
from mloncall.registry import service as registry
from mloncall.runbooks import engine, jobs, service
from mloncall.serving import service as routing
from mloncall.stores.context import Context
from tests.alerts.conftest import build_app, make_tokens
from tests.helpers import train_iris
from tests.monitoring.conftest import write_predictions

RULES = textwrap.dedent(
    """\
    rules:
      - name: bad-ranges
        model: iris-classifier
        monitor: out_of_range
        params: {max_rate: 0.1}
        window: 10m
        for: 0
        severity: warning
        runbook: data-quality
        auto_run: checks
      - name: bad-ranges-quiet
        model: iris-classifier
        monitor: out_of_range
        params: {max_rate: 0.1}
        window: 10m
        for: 0
        severity: info
        runbook: data-quality
    """
)
runner = CliRunner()


@pytest.fixture
def home(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    """An installation the CLI opens too, with iris-classifier v1 and out-of-range traffic logged now."""
    ctx = Context.from_settings()
    ctx.init()
    train_iris(ctx)
    with ctx.db.session() as s:
        registry.set_alias(
            session=s, name="iris-classifier", alias="production", version=1, actor="test", reason="serve v1"
        )
    frame = iris.iris_frame().sample(120, random_state=3).reset_index(drop=True)
    frame.loc[:59, "petal_width"] = 40.0  # half the rows far outside the training range
    now = time.time()
    write_predictions(ctx, model="iris-classifier", frame=frame, ts=now - 240 + frame.index.to_numpy())
    with ctx.db.session() as s:
        alerts.load_rules(session=s, text=RULES, origin="auto.yaml", actor="test")
    monkeypatch.setattr(console, "out", Console(width=200, soft_wrap=False))
    yield ctx
    ctx.close()


def _fire(ctx: Context) -> dict[str, int]:
    result = alerts.evaluate(ctx=ctx)
    assert {t.rule for t in result.transitions if t.to_state == "firing"} == {
        "bad-ranges",
        "bad-ranges-quiet",
    }
    return {t.rule: t.alert_id for t in result.transitions}


def _checks_events(ctx: Context, alert_id: int) -> list[Any]:
    with ctx.db.session() as s:
        return [
            e for e in alerts.get_alert_or_raise(session=s, alert_id=alert_id).events if e.kind == "checks"
        ]


def _policies(ctx: Context) -> Any:
    with ctx.db.session() as s:
        row = routing.get(session=s, name="iris-classifier")
        return None if row is None else dict(row.feature_policies)


def _invoke(app: Any, *args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_a_firing_alert_gets_its_runbooks_checks_once(home: Context) -> None:
    fired = _fire(home)
    loud, quiet = fired["bad-ranges"], fired["bad-ranges-quiet"]
    policies_before = _policies(home)

    out = _invoke(main_app, "runbook", "auto-run")
    assert f"alert #{loud}: data-quality checks" in out and f"#{quiet}" not in out

    [event] = _checks_events(home, loud)
    ev = event.evidence
    assert ev["runbook"] == "data-quality" and ev["outcome"] == "failed", event.reason
    ran = {c["step"]: c["state"] for c in ev["checks"]}
    # the problem is confirmed, validation finds the feature out of range, and the traffic it affects
    assert (ran["confirm"], ran["validate"], ran["impact"]) == ("successful", "failed", "failed")
    (validate,) = [c for c in ev["checks"] if c["step"] == "validate"]
    assert "petal_width" in validate["reason"]
    assert ran["workaround"] == ran["escalate"] == ran["validate-fix"] == "skipped"
    assert _checks_events(home, quiet) == []  # a rule without auto_run gets nothing

    with home.db.session() as s:  # a run of mode checks, finished, that nobody may resume into actions
        run = service.get_run_or_raise(session=s, run_id=ev["run"])
        assert (run.mode, run.state, run.alert_id, run.outcome) == ("checks", "finished", loud, "failed")
    assert _policies(home) == policies_before  # the workaround (an action) did not run
    with pytest.raises(Conflict, match="read-only checks"):
        engine.resumable(home, ev["run"])

    assert jobs.run_once(home) == []  # a second pass adds nothing
    assert len(_checks_events(home, loud)) == 1

    shown = _invoke(alerts_app, "show", str(loud))
    assert "runbook checks: failed" in shown and f"mloncall runbook status {ev['run']}" in shown
    with TestClient(build_app(home)) as client:
        token = make_tokens(home)["viewer"]
        body = client.get(f"/api/v1/alerts/{loud}", headers={"Authorization": f"Bearer {token}"}).json()
    [api_event] = [e for e in body["history"] if e["kind"] == "checks"]
    assert api_event["evidence"]["run"] == ev["run"]


def test_a_refiring_alert_gets_its_checks_again(home: Context) -> None:
    loud = _fire(home)["bad-ranges"]
    [first] = jobs.run_once(home)
    with home.db.session() as s:
        alert = alerts.get_alert_or_raise(session=s, alert_id=loud)
        lifecycle.resolve_now(s, alert, actor="test", at=clock.now(), reason="condition false")
        lifecycle.reopen(
            s,
            alert,
            actor="test",
            at=clock.now(),
            evidence={},
            reason="condition true",
            hold_time=rules.DEFAULT_HOLD_TIME,
        )
    [second] = jobs.run_once(home)
    assert second.alert_id == loud and second.run_id != first.run_id
    assert [e.evidence["run"] for e in _checks_events(home, loud)] == [first.run_id, second.run_id]
    assert jobs.run_once(home) == []


def test_a_runbook_that_cannot_run_from_the_alert_is_said_so(home: Context) -> None:
    with home.db.session() as s:
        alerts.load_rules(
            session=s, text=RULES.replace("runbook: data-quality\n    auto", "runbook: deployment\n    auto"),
            origin="deploy.yaml", actor="test",
        )  # fmt: skip
    loud = _fire(home)["bad-ranges"]
    [done] = jobs.run_once(home)
    assert done.run_id is None and done.outcome == "inconclusive" and "needs ref" in done.reason
    [event] = _checks_events(home, loud)
    assert event.evidence["run"] is None and jobs.run_once(home) == []


@pytest.mark.parametrize("value", ["actions", "true", "[checks]"])
def test_a_bad_auto_run_is_refused_with_its_line(value: str) -> None:
    text = RULES.replace("auto_run: checks", f"auto_run: {value}")
    with pytest.raises(InvalidInput) as refused:
        rules.parse_rules(text)
    assert "line 10: rule 'bad-ranges': bad auto_run" in refused.value.message
    assert rules.parse_rules(RULES).rules[0].auto_run == "checks"
    assert rules.parse_rules(RULES).rules[1].auto_run is None

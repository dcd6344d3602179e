"""A failed or late pipeline raises its alert through the default rules (the `pipeline` and `freshness`
monitors, judged from the runs of the pipelines feeding a served model's dataset); the failed one opens an
incident through the normal alert -> incident routing. Retraining is blocked from the run history: a failed
last run, or data older than the SLA as the runs saw it; never from the files as they are now."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import pytest

from mloncall.alerts import service as alerts
from mloncall.core import clock
from mloncall.core.outcome import Check, Outcome
from mloncall.incidents import jobs as incident_jobs
from mloncall.incidents import service as incidents
from mloncall.pipelines import downstream, service, spec
from mloncall.registry import service as registry
from mloncall.stores.context import Context
from mloncall.training import service as training
from tests.pipelines.conftest import PIPELINE, batch, drop

pytestmark = pytest.mark.slow  # trains a model and runs the pipeline four times on Dagster

MODEL = "iris-classifier"


@pytest.fixture
def served(pctx: Context) -> Iterator[Context]:
    """The Iris pipeline's declaration, and a production model trained on its dataset."""
    training.train(ctx=pctx, name=MODEL, created_by="dana")
    with pctx.db.session() as s:
        registry.set_alias(session=s, name=MODEL, alias="production", version=1, actor="dana")
    yield pctx
    clock.set_clock(None)


def _checks(ctx: Context, *, later: dt.timedelta = dt.timedelta(0)) -> dict[str, Check]:
    result = alerts.evaluate(ctx=ctx, now=clock.now() + later)
    return {c.rule: c.check for c in result.checks if c.rule in ("pipeline-failed", "source-stale")}


def _alert_state(ctx: Context, rule: str) -> str | None:
    with ctx.db.session() as s:
        found = alerts.list_alerts(session=s, rule=rule)
        return found[0].state if found else None


def _blocked(ctx: Context) -> list[str]:
    return downstream.retraining_block(ctx, dataset="iris")


def test_a_failed_run_fires_its_alert_opens_an_incident_and_resolves_once_repaired(served: Context) -> None:
    # never ran: nothing to judge, nothing blocked (even with no source file at all)
    checks = _checks(served)
    assert {k: c.outcome for k, c in checks.items()} == {
        "pipeline-failed": Outcome.INCONCLUSIVE, "source-stale": Outcome.INCONCLUSIVE,
    }  # fmt: skip
    assert _blocked(served) == []

    drop(served, batch(30).rename(columns={"sepal_width": "sepal_wdth"}))
    failed = service.run(served, PIPELINE, actor="cron")
    checks = _checks(served)
    assert checks["pipeline-failed"].outcome is Outcome.FAILED
    assert f"run #{failed} failed at stage validate (schema_mismatch)" in checks["pipeline-failed"].reason
    assert _alert_state(served, "pipeline-failed") == "pending"  # for: 10m
    assert _checks(served, later=dt.timedelta(minutes=11))["pipeline-failed"].outcome is Outcome.FAILED
    assert _alert_state(served, "pipeline-failed") == "firing"
    assert any("schema_mismatch" in r for r in _blocked(served))

    assert incident_jobs.route_alerts(served) == {"opened": 1}
    with served.db.session() as s:
        (incident,) = incidents.list_incidents(session=s)
        assert (incident.model, incident.severity) == (MODEL, "SEV2")

    drop(served, batch(30))  # the upstream restored the column
    service.run(served, PIPELINE, actor="cron")
    assert _checks(served, later=dt.timedelta(minutes=12))["pipeline-failed"].outcome is Outcome.SUCCESSFUL
    assert _alert_state(served, "pipeline-failed") == "resolved"
    assert _blocked(served) == []


def test_a_late_source_fires_source_stale_and_blocks_by_what_its_runs_saw(served: Context) -> None:
    path = drop(served, batch(30))
    three_days_ago = (clock.now() - dt.timedelta(days=3)).timestamp()
    os.utime(path, (three_days_ago, three_days_ago))
    run = service.run_read(served, service.run(served, PIPELINE, actor="cron"))
    assert run.state == "succeeded" and "late: the newest source data" in run.stages[0].log
    stale = _checks(served)["source-stale"]
    assert stale.outcome is Outcome.FAILED and "past its SLA of 24.0 h" in stale.reason
    assert _alert_state(served, "source-stale") == "firing"
    (reason,) = _blocked(served)
    assert "past its freshness SLA of 1d" in reason
    with pytest.raises(Exception, match="blocked"):
        training.refuse_if_blocked(served, model=MODEL, dataset="iris")

    # fresh data delivered and run: fine again; a file touched afterwards changes nothing, time does
    os.utime(path, None)
    service.run(served, PIPELINE, actor="cron")
    assert _checks(served)["source-stale"].outcome is Outcome.SUCCESSFUL
    os.utime(path, (three_days_ago, three_days_ago))
    assert _blocked(served) == []
    frozen = clock.FrozenClock(clock.now() + dt.timedelta(days=2))
    clock.set_clock(frozen)
    assert "past its freshness SLA" in _blocked(served)[0]
    assert spec.get(served.settings, PIPELINE).freshness == "1d"

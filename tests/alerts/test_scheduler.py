"""The alerts scheduler, and evaluation with the real monitors of the monitoring domain."""

from __future__ import annotations

import dataclasses
import importlib.util
import threading

import pytest

from mloncall.alerts import evidence, scheduler, service
from mloncall.alerts.catalog import Catalog
from mloncall.alerts.channels import Channel
from mloncall.core.errors import InvalidInput
from mloncall.core.outcome import Check, Outcome
from mloncall.stores.context import Context
from tests.alerts.conftest import ERRORS_RULES, FakeMonitor, Receiver, load
from tests.conftest import unavailable

RULES = ERRORS_RULES


def with_alerts_section(ctx: Context, section: dict[str, object]) -> Context:
    settings = dataclasses.replace(ctx.settings, sections={**ctx.settings.sections, "alerts": section})
    return dataclasses.replace(ctx, settings=settings)


def test_run_once_evaluates_and_sends(
    sctx: Context, catalog: Catalog, monitor: FakeMonitor, receiver: Receiver
) -> None:
    load(sctx, RULES, catalog)
    monitor.set("error_rate", "iris-classifier", Outcome.FAILED)
    ctx = with_alerts_section(sctx, {"channels": [{"name": "hook", "type": "webhook", "url": receiver.url}]})
    evaluation, sent = scheduler.run_once(ctx, monitor=monitor)
    assert [t.kind for t in evaluation.transitions] == ["firing"]
    assert [(s.status, s.channels) for s in sent] == [("sent", {"hook": "sent"})]
    assert receiver.bodies[0]["event"] == "firing"


def test_the_scheduler_runs_in_one_process_per_installation(
    sctx: Context, catalog: Catalog, monitor: FakeMonitor
) -> None:
    load(sctx, RULES, catalog)
    monitor.set("error_rate", "iris-classifier", Outcome.FAILED)
    evaluated = threading.Event()
    original = monitor.__call__

    def watched(**kwargs: object) -> Check:
        result = original(**kwargs)  # type: ignore[arg-type]
        evaluated.set()
        return result

    first = scheduler.Scheduler(sctx, interval=0.05, monitor=watched)
    second = scheduler.Scheduler(sctx, interval=0.05, monitor=watched)
    assert first.start() is True
    try:
        assert second.start() is False  # the lock under the home folder is taken
        assert evaluated.wait(timeout=20)
    finally:
        first.stop()
    with sctx.db.session() as session:
        assert [a.state for a in service.list_alerts(session=session)] == ["firing"]
    assert second.start() is True  # released by stop()
    second.stop()


def test_configured_interval(sctx: Context) -> None:
    interval = scheduler.Scheduler.configured_interval
    assert interval(sctx) == 60
    assert interval(with_alerts_section(sctx, {"evaluation_interval": "30s"})) == 30
    assert interval(with_alerts_section(sctx, {"evaluation_interval": 5})) == 5
    with pytest.raises(InvalidInput):
        interval(with_alerts_section(sctx, {"evaluation_interval": "often"}))
    with pytest.raises(InvalidInput):
        interval(with_alerts_section(sctx, {"evaluation_interval": 0}))


def test_value_comes_from_the_deciding_part_of_real_monitor_evidence() -> None:
    check = Check(
        "error_rate",
        Outcome.FAILED,
        "v2: error rate 7.00% > 1.00%",
        {"parts": {"v1": {"error_rate": 0.0}, "v2": {"error_rate": 0.07}}, "deciding": ["v2"]},
    )
    assert evidence.value_of(check) == 0.07
    drift = Check(
        "drift", Outcome.FAILED, "", {"versions": [{"version": 3, "drifted_share": 0.75}], "deciding": ["v3"]}
    )
    assert evidence.value_of(drift) == 0.75
    assert evidence.value_of(Check("x", Outcome.FAILED, "", {"value": float("nan")})) is None


def test_default_rules_with_the_real_monitors_on_a_model_without_logs(actx: Context) -> None:
    """The shipped rules and the monitoring domain's run_monitor together: nothing logged yet is inconclusive
    for every rule, and no alert is raised."""
    if importlib.util.find_spec("mloncall.monitoring") is None:
        unavailable("mloncall.monitoring is not built yet")
    from mloncall.registry import service as registry
    from tests.api.conftest import register_iris

    register_iris(actx, "iris-classifier")
    with actx.db.session() as session:
        registry.set_alias(
            session=session, name="iris-classifier", alias="production", version=1, actor="t", reason=""
        )
    evaluation = service.evaluate(ctx=actx)
    assert evaluation.rule_set_version == 0 and len(evaluation.checks) == 9
    outcomes = {c.rule: c.check.outcome for c in evaluation.checks}
    assert set(outcomes.values()) == {Outcome.INCONCLUSIVE}, [
        (c.rule, c.check.reason) for c in evaluation.checks
    ]
    assert evaluation.transitions == []


def test_channels_of_the_config_are_used_when_none_are_given(sctx: Context, receiver: Receiver) -> None:
    ctx = with_alerts_section(sctx, {"channels": [{"name": "hook", "type": "slack", "url": receiver.url}]})
    from mloncall.alerts.channels import channels_from_settings

    assert channels_from_settings(ctx.settings) == [Channel(name="hook", type="slack", url=receiver.url)]

"""The alert lifecycle driven by rule evaluation, on SQLite and PostgreSQL, with a frozen clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mloncall.alerts import service
from mloncall.alerts.catalog import Catalog
from mloncall.alerts.models import Alert, Notification
from mloncall.core import clock
from mloncall.core.errors import Conflict, InvalidInput, NotFound
from mloncall.core.outcome import Outcome
from mloncall.stores.context import Context
from tests.alerts.conftest import ERRORS_RULE, FakeMonitor, load

FAILED, OK, UNSURE = Outcome.FAILED, Outcome.SUCCESSFUL, Outcome.INCONCLUSIVE
IRIS = "iris-classifier"

RULES = (
    """\
hold_time: 10m
rules:
  - name: drift
    model: iris-classifier
    monitor: drift
    params: {drift_share: 0.5}
    window: 1h
    for: 15m
    severity: warning
    runbook: monitoring
    annotations:
      summary: "drift on {{ $labels.model }}: {{ $value }}"
"""
    + ERRORS_RULE
    + """\
  - name: accuracy
    model: iris-classifier
    monitor: accuracy
    window: 6h
    for: 0
    severity: critical
    runbook: monitoring
"""
)


@pytest.fixture
def rules_ctx(actx: Context, catalog: Catalog, frozen_clock: clock.FrozenClock) -> Context:
    load(actx, RULES, catalog)
    return actx


def evaluate(ctx: Context, monitor: FakeMonitor) -> list[service.Transition]:
    return service.evaluate_rules(ctx=ctx, monitor=monitor)


def alerts(ctx: Context, **filters: Any) -> list[Alert]:
    with ctx.db.session() as session:
        return list(service.list_alerts(session=session, **filters))


def only(ctx: Context, rule: str) -> Alert:
    found = alerts(ctx, rule=rule)
    assert len(found) == 1, found
    return found[0]


def kinds(transitions: list[service.Transition]) -> list[tuple[str, str]]:
    return [(t.rule, t.kind) for t in transitions]


def test_pending_turns_firing_only_after_for(
    rules_ctx: Context, monitor: FakeMonitor, frozen_clock: clock.FrozenClock
) -> None:
    monitor.set("drift", IRIS, FAILED, value=0.75)
    assert kinds(evaluate(rules_ctx, monitor)) == [("drift", "pending")]
    alert = only(rules_ctx, "drift")
    assert alert.state == "pending" and alert.fired_at is None and alert.value == 0.75
    assert alert.annotations["summary"] == "drift on iris-classifier: 0.75"
    assert monitor.calls[0]["window"] == dt.timedelta(hours=1)
    assert monitor.calls[0]["params"] == {"drift_share": 0.5}
    frozen_clock.advance(minutes=14, seconds=59)
    assert evaluate(rules_ctx, monitor) == []
    assert only(rules_ctx, "drift").state == "pending"
    frozen_clock.advance(seconds=1)
    (t,) = evaluate(rules_ctx, monitor)
    assert (t.kind, t.from_state, t.to_state, t.notify) == ("firing", "pending", "firing", "firing")
    assert "held for 15m" in t.reason
    alert = only(rules_ctx, "drift")
    assert alert.state == "firing" and alert.fired_at == frozen_clock.current
    # a firing alert stays firing while the condition holds: no new transitions, no new alerts
    frozen_clock.advance(minutes=5)
    assert evaluate(rules_ctx, monitor) == []
    monitor.set("drift", IRIS, OK)
    frozen_clock.advance(minutes=1)
    (t,) = evaluate(rules_ctx, monitor)
    assert (t.kind, t.to_state, t.notify) == ("resolved", "resolved", "resolved")
    assert only(rules_ctx, "drift").resolved_at == frozen_clock.current


def test_a_pending_alert_whose_condition_clears_never_fires(
    rules_ctx: Context, monitor: FakeMonitor, frozen_clock: clock.FrozenClock
) -> None:
    monitor.set("drift", IRIS, FAILED)
    evaluate(rules_ctx, monitor)
    frozen_clock.advance(minutes=10)
    monitor.set("drift", IRIS, OK)
    (t,) = evaluate(rules_ctx, monitor)
    assert (t.kind, t.to_state, t.notify) == ("inactive", "inactive", None)
    # it comes back: the same alert, and the `for:` clock starts again
    frozen_clock.advance(minutes=1)
    monitor.set("drift", IRIS, FAILED)
    (t,) = evaluate(rules_ctx, monitor)
    assert (t.kind, t.from_state) == ("pending", "inactive")
    frozen_clock.advance(minutes=14)
    assert evaluate(rules_ctx, monitor) == []
    frozen_clock.advance(minutes=1)
    assert kinds(evaluate(rules_ctx, monitor)) == [("drift", "firing")]
    assert len(alerts(rules_ctx, rule="drift")) == 1
    with rules_ctx.db.session() as session:
        assert not session.query(Notification).filter(Notification.event != "firing").count()


def test_for_zero_fires_at_once(rules_ctx: Context, monitor: FakeMonitor) -> None:
    monitor.set("error_rate", IRIS, FAILED)
    (t,) = evaluate(rules_ctx, monitor)
    assert (t.rule, t.kind, t.from_state, t.notify) == ("errors", "firing", None, "firing")


def test_inconclusive_never_fires_and_never_resolves(
    rules_ctx: Context, monitor: FakeMonitor, frozen_clock: clock.FrozenClock
) -> None:
    monitor.set("error_rate", IRIS, UNSURE)
    monitor.set("drift", IRIS, UNSURE)
    for _ in range(3):
        assert evaluate(rules_ctx, monitor) == []
        frozen_clock.advance(hours=1)
    assert alerts(rules_ctx) == []
    # firing, then not enough data: still firing, the latest evidence kept
    monitor.set("error_rate", IRIS, FAILED)
    evaluate(rules_ctx, monitor)
    monitor.set("error_rate", IRIS, UNSURE, value=0.1)
    frozen_clock.advance(minutes=5)
    assert evaluate(rules_ctx, monitor) == []
    alert = only(rules_ctx, "errors")
    assert alert.state == "firing" and alert.last_check["outcome"] == "inconclusive"
    assert alert.last_evaluated_at == frozen_clock.current
    # pending, then not enough data: still pending (never fires on it, however long)
    monitor.set("drift", IRIS, FAILED)
    evaluate(rules_ctx, monitor)
    monitor.set("drift", IRIS, UNSURE)
    frozen_clock.advance(hours=2)
    assert evaluate(rules_ctx, monitor) == []
    assert only(rules_ctx, "drift").state == "pending"


def test_a_crashing_monitor_is_an_error_check_that_changes_nothing(
    rules_ctx: Context, monitor: FakeMonitor
) -> None:
    monitor.set("error_rate", IRIS, FAILED)
    evaluate(rules_ctx, monitor)
    monitor.crash.add(("error_rate", IRIS))
    result = service.evaluate(ctx=rules_ctx, monitor=monitor)
    by_rule = {c.rule: c for c in result.checks}
    assert by_rule["errors"].check.outcome is Outcome.ERROR
    assert "monitor exploded" in by_rule["errors"].check.reason
    assert by_rule["drift"].check.outcome is OK  # the other rules ran
    assert result.transitions == []
    assert only(rules_ctx, "errors").state == "firing"


def test_one_alert_per_rule_and_labels(
    rules_ctx: Context, monitor: FakeMonitor, frozen_clock: clock.FrozenClock
) -> None:
    monitor.default = FAILED
    first = evaluate(rules_ctx, monitor)
    assert sorted(kinds(first)) == [("accuracy", "firing"), ("drift", "pending"), ("errors", "firing")]
    for _ in range(5):
        frozen_clock.advance(minutes=1)
        evaluate(rules_ctx, monitor)
    assert sorted(a.rule for a in alerts(rules_ctx)) == ["accuracy", "drift", "errors"]
    fingerprints = {a.fingerprint for a in alerts(rules_ctx)}
    assert len(fingerprints) == 3
    labels = service.fingerprint("errors", {"model": IRIS, "rule": "errors"})
    assert labels in fingerprints
    # severity, runbook and monitor describe the rule: editing them keeps the alert
    assert labels == service.fingerprint("errors", {"model": IRIS, "rule": "errors", "severity": "info"})
    assert labels != service.fingerprint("errors", {"model": "other", "rule": "errors"})


def test_wildcard_rules_cover_every_served_model(
    actx: Context, catalog: Catalog, monitor: FakeMonitor, frozen_clock: clock.FrozenClock
) -> None:
    from mloncall.registry import service as registry
    from tests.api.conftest import register_iris

    for name in ("iris-a", "iris-b", "iris-c"):
        register_iris(actx, name)
    with actx.db.session() as session:
        for name in ("iris-a", "iris-b"):
            registry.set_alias(
                session=session, name=name, alias="production", version=1, actor="t", reason=""
            )
        assert service.served_models(session=session) == ["iris-a", "iris-b"]
    load(actx, RULES.replace("model: iris-classifier", 'model: "*"'), catalog)
    monitor.set("error_rate", "iris-a", FAILED)
    transitions = evaluate(actx, monitor)
    assert [(t.rule, t.model, t.kind) for t in transitions] == [("errors", "iris-a", "firing")]
    assert {c["model"] for c in monitor.calls} == {"iris-a", "iris-b"}


def test_groups_by_model_and_runbook(rules_ctx: Context, monitor: FakeMonitor) -> None:
    monitor.default = FAILED
    evaluate(rules_ctx, monitor)
    with rules_ctx.db.session() as session:
        groups = {
            g.key: sorted(a.rule for a in members) for g, members in service.list_groups(session=session)
        }
    assert groups == {
        'mloncall:{model="iris-classifier",runbook="monitoring"}': ["accuracy", "drift"],
        'mloncall:{model="iris-classifier",runbook="deployment"}': ["errors"],
    }


def test_group_by_is_configurable(actx: Context, catalog: Catalog, monitor: FakeMonitor) -> None:
    load(actx, "group_by: [model]\n" + RULES.replace("hold_time: 10m\n", ""), catalog)
    monitor.default = FAILED
    evaluate(actx, monitor)
    with actx.db.session() as session:
        ((group, members),) = service.list_groups(session=session)
        assert group.key == 'mloncall:{model="iris-classifier"}' and len(members) == 3
        assert service.group_state(members) == "firing"


def test_acknowledge(rules_ctx: Context, monitor: FakeMonitor) -> None:
    monitor.set("error_rate", IRIS, FAILED)
    evaluate(rules_ctx, monitor)
    alert_id = only(rules_ctx, "errors").id
    with rules_ctx.db.session() as session:
        alert, t = service.acknowledge(session=session, alert_id=alert_id, actor="alice", reason="looking")
        assert t is not None and t.kind == "acknowledged" and alert.state == "firing"
        _, again = service.acknowledge(session=session, alert_id=alert_id, actor="bob")
        assert again is None  # the first acknowledgement stays
    alert = only(rules_ctx, "errors")
    assert alert.acknowledged_by == "alice" and alert.acknowledged
    with pytest.raises(NotFound), rules_ctx.db.session() as session:
        service.acknowledge(session=session, alert_id=999, actor="alice")
    monitor.set("error_rate", IRIS, OK)
    evaluate(rules_ctx, monitor)
    with pytest.raises(Conflict, match="resolved"), rules_ctx.db.session() as session:
        service.acknowledge(session=session, alert_id=alert_id, actor="alice")


def test_silences_mute_notifications_but_not_state_and_expire(
    rules_ctx: Context, monitor: FakeMonitor, frozen_clock: clock.FrozenClock
) -> None:
    with rules_ctx.db.session() as session:
        silence = service.create_silence(
            session=session, matchers=[f"model={IRIS}", "rule=~err.*"], duration=dt.timedelta(hours=2),
            comment="deploy window", actor="alice",
        )  # fmt: skip
        silence_id = silence.id
    monitor.set("error_rate", IRIS, FAILED)
    monitor.set("accuracy", IRIS, FAILED)
    by_rule = {t.rule: t for t in evaluate(rules_ctx, monitor)}
    assert by_rule["errors"].to_state == "firing" and by_rule["errors"].silenced_by == silence_id
    assert by_rule["accuracy"].silenced_by is None  # the matchers do not match it
    with rules_ctx.db.session() as session:
        statuses = {n.alert.rule: n.status for n in session.query(Notification)}
        assert statuses == {"errors": "suppressed", "accuracy": "pending"}
        errors = service.list_alerts(session=session, rule="errors")[0]
        assert service.silenced_by(session=session, alert=errors) is not None
        assert errors.events[-1].silence_id == silence_id
    # after expiry the silence no longer applies: the resolve notification goes out
    frozen_clock.advance(hours=2)
    monitor.set("error_rate", IRIS, OK)
    (t,) = [t for t in evaluate(rules_ctx, monitor) if t.rule == "errors"]
    assert t.kind == "resolved" and t.silenced_by is None
    with rules_ctx.db.session() as session:
        assert service.list_silences(session=session) == []
        (listed,) = service.list_silences(session=session, include_expired=True)
        assert service.silence_status(listed) == "expired"


def test_expiring_a_silence_by_hand(
    rules_ctx: Context, monitor: FakeMonitor, frozen_clock: clock.FrozenClock
) -> None:
    with rules_ctx.db.session() as session:
        silence = service.create_silence(
            session=session,
            matchers=["severity=critical"],
            duration=dt.timedelta(days=1),
            comment="c",
            actor="a",
        )
    frozen_clock.advance(minutes=1)
    with rules_ctx.db.session() as session:
        expired = service.expire_silence(session=session, silence_id=silence.id, actor="bob")
        assert expired.ends_at == frozen_clock.current and expired.expired_by == "bob"
        assert service.silence_status(expired) == "expired"
    monitor.set("error_rate", IRIS, FAILED)
    (t,) = evaluate(rules_ctx, monitor)
    assert t.silenced_by is None


@pytest.mark.parametrize(
    ("matchers", "reason"),
    [
        ([], "at least one matcher"),
        (["model"], "bad matcher"),
        (["model=~(oops"], "bad matcher regex"),
        (["model!=iris"], "would mute every alert"),
        (["model=~.*"], "would mute every alert"),
    ],
)
def test_bad_silences_are_refused(actx: Context, matchers: list[str], reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason), actx.db.session() as session:
        service.create_silence(
            session=session, matchers=matchers, duration=dt.timedelta(hours=1), comment="c", actor="a"
        )


def test_matchers() -> None:
    m = service.Matcher.parse('model = "iris"')
    assert (m.name, m.op, m.value) == ("model", "=", "iris")
    assert m.matches({"model": "iris"}) and not m.matches({"model": "iris2"})
    assert service.Matcher.parse("model!=iris").matches({})
    assert service.Matcher.parse("rule=~dri.*").matches({"rule": "drift"})
    assert not service.Matcher.parse("rule=~dri").matches({"rule": "drift"})  # the whole value
    assert service.Matcher.parse("rule!~dri.*").matches({"rule": "errors"})


def test_flapping_reopens_within_the_hold_time_and_starts_anew_after(
    rules_ctx: Context, monitor: FakeMonitor, frozen_clock: clock.FrozenClock
) -> None:
    monitor.set("error_rate", IRIS, FAILED)
    evaluate(rules_ctx, monitor)
    first = only(rules_ctx, "errors")
    with rules_ctx.db.session() as session:
        service.acknowledge(session=session, alert_id=first.id, actor="alice")
    monitor.set("error_rate", IRIS, OK)
    frozen_clock.advance(minutes=1)
    evaluate(rules_ctx, monitor)
    # fires again 9m59s after it resolved: the same alert re-opens, straight to firing
    frozen_clock.advance(minutes=9, seconds=59)
    monitor.set("error_rate", IRIS, FAILED)
    (t,) = evaluate(rules_ctx, monitor)
    assert (t.kind, t.alert_id, t.from_state, t.to_state, t.notify) == (
        "reopened",
        first.id,
        "resolved",
        "firing",
        "reopened",
    )
    assert "within the hold time of 10m" in t.reason
    again = only(rules_ctx, "errors")
    assert again.reopen_count == 1 and again.resolved_at is None
    assert again.acknowledged_by is None  # the acknowledgement was for the episode that ended
    # resolves, and fires again after the hold time: a new alert, the old one keeps its history
    monitor.set("error_rate", IRIS, OK)
    frozen_clock.advance(minutes=1)
    evaluate(rules_ctx, monitor)
    frozen_clock.advance(minutes=10, seconds=1)
    monitor.set("error_rate", IRIS, FAILED)
    (t,) = evaluate(rules_ctx, monitor)
    assert t.kind == "firing" and t.alert_id != first.id
    both = alerts(rules_ctx, rule="errors")
    assert [a.state for a in both] == ["firing", "resolved"]
    assert both[0].fingerprint == both[1].fingerprint
    assert both[1].current_key is None and both[0].current_key == both[0].fingerprint


def test_history_records_every_transition_with_actor_reason_and_evidence(
    rules_ctx: Context, monitor: FakeMonitor, frozen_clock: clock.FrozenClock
) -> None:
    monitor.set("drift", IRIS, FAILED, value=0.8)
    evaluate(rules_ctx, monitor)
    frozen_clock.advance(minutes=15)
    evaluate(rules_ctx, monitor)
    alert_id = only(rules_ctx, "drift").id
    with rules_ctx.db.session() as session:
        service.acknowledge(session=session, alert_id=alert_id, actor="alice", reason="on it")
    frozen_clock.advance(minutes=1)
    monitor.set("drift", IRIS, OK, value=0.1)
    evaluate(rules_ctx, monitor)
    with rules_ctx.db.session() as session:
        events = service.history(session=session, alert_id=alert_id)
        assert [(e.kind, e.from_state, e.to_state, e.actor) for e in events] == [
            ("pending", None, "pending", "evaluator"),
            ("firing", "pending", "firing", "evaluator"),
            ("acknowledged", "firing", "firing", "alice"),
            ("resolved", "firing", "resolved", "evaluator"),
        ]
        start = clock.FrozenClock().current
        assert [e.at - start for e in events] == [
            dt.timedelta(0), dt.timedelta(minutes=15), dt.timedelta(minutes=15), dt.timedelta(minutes=16)
        ]  # fmt: skip
        assert events[1].evidence["outcome"] == "failed" and events[1].evidence["evidence"]["value"] == 0.8
        assert events[3].evidence["evidence"]["value"] == 0.1
        assert events[2].reason == "on it"


def test_resolve_by_hand_then_the_monitor_still_fails_reopens(
    rules_ctx: Context, monitor: FakeMonitor, frozen_clock: clock.FrozenClock
) -> None:
    monitor.set("error_rate", IRIS, FAILED)
    evaluate(rules_ctx, monitor)
    alert_id = only(rules_ctx, "errors").id
    with pytest.raises(InvalidInput, match="note"), rules_ctx.db.session() as session:
        service.resolve(session=session, alert_id=alert_id, note=" ", actor="alice")
    with rules_ctx.db.session() as session:
        alert, t = service.resolve(
            session=session, alert_id=alert_id, note="restarted the pods", actor="alice"
        )
        assert (t.kind, t.notify, alert.resolution_note) == ("resolved", "resolved", "restarted the pods")
    with pytest.raises(Conflict), rules_ctx.db.session() as session:
        service.resolve(session=session, alert_id=alert_id, note="again", actor="alice")
    frozen_clock.advance(minutes=1)
    (t,) = evaluate(rules_ctx, monitor)
    assert (t.kind, t.alert_id) == ("reopened", alert_id)


def test_close_stores_the_investigation_and_never_reopens(
    rules_ctx: Context, monitor: FakeMonitor, frozen_clock: clock.FrozenClock
) -> None:
    monitor.set("error_rate", IRIS, FAILED)
    evaluate(rules_ctx, monitor)
    alert_id = only(rules_ctx, "errors").id
    with pytest.raises(InvalidInput, match="root_cause and action"), rules_ctx.db.session() as session:
        service.close(session=session, alert_id=alert_id, root_cause="", action="", note="", actor="alice")
    with rules_ctx.db.session() as session:
        closed = service.close(
            session=session, alert_id=alert_id, root_cause="bad canary v3", action="rollback", note="v2 is back",
            actor="alice",
        )  # fmt: skip
        assert (
            closed.state == "closed"
            and closed.closed_by == "alice"
            and closed.closed_at == frozen_clock.current
        )
        assert (closed.root_cause, closed.action, closed.resolution_note) == (
            "bad canary v3",
            "rollback",
            "v2 is back",
        )
        assert closed.events[-1].kind == "closed" and closed.notifications[-1].event == "resolved"
    with pytest.raises(Conflict, match="already closed"), rules_ctx.db.session() as session:
        service.close(session=session, alert_id=alert_id, root_cause="x", action="y", note="", actor="bob")
    frozen_clock.advance(minutes=1)
    (t,) = evaluate(rules_ctx, monitor)  # still failing: a new alert, not the closed one
    assert t.kind == "firing" and t.alert_id != alert_id


def test_alerts_of_a_removed_rule_resolve(
    rules_ctx: Context, catalog: Catalog, monitor: FakeMonitor, frozen_clock: clock.FrozenClock
) -> None:
    monitor.default = FAILED
    evaluate(rules_ctx, monitor)
    load(rules_ctx, RULES.split("  - name: errors")[0], catalog)  # only the drift rule is left
    frozen_clock.advance(minutes=1)
    transitions = evaluate(rules_ctx, monitor)
    assert sorted((t.rule, t.kind) for t in transitions) == [("accuracy", "resolved"), ("errors", "resolved")]
    assert "no longer in the active rule set" in transitions[0].reason
    assert only(rules_ctx, "drift").state == "pending"


def test_list_filters(rules_ctx: Context, monitor: FakeMonitor) -> None:
    monitor.default = FAILED
    evaluate(rules_ctx, monitor)
    assert {a.rule for a in alerts(rules_ctx, state="firing")} == {"errors", "accuracy"}
    assert {a.rule for a in alerts(rules_ctx, state="open")} == {"errors", "accuracy", "drift"}
    assert alerts(rules_ctx, model="other") == []
    with pytest.raises(InvalidInput, match="unknown state"):
        alerts(rules_ctx, state="burning")

"""Evaluating the rules: run each rule's monitor on every model it covers and apply the verdict to the rule's
alert on that model (pending -> firing once the condition held for `for:`, resolved when it clears, a
resolved alert that fires again within the hold time re-opened).

`evaluate` runs one unit of work per rule and model, so one broken monitor or a lost race never undoes the
others; everything else takes a session and never commits.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from mloncall.alerts import lifecycle, templates
from mloncall.alerts.catalog import MonitorCatalog
from mloncall.alerts.evidence import check_dict, value_of
from mloncall.alerts.lifecycle import AlertFacts, Transition
from mloncall.alerts.models import Alert
from mloncall.alerts.rules import Rule
from mloncall.alerts.rulesets import Policy, active_rules
from mloncall.alerts.states import OPEN_STATES, AlertSource, AlertState, EventKind, NotifyEvent
from mloncall.core import clock
from mloncall.core.durations import format_duration
from mloncall.core.errors import MloncallError
from mloncall.core.outcome import Check, Outcome
from mloncall.core.records import Record
from mloncall.monitoring import service as monitoring
from mloncall.scaling import service as scaling
from mloncall.stores.context import Context

log = logging.getLogger("mloncall.alerts")

EVALUATOR = "evaluator"


class MonitorFn(Protocol):
    """`mloncall.monitoring.service.run_monitor`: FAILED = the condition holds."""

    def __call__(
        self,
        *,
        ctx: Context,
        kind: str,
        model: str,
        window: dt.timedelta,
        params: dict[str, Any],
        now: dt.datetime | None = None,
    ) -> Check: ...


def default_monitor() -> MonitorFn:
    """The monitoring domain's `run_monitor` (tests pass their own `monitor` to `evaluate` instead)."""
    fn: MonitorFn = monitoring.run_monitor
    return fn


def served_models(*, session: Session) -> list[str]:
    """Models in service: those with a routing row (when serving is installed) or a `production` alias."""
    from mloncall.registry.models import Alias, Model

    names = set(
        session.scalars(
            sa.select(Model.name).join(Alias, Alias.model_id == Model.id).where(Alias.name == "production")
        )
    )
    try:
        from mloncall.serving.models import Routing
    except ImportError:  # serving is optional here
        return sorted(names)
    if sa.inspect(session.connection()).has_table(Routing.__tablename__):
        names.update(session.scalars(sa.select(Routing.model_name)))
    return sorted(names)


# --- one verdict on one alert ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    """One check of a rule on one model, as the alert it drives records it."""

    rule: Rule
    facts: AlertFacts
    evidence: dict[str, Any]
    value: float | None
    reason: str
    at: dt.datetime
    actor: str

    @classmethod
    def of(cls, rule: Rule, model: str, check: Check, at: dt.datetime, actor: str) -> _Verdict:
        labels = rule.alert_labels(model)
        value = value_of(check)
        annotations = {
            k: templates.render(v, labels=labels, value=value, evidence=check.evidence or {})
            for k, v in rule.annotations.items()
        }
        facts = AlertFacts(
            fingerprint=lifecycle.fingerprint(rule.name, labels),
            source=AlertSource.MLONCALL,
            rule=rule.name,
            model=model,
            severity=rule.severity,
            runbook=rule.runbook,
            labels=labels,
            annotations=annotations,
        )
        reason = check.reason or check.outcome.label
        return cls(rule, facts, check_dict(check), value, reason, at, actor)

    def observe(self, alert: Alert) -> None:
        """Keep the latest check and description on the alert."""
        self.facts.describe(alert)
        alert.last_check = self.evidence
        alert.last_evaluated_at = self.at
        alert.value = self.value

    def record_change(
        self,
        session: Session,
        alert: Alert,
        *,
        kind: str,
        before: str | None,
        reason: str,
        notify: str | None,
    ) -> Transition:
        return lifecycle.record(
            session, alert, kind=kind, from_state=before, actor=self.actor, at=self.at, evidence=self.evidence,
            reason=f"{reason}: {self.reason}", notify=notify,
        )  # fmt: skip


def apply_check(
    *,
    session: Session,
    rule: Rule,
    model: str,
    check: Check,
    policy: Policy,
    at: dt.datetime | None = None,
    actor: str = EVALUATOR,
) -> Transition | None:
    """Drive one rule's alert on one model with a monitor's verdict; the transition taken, if any.

    FAILED: the condition holds (new alert pending, or firing once it held for `for:`; a resolved alert
    within the hold time re-opens). SUCCESSFUL: pending -> inactive, firing -> resolved. INCONCLUSIVE or
    ERROR: nothing changes (the evidence is kept on an open alert); not enough data never fires or resolves.
    """
    verdict = _Verdict.of(rule, model, check, at or clock.now(), actor)
    alert = lifecycle.current_alert(session=session, fingerprint=verdict.facts.fingerprint)
    if alert is not None and alert.state in OPEN_STATES:
        verdict.observe(alert)
    if check.outcome is Outcome.FAILED:
        return _condition_holds(session, alert, verdict, policy)
    if check.outcome is Outcome.SUCCESSFUL and alert is not None:
        return _condition_cleared(session, alert, verdict)
    return None


def _condition_holds(
    session: Session, alert: Alert | None, verdict: _Verdict, policy: Policy
) -> Transition | None:
    at = verdict.at
    if (
        alert is None
        or alert.state == AlertState.CLOSED
        or (alert.state == AlertState.RESOLVED and not lifecycle.within_hold(alert, at, policy.hold_time))
    ):
        return _open(session, alert, verdict, policy)
    if alert.state == AlertState.INACTIVE or (alert.state == AlertState.RESOLVED and alert.fired_at is None):
        return _hold_again(session, alert, verdict)
    if alert.state == AlertState.RESOLVED:
        return lifecycle.reopen(
            session, alert, actor=verdict.actor, at=at, evidence=verdict.evidence, reason=verdict.reason,
            hold_time=policy.hold_time, observe=verdict.observe,
        )  # fmt: skip
    if alert.state == AlertState.PENDING:
        return _fire_if_held(session, alert, verdict)
    return None


def _open(session: Session, previous: Alert | None, verdict: _Verdict, policy: Policy) -> Transition:
    """A new alert: firing at once with `for: 0`, else pending."""
    labels = verdict.facts.labels
    group = lifecycle.ensure_group(
        session,
        key=lifecycle.group_key(labels, policy.group_by),
        source=AlertSource.MLONCALL,
        labels={k: labels.get(k, "") for k in policy.group_by},
        at=verdict.at,
    )
    fires_now = verdict.rule.for_ <= dt.timedelta(0)
    state = AlertState.FIRING if fires_now else AlertState.PENDING
    alert = lifecycle.new_alert(
        session, previous=previous, facts=verdict.facts, group=group, state=state, at=verdict.at
    )
    verdict.observe(alert)
    if fires_now:
        return verdict.record_change(
            session, alert, kind=EventKind.FIRING, before=None, reason="condition true (for: 0)",
            notify=NotifyEvent.FIRING,
        )  # fmt: skip
    return verdict.record_change(
        session, alert, kind=EventKind.PENDING, before=None, notify=None,
        reason=f"condition true, firing if it holds for {format_duration(verdict.rule.for_)}",
    )  # fmt: skip


def _hold_again(session: Session, alert: Alert, verdict: _Verdict) -> Transition:
    """An inactive alert (or a resolved one that never fired) whose condition holds again."""
    verdict.observe(alert)
    alert.active_since = verdict.at
    alert.resolved_at = None
    if verdict.rule.for_ <= dt.timedelta(0):
        before = lifecycle.move(alert, AlertState.FIRING)
        alert.fired_at = verdict.at
        return verdict.record_change(
            session, alert, kind=EventKind.FIRING, before=before, reason="condition true again (for: 0)",
            notify=NotifyEvent.FIRING,
        )  # fmt: skip
    before = lifecycle.move(alert, AlertState.PENDING)
    return verdict.record_change(
        session, alert, kind=EventKind.PENDING, before=before, notify=None,
        reason=f"condition true again, firing if it holds for {format_duration(verdict.rule.for_)}",
    )  # fmt: skip


def _fire_if_held(session: Session, alert: Alert, verdict: _Verdict) -> Transition | None:
    """A pending alert fires once its condition held for `for:`."""
    held = verdict.at - alert.active_since
    if held < verdict.rule.for_:
        return None
    lifecycle.move(alert, AlertState.FIRING)
    alert.fired_at = verdict.at
    return verdict.record_change(
        session, alert, kind=EventKind.FIRING, before=AlertState.PENDING, notify=NotifyEvent.FIRING,
        reason=f"condition held for {format_duration(held)} (for: {format_duration(verdict.rule.for_)})",
    )  # fmt: skip


def _condition_cleared(session: Session, alert: Alert, verdict: _Verdict) -> Transition | None:
    """Pending -> inactive (nobody was told), firing -> resolved."""
    if alert.state == AlertState.PENDING:
        lifecycle.move(alert, AlertState.INACTIVE)
        return verdict.record_change(
            session, alert, kind=EventKind.INACTIVE, before=AlertState.PENDING, notify=None,
            reason=f"condition cleared after {format_duration(verdict.at - alert.active_since)}, before "
            f"for: {format_duration(verdict.rule.for_)}; nobody was told",
        )  # fmt: skip
    if alert.state == AlertState.FIRING:
        return lifecycle.resolve_now(
            session, alert, actor=verdict.actor, at=verdict.at, evidence=verdict.evidence,
            reason=f"condition no longer true: {verdict.reason}",
        )  # fmt: skip
    return None


def resolve_orphans(
    *,
    session: Session,
    evaluated: set[str],
    rule_names: set[str],
    at: dt.datetime | None = None,
    actor: str = EVALUATOR,
) -> list[Transition]:
    """Resolve open mloncall alerts that no rule evaluates any more (the rule was removed or the model is no
    longer served), so nothing stays firing forever."""
    at = at or clock.now()
    stale = session.scalars(
        sa.select(Alert).where(
            Alert.source == AlertSource.MLONCALL, Alert.state.in_(OPEN_STATES), Alert.current_key.is_not(None)
        )
    ).all()
    taken = []
    for alert in stale:
        if alert.fingerprint in evaluated:
            continue
        why = (
            f"rule {alert.rule!r} is no longer in the active rule set"
            if alert.rule not in rule_names
            else f"model {alert.model!r} is no longer served"
        )
        if alert.state == AlertState.PENDING:
            before = lifecycle.move(alert, AlertState.INACTIVE)
            taken.append(
                lifecycle.record(
                    session, alert, kind=EventKind.INACTIVE, from_state=before, actor=actor, at=at, reason=why
                )
            )
        else:
            taken.append(lifecycle.resolve_now(session, alert, actor=actor, at=at, reason=why))
        alert.current_key = None  # not re-opened by a rule that may come back under the same name
    return taken


# --- a pass over the rules -------------------------------------------------------------------------------


@dataclass
class RuleCheck(Record):
    """One rule judged on one model."""

    rule: str
    model: str
    monitor: str
    check: Check
    transition: Transition | None = None


@dataclass
class Evaluation:
    """What one pass over the rules judged and changed."""

    at: dt.datetime
    rule_set_version: int
    checks: list[RuleCheck] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "rule_set_version": self.rule_set_version,
            "checks": [c.to_dict() for c in self.checks],
            "transitions": [t.to_dict() for t in self.transitions],
        }


def _run_monitor(monitor: MonitorFn, ctx: Context, rule: Rule, model: str, at: dt.datetime) -> Check:
    name = f"{rule.name}:{model}"
    if rule.monitor == scaling.BURN_MONITOR:  # an SLO's burn-rate rule: the scaling domain measures it
        monitor = scaling.burn_check
    try:
        check = monitor(
            ctx=ctx, kind=rule.monitor, model=model, window=rule.window, params=rule.params, now=at
        )
    except MloncallError as exc:
        return Check(name=name, outcome=Outcome.ERROR, reason=f"monitor {rule.monitor} failed: {exc.message}")
    except Exception as exc:  # a broken monitor is an ERROR outcome, never a crashed evaluator
        log.exception("monitor %s on %s failed", rule.monitor, model)
        return Check(
            name=name,
            outcome=Outcome.ERROR,
            reason=f"monitor {rule.monitor} crashed: {type(exc).__name__}: {exc}",
        )
    if not isinstance(check, Check) or not isinstance(check.outcome, Outcome):
        return Check(
            name=name, outcome=Outcome.ERROR, reason=f"monitor {rule.monitor} returned {check!r}, not a Check"
        )
    return check


def _apply_in_own_unit(
    ctx: Context, item: RuleCheck, rule: Rule, policy: Policy, at: dt.datetime, actor: str
) -> bool:
    """Apply one check in its own unit of work; False if it did not take (the next pass sees the result)."""
    try:
        with ctx.db.session() as session:
            item.transition = apply_check(
                session=session,
                rule=rule,
                model=item.model,
                check=item.check,
                policy=policy,
                at=at,
                actor=actor,
            )
    except SAIntegrityError:  # another evaluator took this step first; the next pass sees its result
        log.info("rule %s on %s: another evaluator changed the alert first", rule.name, item.model)
        return False
    except MloncallError as exc:
        log.warning("rule %s on %s: %s", rule.name, item.model, exc.message)
        return False
    return True


def _slo_rules(session: Session, ctx: Context) -> list[Rule]:
    """The SLOs' burn-rate rules; none (and a warning) when an SLO of the toml file is refused."""
    try:
        return [Rule.from_dict(d) for d in scaling.alert_rules(session=session, settings=ctx.settings)]
    except MloncallError as exc:
        log.warning("SLO burn-rate rules not evaluated: %s", exc.message)
        return []


def evaluate(
    *,
    ctx: Context,
    now: dt.datetime | None = None,
    monitor: MonitorFn | None = None,
    actor: str = EVALUATOR,
    catalog: MonitorCatalog | None = None,
) -> Evaluation:
    """Evaluate every rule on every model it covers, drive the lifecycle, queue notifications."""
    at = now or clock.now()
    with ctx.db.session() as session:
        active = active_rules(session=session, catalog=catalog)
        models = served_models(session=session)
        slo_rules = _slo_rules(session, ctx)
    policy = Policy.of(active.rules)
    rules = [*active.rules.rules, *slo_rules]
    run = monitor if monitor is not None else (default_monitor() if rules else None)
    result = Evaluation(at=at, rule_set_version=active.version)
    evaluated: set[str] = set()
    complete = True
    for rule in rules:
        for model in models if rule.model == "*" else [rule.model]:
            assert run is not None
            item = RuleCheck(
                rule=rule.name,
                model=model,
                monitor=rule.monitor,
                check=_run_monitor(run, ctx, rule, model, at),
            )
            evaluated.add(lifecycle.fingerprint(rule.name, rule.alert_labels(model)))
            complete = _apply_in_own_unit(ctx, item, rule, policy, at, actor) and complete
            result.checks.append(item)
            if item.transition is not None:
                result.transitions.append(item.transition)
    if complete:
        with ctx.db.session() as session:
            result.transitions.extend(
                resolve_orphans(
                    session=session,
                    evaluated=evaluated,
                    rule_names={r.name for r in rules},
                    at=at,
                    actor=actor,
                )
            )
    return result


def evaluate_rules(
    *, ctx: Context, now: dt.datetime | None = None, monitor: MonitorFn | None = None
) -> list[Transition]:
    """Evaluate every rule once; the transitions taken (see `evaluate` for the checks too)."""
    return evaluate(ctx=ctx, now=now, monitor=monitor).transitions

"""The alert lifecycle: rule sets, evaluating rules with the monitors, alerts from pending to closed,
dedup by fingerprint, groups, acknowledgements, silences, flapping protection and the history of it all.

States: `pending` (the condition holds, not yet for `for:`) -> `firing` -> `resolved`; a pending alert whose
condition clears before it fires becomes `inactive` (nobody was told); `closed` is the end of an
investigation (root cause, action, note). A resolved alert that fires again within the hold time is
re-opened (the same alert, straight back to `firing`); later, or after it was closed, a new alert starts.

Functions take keyword arguments and a session, flush and never commit, except `evaluate`, which runs one
unit of work per rule and model so one broken monitor or a lost race never undoes the others.
Notifications are queued here (the outbox, `Notification`) in the same unit of work as the transition and
sent by `mloncall.alerts.notify.send_pending` after it commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session, selectinload

from mloncall.alerts import rules as rules_mod
from mloncall.alerts.models import (
    ALERT_STATES,
    OPEN_STATES,
    Alert,
    AlertEvent,
    AlertGroup,
    Notification,
    RuleSet,
    Silence,
)
from mloncall.alerts.rules import Rule, RuleFile
from mloncall.core import clock
from mloncall.core.durations import format_duration, parse_duration
from mloncall.core.errors import Conflict, InvalidInput, MloncallError, NotFound
from mloncall.core.outcome import Check, Outcome
from mloncall.stores.context import Context

log = logging.getLogger("mloncall.alerts")

#: Severities an alert may carry (a rule uses the first, third and fourth; PagerDuty adds `error`).
ALERT_SEVERITIES = ("critical", "error", "warning", "info")
#: Events that notify: an alert starts firing, resolves, or is re-opened within the hold time.
NOTIFY_EVENTS = ("firing", "resolved", "reopened")
EVALUATOR = "evaluator"
_MAX_TEXT = 4000


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
    """The monitoring domain's `run_monitor`, imported when first needed."""
    module = importlib.import_module("mloncall.monitoring.service")
    fn: MonitorFn = module.run_monitor
    return fn


# --- rule sets -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveRules:
    """The rule set in force: the newest loaded file, or the built-in defaults (version 0) before any."""

    rules: RuleFile
    version: int
    sha256: str
    origin: str
    loaded_at: dt.datetime | None
    loaded_by: str | None


def _latest_rule_set(session: Session) -> RuleSet | None:
    return session.scalars(sa.select(RuleSet).order_by(RuleSet.version.desc()).limit(1)).one_or_none()


def default_rules(catalog: rules_mod.MonitorCatalog | None = None) -> RuleFile:
    """The rules that ship with mloncall, validated."""
    text = rules_mod.default_rules_text()
    parsed = rules_mod.parse_rules(text, origin=f"{rules_mod.DEFAULT_RULES_FILE} (built in)", catalog=catalog)
    return RuleFile(
        rules=parsed.rules,
        group_by=parsed.group_by,
        hold_time=parsed.hold_time,
        sha256=rules_mod.sha256_of(text),
    )


def active_rules(*, session: Session, catalog: rules_mod.MonitorCatalog | None = None) -> ActiveRules:
    """The rule set in force."""
    row = _latest_rule_set(session)
    if row is None:
        defaults = default_rules(catalog)
        return ActiveRules(
            rules=defaults,
            version=0,
            sha256=defaults.sha256,
            origin=f"{rules_mod.DEFAULT_RULES_FILE} (built in)",
            loaded_at=None,
            loaded_by=None,
        )
    return ActiveRules(
        rules=RuleFile.from_dict(row.spec, sha256=row.sha256),
        version=row.version,
        sha256=row.sha256,
        origin=row.origin,
        loaded_at=row.loaded_at,
        loaded_by=row.loaded_by,
    )


def load_rules(
    *,
    session: Session,
    text: str,
    origin: str,
    actor: str,
    catalog: rules_mod.MonitorCatalog | None = None,
) -> tuple[ActiveRules, bool]:
    """Validate a rules file and make it the active set; False if it is the active set already.

    A file with any error is refused whole (InvalidInput with every line and reason) and the active set stays.
    """
    parsed = rules_mod.parse_rules(text, origin=origin, catalog=catalog)
    digest = rules_mod.sha256_of(text)
    latest = _latest_rule_set(session)
    if latest is not None and latest.sha256 == digest:
        return active_rules(session=session, catalog=catalog), False
    row = RuleSet(
        version=(latest.version if latest is not None else 0) + 1,
        sha256=digest,
        origin=origin[:512],
        source=text,
        spec=parsed.to_dict(),
        loaded_at=clock.now(),
        loaded_by=actor,
    )
    session.add(row)
    session.flush()
    return active_rules(session=session, catalog=catalog), True


def list_rule_sets(*, session: Session) -> Sequence[RuleSet]:
    """Every loaded rule set, newest first."""
    return session.scalars(sa.select(RuleSet).order_by(RuleSet.version.desc())).all()


# --- what is evaluated -----------------------------------------------------------------------------------


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


def fingerprint(rule: str, labels: dict[str, Any]) -> str:
    """The identity of an alert: its rule and its identifying labels (not severity, runbook or monitor, which
    describe the rule and may be edited without starting a new alert)."""
    identity = {
        k: str(v) for k, v in labels.items() if k not in ("severity", "runbook", "monitor", "alertname")
    }
    blob = json.dumps({"rule": rule, "labels": sorted(identity.items())}, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def group_key(labels: dict[str, Any], group_by: Sequence[str], source: str = "mloncall") -> str:
    """`mloncall:{model="iris",runbook="monitoring"}`: the key of the group an alert belongs to."""
    inner = ",".join(f'{name}="{labels.get(name, "")}"' for name in group_by)
    return f"{source}:{{{inner}}}"


# --- the lifecycle ---------------------------------------------------------------------------------------


@dataclass
class Transition:
    """One change of an alert, as returned by evaluation and the inbound receivers."""

    alert_id: int
    rule: str
    model: str | None
    fingerprint: str
    kind: str
    from_state: str | None
    to_state: str
    reason: str
    at: dt.datetime
    notify: str | None = None
    silenced_by: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "kind": self.kind,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "reason": self.reason,
            "at": self.at.isoformat(),
            "notify": self.notify,
            "silenced_by": self.silenced_by,
        }


@dataclass(frozen=True)
class Policy:
    """How alerts group and how long a resolved alert may re-open."""

    group_by: tuple[str, ...] = rules_mod.DEFAULT_GROUP_BY
    hold_time: dt.timedelta = rules_mod.DEFAULT_HOLD_TIME

    @classmethod
    def of(cls, rule_file: RuleFile) -> Policy:
        return cls(group_by=rule_file.group_by, hold_time=rule_file.hold_time)


def current_alert(*, session: Session, fingerprint: str) -> Alert | None:
    """The alert a fingerprint's next evaluation updates, or None."""
    return session.scalars(sa.select(Alert).where(Alert.current_key == fingerprint)).one_or_none()


def get_alert(*, session: Session, alert_id: int) -> Alert | None:
    return session.get(Alert, alert_id)


def get_alert_or_raise(*, session: Session, alert_id: int) -> Alert:
    """The alert with this id; NotFound otherwise."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} does not exist")
    return alert


def list_alerts(
    *,
    session: Session,
    state: str | None = None,
    model: str | None = None,
    rule: str | None = None,
    source: str | None = None,
    group_id: int | None = None,
    limit: int = 100,
) -> Sequence[Alert]:
    """Alerts, newest first; `state` is one of the states or `open` (pending and firing)."""
    if limit < 1:
        raise InvalidInput(f"limit must be at least 1, not {limit}")
    stmt = sa.select(Alert).options(selectinload(Alert.group))
    if state is not None:
        if state == "open":
            stmt = stmt.where(Alert.state.in_(OPEN_STATES))
        elif state in ALERT_STATES:
            stmt = stmt.where(Alert.state == state)
        else:
            raise InvalidInput(f"unknown state {state!r}: use one of {', '.join((*ALERT_STATES, 'open'))}")
    if model is not None:
        stmt = stmt.where(Alert.model == model)
    if rule is not None:
        stmt = stmt.where(Alert.rule == rule)
    if source is not None:
        stmt = stmt.where(Alert.source == source)
    if group_id is not None:
        stmt = stmt.where(Alert.group_id == group_id)
    return session.scalars(stmt.order_by(Alert.id.desc()).limit(limit)).all()


def history(*, session: Session, alert_id: int) -> Sequence[AlertEvent]:
    """Every transition of an alert, oldest first."""
    get_alert_or_raise(session=session, alert_id=alert_id)
    return session.scalars(
        sa.select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
    ).all()


def _clip(text: str | None, size: int = _MAX_TEXT) -> str:
    text = (text or "").replace("\x00", "")
    return text if len(text) <= size else text[: size - 1] + "…"


def _match_labels(alert: Alert) -> dict[str, str]:
    """The labels silences match against: the alert's own plus rule, model, severity, runbook and source."""
    labels = {k: str(v) for k, v in (alert.labels or {}).items()}
    labels.setdefault("rule", alert.rule)
    labels.setdefault("alertname", alert.rule)
    labels.setdefault("severity", alert.severity)
    labels.setdefault("source", alert.source)
    if alert.model is not None:
        labels.setdefault("model", alert.model)
    if alert.runbook is not None:
        labels.setdefault("runbook", alert.runbook)
    return labels


def _record(
    session: Session,
    alert: Alert,
    *,
    kind: str,
    from_state: str | None,
    actor: str,
    reason: str,
    at: dt.datetime,
    evidence: dict[str, Any] | None = None,
    notify: str | None = None,
) -> Transition:
    """Write the history entry of a change already made to `alert`, and queue its notification."""
    event = AlertEvent(
        alert_id=alert.id,
        at=at,
        kind=kind,
        from_state=from_state,
        to_state=alert.state,
        actor=_clip(actor, 128),
        reason=_clip(reason),
        evidence=evidence or {},
    )
    session.add(event)
    alert.updated_at = at
    session.flush()
    silence = None
    if notify is not None:
        silence = matching_silence(session=session, labels=_match_labels(alert), at=at)
        event.silence_id = silence.id if silence is not None else None
        session.add(
            Notification(
                alert_id=alert.id,
                event_id=event.id,
                event=notify,
                status="suppressed" if silence is not None else "pending",
                silence_id=silence.id if silence is not None else None,
                created_at=at,
                finished_at=at if silence is not None else None,
            )
        )
        session.flush()
    return Transition(
        alert_id=alert.id,
        rule=alert.rule,
        model=alert.model,
        fingerprint=alert.fingerprint,
        kind=kind,
        from_state=from_state,
        to_state=alert.state,
        reason=reason,
        at=at,
        notify=notify,
        silenced_by=silence.id if silence is not None else None,
    )


def _group(session: Session, *, key: str, source: str, labels: dict[str, Any], at: dt.datetime) -> AlertGroup:
    group = session.scalars(sa.select(AlertGroup).where(AlertGroup.key == key)).one_or_none()
    if group is None:
        group = AlertGroup(key=key[:512], source=source, labels=labels, created_at=at, updated_at=at)
        session.add(group)
        session.flush()
    else:
        group.updated_at = at
    return group


def _new_alert(
    session: Session,
    *,
    previous: Alert | None,
    fingerprint: str,
    source: str,
    rule: str,
    model: str | None,
    severity: str,
    runbook: str | None,
    labels: dict[str, Any],
    annotations: dict[str, Any],
    group: AlertGroup,
    state: str,
    at: dt.datetime,
    external_id: str | None = None,
) -> Alert:
    if previous is not None:
        previous.current_key = None  # this fingerprint's history goes on in a new alert
        session.flush()
    alert = Alert(
        fingerprint=fingerprint,
        current_key=fingerprint,
        source=source,
        external_id=external_id,
        rule=rule[:255],
        model=model,
        state=state,
        severity=severity,
        runbook=runbook,
        labels=labels,
        annotations=annotations,
        group_id=group.id,
        active_since=at,
        fired_at=at if state == "firing" else None,
        reopen_count=0,
        created_at=at,
        updated_at=at,
    )
    session.add(alert)
    session.flush()
    return alert


#: Where a monitor's headline number sits in its evidence, by preference: what `{{ $value }}` shows.
VALUE_KEYS = ("value", "drifted_share", "error_rate", "accuracy", "ratio", "rate", "p99_ms", "score")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        return None
    return float(value)


def _value_of(check: Check) -> float | None:
    """The check's headline number: `evidence["value"]`, else the first of VALUE_KEYS in the evidence of the
    part (or served version) that decided the outcome."""
    evidence = check.evidence if isinstance(check.evidence, dict) else {}
    direct = _number(evidence.get("value"))
    if direct is not None:
        return direct
    deciding = [str(d) for d in evidence.get("deciding") or []]
    candidates: list[dict[str, Any]] = []
    parts = evidence.get("parts")
    if isinstance(parts, dict):
        labels = [d for d in deciding if d in parts] or list(parts)
        candidates += [parts[label] for label in labels if isinstance(parts[label], dict)]
    versions = evidence.get("versions")
    if isinstance(versions, list):
        dicts = [v for v in versions if isinstance(v, dict)]
        chosen = [v for v in dicts if f"v{v.get('version')}" in deciding] or dicts
        candidates += chosen
    candidates.append(evidence)
    for key in VALUE_KEYS:
        for candidate in candidates:
            found = _number(candidate.get(key))
            if found is not None:
                return found
    return None


def jsonable(value: Any) -> Any:
    """Evidence as JSON every backend stores: non-finite floats and odd types as strings, no NUL bytes."""
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    for attr in ("item", "tolist"):  # numpy scalars and arrays
        convert = getattr(value, attr, None)
        if callable(convert):
            try:
                return jsonable(convert())
            except (TypeError, ValueError):
                break
    return str(value)


def _check_dict(check: Check) -> dict[str, Any]:
    result: dict[str, Any] = jsonable(check.to_dict())
    return result


def _within_hold(alert: Alert, at: dt.datetime, hold: dt.timedelta) -> bool:
    return alert.fired_at is not None and alert.resolved_at is not None and at - alert.resolved_at <= hold


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
    at = at or clock.now()
    labels = rule.alert_labels(model)
    fp = fingerprint(rule.name, labels)
    alert = current_alert(session=session, fingerprint=fp)
    evidence = _check_dict(check)
    value = _value_of(check)
    annotations = {
        k: rules_mod.render(v, labels=labels, value=value, evidence=check.evidence or {})
        for k, v in rule.annotations.items()
    }

    def observe(target: Alert) -> None:
        target.last_check = evidence
        target.last_evaluated_at = at
        target.value = value
        target.annotations = annotations
        target.severity = rule.severity
        target.runbook = rule.runbook
        target.labels = labels

    if alert is not None and alert.state in OPEN_STATES:
        observe(alert)
    reason = check.reason or check.outcome.label
    if check.outcome is Outcome.FAILED:
        fires_now = rule.for_ <= dt.timedelta(0)
        if (
            alert is None
            or alert.state == "closed"
            or (alert.state == "resolved" and not _within_hold(alert, at, policy.hold_time))
        ):
            group = _group(
                session,
                key=group_key(labels, policy.group_by),
                source="mloncall",
                labels={k: labels.get(k, "") for k in policy.group_by},
                at=at,
            )
            new = _new_alert(
                session,
                previous=alert,
                fingerprint=fp,
                source="mloncall",
                rule=rule.name,
                model=model,
                severity=rule.severity,
                runbook=rule.runbook,
                labels=labels,
                annotations=annotations,
                group=group,
                state="firing" if fires_now else "pending",
                at=at,
            )
            observe(new)
            if fires_now:
                return _record(
                    session, new, kind="firing", from_state=None, actor=actor, at=at, evidence=evidence,
                    reason=f"condition true (for: 0): {reason}", notify="firing",
                )  # fmt: skip
            return _record(
                session, new, kind="pending", from_state=None, actor=actor, at=at, evidence=evidence,
                reason=f"condition true, firing if it holds for {format_duration(rule.for_)}: {reason}",
            )  # fmt: skip
        before = alert.state
        if alert.state == "inactive" or (alert.state == "resolved" and alert.fired_at is None):
            observe(alert)
            alert.active_since = at
            alert.resolved_at = None
            alert.state = "firing" if fires_now else "pending"
            if fires_now:
                alert.fired_at = at
                return _record(
                    session, alert, kind="firing", from_state=before, actor=actor, at=at, evidence=evidence,
                    reason=f"condition true again (for: 0): {reason}", notify="firing",
                )  # fmt: skip
            return _record(
                session, alert, kind="pending", from_state=before, actor=actor, at=at, evidence=evidence,
                reason=f"condition true again, firing if it holds for {format_duration(rule.for_)}: {reason}",
            )  # fmt: skip
        if alert.state == "resolved":
            return _reopen(
                session,
                alert,
                actor=actor,
                at=at,
                evidence=evidence,
                reason=reason,
                policy=policy,
                observe=observe,
            )
        if alert.state == "pending":
            held = at - alert.active_since
            if held >= rule.for_:
                alert.state = "firing"
                alert.fired_at = at
                return _record(
                    session, alert, kind="firing", from_state="pending", actor=actor, at=at, evidence=evidence,
                    reason=f"condition held for {format_duration(held)} "
                    f"(for: {format_duration(rule.for_)}): {reason}",
                    notify="firing",
                )  # fmt: skip
        return None
    if check.outcome is Outcome.SUCCESSFUL and alert is not None:
        if alert.state == "pending":
            alert.state = "inactive"
            return _record(
                session, alert, kind="inactive", from_state="pending", actor=actor, at=at, evidence=evidence,
                reason=f"condition cleared after {format_duration(at - alert.active_since)}, before "
                f"for: {format_duration(rule.for_)}; nobody was told: {reason}",
            )  # fmt: skip
        if alert.state == "firing":
            alert.state = "resolved"
            alert.resolved_at = at
            return _record(
                session, alert, kind="resolved", from_state="firing", actor=actor, at=at, evidence=evidence,
                reason=f"condition no longer true: {reason}", notify="resolved",
            )  # fmt: skip
    return None


def _reopen(
    session: Session,
    alert: Alert,
    *,
    actor: str,
    at: dt.datetime,
    evidence: dict[str, Any],
    reason: str,
    policy: Policy,
    observe: Callable[[Alert], None] | None = None,
) -> Transition:
    assert alert.resolved_at is not None
    since = format_duration(at - alert.resolved_at)
    if observe is not None:
        observe(alert)
    alert.state = "firing"
    alert.reopen_count += 1
    alert.resolved_at = None
    alert.active_since = at
    # The acknowledgement was for the episode that resolved; a re-opened alert needs a new one.
    alert.acknowledged_at = None
    alert.acknowledged_by = None
    return _record(
        session, alert, kind="reopened", from_state="resolved", actor=actor, at=at, evidence=evidence,
        reason=f"fired again {since} after it resolved, within the hold time of "
        f"{format_duration(policy.hold_time)} (re-open #{alert.reopen_count}): {reason}",
        notify="reopened",
    )  # fmt: skip


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
            Alert.source == "mloncall", Alert.state.in_(OPEN_STATES), Alert.current_key.is_not(None)
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
        before = alert.state
        if before == "pending":
            alert.state = "inactive"
            taken.append(
                _record(session, alert, kind="inactive", from_state=before, actor=actor, at=at, reason=why)
            )
        else:
            alert.state = "resolved"
            alert.resolved_at = at
            taken.append(
                _record(
                    session,
                    alert,
                    kind="resolved",
                    from_state=before,
                    actor=actor,
                    at=at,
                    reason=why,
                    notify="resolved",
                )
            )
        alert.current_key = None  # not re-opened by a rule that may come back under the same name
    return taken


# --- evaluation ------------------------------------------------------------------------------------------


@dataclass
class RuleCheck:
    """One rule judged on one model."""

    rule: str
    model: str
    monitor: str
    check: Check
    transition: Transition | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "model": self.model,
            "monitor": self.monitor,
            "check": self.check.to_dict(),
            "transition": self.transition.to_dict() if self.transition else None,
        }


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


def evaluate(
    *,
    ctx: Context,
    now: dt.datetime | None = None,
    monitor: MonitorFn | None = None,
    actor: str = EVALUATOR,
    catalog: rules_mod.MonitorCatalog | None = None,
) -> Evaluation:
    """Evaluate every rule on every model it covers, drive the lifecycle, queue notifications."""
    at = now or clock.now()
    with ctx.db.session() as session:
        active = active_rules(session=session, catalog=catalog)
        models = served_models(session=session)
    policy = Policy.of(active.rules)
    run = monitor if monitor is not None else (default_monitor() if active.rules.rules else None)
    result = Evaluation(at=at, rule_set_version=active.version)
    evaluated: set[str] = set()
    complete = True
    for rule in active.rules.rules:
        for model in models if rule.model == "*" else [rule.model]:
            assert run is not None
            check = _run_monitor(run, ctx, rule, model, at)
            evaluated.add(fingerprint(rule.name, rule.alert_labels(model)))
            item = RuleCheck(rule=rule.name, model=model, monitor=rule.monitor, check=check)
            try:
                with ctx.db.session() as session:
                    item.transition = apply_check(
                        session=session,
                        rule=rule,
                        model=model,
                        check=check,
                        policy=policy,
                        at=at,
                        actor=actor,
                    )
            except SAIntegrityError:  # another evaluator took this step first; the next pass sees its result
                log.info("rule %s on %s: another evaluator changed the alert first", rule.name, model)
                complete = False
            except MloncallError as exc:
                log.warning("rule %s on %s: %s", rule.name, model, exc.message)
                complete = False
            result.checks.append(item)
            if item.transition is not None:
                result.transitions.append(item.transition)
    if complete:
        with ctx.db.session() as session:
            result.transitions.extend(
                resolve_orphans(
                    session=session,
                    evaluated=evaluated,
                    rule_names={r.name for r in active.rules.rules},
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


# --- what people do to alerts ----------------------------------------------------------------------------


def acknowledge(
    *, session: Session, alert_id: int, actor: str, reason: str = ""
) -> tuple[Alert, Transition | None]:
    """Mark a pending or firing alert as being handled by actor; acknowledging twice keeps the first."""
    alert = get_alert_or_raise(session=session, alert_id=alert_id)
    if alert.state not in OPEN_STATES:
        raise Conflict(
            f"alert {alert_id} is {alert.state}: only a pending or firing alert can be acknowledged"
        )
    if alert.acknowledged_at is not None:
        return alert, None
    at = clock.now()
    alert.acknowledged_at = at
    alert.acknowledged_by = _clip(actor, 128)
    return alert, _record(
        session, alert, kind="acknowledged", from_state=alert.state, actor=actor, at=at,
        reason=reason or f"acknowledged by {actor}",
    )  # fmt: skip


def resolve(*, session: Session, alert_id: int, note: str, actor: str) -> tuple[Alert, Transition]:
    """Resolve an alert by hand with a note. If its condition still holds, the next evaluation re-opens it."""
    if not note or not note.strip():
        raise InvalidInput("a note is required: say why the alert is resolved")
    alert = get_alert_or_raise(session=session, alert_id=alert_id)
    if alert.state not in OPEN_STATES:
        raise Conflict(f"alert {alert_id} is already {alert.state}")
    at = clock.now()
    before = alert.state
    alert.state = "resolved"
    alert.resolved_at = at
    alert.resolution_note = _clip(note)
    return alert, _record(
        session, alert, kind="resolved", from_state=before, actor=actor, at=at, reason=f"resolved by hand: {note.strip()}",
        notify="resolved" if before == "firing" else None,
    )  # fmt: skip


def close(*, session: Session, alert_id: int, root_cause: str, action: str, note: str, actor: str) -> Alert:
    """Close an alert after its investigation, with the root cause, the action taken and a note.

    A firing alert resolves as it closes (its channels are told); a closed alert never re-opens: if its
    condition still holds, the next evaluation starts a new alert.
    """
    missing = [
        name for name, value in (("root_cause", root_cause), ("action", action)) if not (value or "").strip()
    ]
    if missing:
        raise InvalidInput(f"closing an alert needs {' and '.join(missing)}")
    alert = get_alert_or_raise(session=session, alert_id=alert_id)
    if alert.state == "closed":
        raise Conflict(f"alert {alert_id} was already closed by {alert.closed_by} at {alert.closed_at}")
    at = clock.now()
    before = alert.state
    alert.state = "closed"
    alert.closed_at = at
    alert.closed_by = _clip(actor, 128)
    alert.root_cause = _clip(root_cause.strip())
    alert.action = _clip(action.strip())
    alert.resolution_note = _clip(note.strip()) if note else alert.resolution_note
    if alert.resolved_at is None:
        alert.resolved_at = at
    alert.current_key = None
    _record(
        session, alert, kind="closed", from_state=before, actor=actor, at=at,
        reason=f"closed: root cause: {root_cause.strip()}; action: {action.strip()}" + (f"; {note.strip()}" if note else ""),
        evidence={"root_cause": root_cause, "action": action, "note": note},
        notify="resolved" if before == "firing" else None,
    )  # fmt: skip
    return alert


# --- groups ----------------------------------------------------------------------------------------------


def list_groups(*, session: Session, include_quiet: bool = False) -> list[tuple[AlertGroup, list[Alert]]]:
    """Alert groups with their alerts, most recently changed first; without include_quiet only groups with an
    open alert."""
    groups = session.scalars(
        sa.select(AlertGroup)
        .options(selectinload(AlertGroup.alerts))
        .order_by(AlertGroup.updated_at.desc(), AlertGroup.id.desc())
    ).all()
    out = []
    for group in groups:
        alerts = list(group.alerts)
        if include_quiet or any(a.state in OPEN_STATES for a in alerts):
            out.append((group, alerts))
    return out


def get_group_or_raise(*, session: Session, group_id: int) -> AlertGroup:
    group = session.get(AlertGroup, group_id)
    if group is None:
        raise NotFound(f"alert group {group_id} does not exist")
    return group


def group_state(alerts: Iterable[Alert]) -> str:
    """The most urgent state among a group's alerts."""
    order = ("firing", "pending", "resolved", "inactive", "closed")
    states = {a.state for a in alerts}
    return next((s for s in order if s in states), "inactive")


# --- silences --------------------------------------------------------------------------------------------

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.S)
MATCH_OPS = ("=", "!=", "=~", "!~")


@dataclass(frozen=True)
class Matcher:
    """`name=value`, `name!=value`, `name=~regex` or `name!~regex` (the regex must match the whole value)."""

    name: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        match = _MATCHER.match(text or "")
        if match is None:
            raise InvalidInput(
                f"bad matcher {text!r}: use NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX (e.g. model=iris)"
            )
        name, op, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        return cls.of(name, op, value)

    @classmethod
    def of(cls, name: str, op: str, value: str) -> Matcher:
        if op not in MATCH_OPS:
            raise InvalidInput(f"bad matcher operator {op!r}: use one of {', '.join(MATCH_OPS)}")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name or ""):
            raise InvalidInput(f"bad matcher label name {name!r}")
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise InvalidInput(f"bad matcher regex {value!r} for {name}: {exc}") from None
        return cls(name=name, op=op, value=value)

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "op": self.op, "value": self.value}

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def matchers_of(silence: Silence) -> list[Matcher]:
    return [Matcher.of(m["name"], m["op"], m["value"]) for m in silence.matchers]


def silence_matches(silence: Silence, labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers_of(silence))


def silence_status(silence: Silence, at: dt.datetime | None = None) -> str:
    """`active`, `pending` (starts later) or `expired`."""
    at = at or clock.now()
    if silence.ends_at <= at:
        return "expired"
    if silence.starts_at > at:
        return "pending"
    return "active"


def create_silence(
    *,
    session: Session,
    matchers: Sequence[Matcher | str],
    duration: dt.timedelta,
    comment: str,
    actor: str,
    starts_at: dt.datetime | None = None,
) -> Silence:
    """Mute notifications of alerts matching every matcher for `duration` (from now or from starts_at)."""
    parsed = [m if isinstance(m, Matcher) else Matcher.parse(m) for m in matchers]
    if not parsed:
        raise InvalidInput("a silence needs at least one matcher, e.g. model=iris-classifier")
    if all(m.matches({}) for m in parsed):
        raise InvalidInput(
            "these matchers also match an alert without those labels, so the silence would mute every alert: "
            "add a matcher that needs a label value (e.g. model=iris-classifier)"
        )
    if duration <= dt.timedelta(0):
        raise InvalidInput(f"a silence must last longer than 0, not {duration}")
    if not comment or not comment.strip():
        raise InvalidInput("a comment is required: say why these alerts are silenced")
    now = clock.now()
    start = starts_at or now
    silence = Silence(
        matchers=[m.to_dict() for m in parsed],
        starts_at=start,
        ends_at=start + duration,
        comment=_clip(comment.strip()),
        created_by=_clip(actor, 128),
        created_at=now,
    )
    session.add(silence)
    session.flush()
    return silence


def get_silence_or_raise(*, session: Session, silence_id: int) -> Silence:
    silence = session.get(Silence, silence_id)
    if silence is None:
        raise NotFound(f"silence {silence_id} does not exist")
    return silence


def list_silences(*, session: Session, include_expired: bool = False) -> Sequence[Silence]:
    """Silences, newest first; without include_expired only those active or starting later."""
    stmt = sa.select(Silence)
    if not include_expired:
        stmt = stmt.where(Silence.ends_at > clock.now())
    return session.scalars(stmt.order_by(Silence.id.desc())).all()


def expire_silence(*, session: Session, silence_id: int, actor: str) -> Silence:
    """End a silence now (idempotent: an expired silence stays as it was)."""
    silence = get_silence_or_raise(session=session, silence_id=silence_id)
    now = clock.now()
    if silence.ends_at > now:
        silence.ends_at = max(now, silence.starts_at)
        silence.expired_by = _clip(actor, 128)
        session.flush()
    return silence


def active_silences(*, session: Session, at: dt.datetime | None = None) -> Sequence[Silence]:
    """The silences in force at `at` (default now), oldest first."""
    at = at or clock.now()
    return session.scalars(
        sa.select(Silence).where(Silence.starts_at <= at, Silence.ends_at > at).order_by(Silence.id)
    ).all()


def matching_silence(
    *, session: Session, labels: dict[str, str], at: dt.datetime | None = None
) -> Silence | None:
    """The first active silence whose matchers all match labels, or None."""
    return next((s for s in active_silences(session=session, at=at) if silence_matches(s, labels)), None)


def silenced_by(
    *,
    session: Session,
    alert: Alert,
    at: dt.datetime | None = None,
    silences: Sequence[Silence] | None = None,
) -> Silence | None:
    """The active silence muting this alert now, or None (pass `silences` from `active_silences` for a list)."""
    candidates = silences if silences is not None else active_silences(session=session, at=at)
    labels = _match_labels(alert)
    return next((s for s in candidates if silence_matches(s, labels)), None)


# --- alerts from elsewhere (Alertmanager, PagerDuty): used by `inbound` -----------------------------------


def external_firing(
    *,
    session: Session,
    source: str,
    fingerprint: str,
    rule: str,
    model: str | None,
    severity: str,
    runbook: str | None,
    labels: dict[str, Any],
    annotations: dict[str, Any],
    group: AlertGroup,
    actor: str,
    reason: str,
    hold_time: dt.timedelta,
    evidence: dict[str, Any] | None = None,
    external_id: str | None = None,
    started_at: dt.datetime | None = None,
) -> tuple[Alert, Transition | None]:
    """An alert another system says is firing: opened, re-opened within the hold time, or updated (no
    transition when it fires already: senders repeat themselves)."""
    at = clock.now()
    alert = current_alert(session=session, fingerprint=fingerprint)

    def observe(target: Alert) -> None:
        target.labels, target.annotations = labels, annotations
        target.severity, target.runbook, target.model = severity, runbook, model
        target.last_evaluated_at = at
        target.group_id = group.id
        if evidence is not None:
            target.last_check = evidence

    if alert is not None and alert.state == "firing":
        observe(alert)
        return alert, None
    if alert is not None and alert.state == "resolved" and _within_hold(alert, at, hold_time):
        return alert, _reopen(
            session, alert, actor=actor, at=at, evidence=evidence or {}, reason=reason,
            policy=Policy(hold_time=hold_time), observe=observe,
        )  # fmt: skip
    if alert is not None and alert.state in ("pending", "inactive"):
        before = alert.state
        observe(alert)
        alert.state, alert.fired_at, alert.resolved_at = "firing", at, None
        return alert, _record(
            session, alert, kind="firing", from_state=before, actor=actor, at=at, evidence=evidence,
            reason=reason, notify="firing",
        )  # fmt: skip
    new = _new_alert(
        session,
        previous=alert,
        fingerprint=fingerprint,
        source=source,
        rule=rule,
        model=model,
        severity=severity,
        runbook=runbook,
        labels=labels,
        annotations=annotations,
        group=group,
        state="firing",
        at=at,
        external_id=external_id,
    )
    observe(new)
    if started_at is not None and started_at <= at:
        new.active_since = started_at
    return new, _record(
        session,
        new,
        kind="firing",
        from_state=None,
        actor=actor,
        at=at,
        evidence=evidence,
        reason=reason,
        notify="firing",
    )


def external_resolved(
    *,
    session: Session,
    fingerprint: str,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
) -> tuple[Alert | None, Transition | None]:
    """An alert another system says is resolved; (None, None) if mloncall never saw it open."""
    alert = current_alert(session=session, fingerprint=fingerprint)
    if alert is None or alert.state not in OPEN_STATES:
        return alert, None
    at = clock.now()
    before = alert.state
    alert.state = "resolved"
    alert.resolved_at = at
    alert.last_evaluated_at = at
    if evidence is not None:
        alert.last_check = evidence
    return alert, _record(
        session, alert, kind="resolved", from_state=before, actor=actor, at=at, evidence=evidence, reason=reason,
        notify="resolved" if before == "firing" else None,
    )  # fmt: skip


def external_group(*, session: Session, key: str, source: str, labels: dict[str, Any]) -> AlertGroup:
    """The group of alerts another system sends together (an Alertmanager groupKey, a PagerDuty routing key)."""
    return _group(session, key=key, source=source, labels=labels, at=clock.now())


def policy_in_force(*, session: Session) -> Policy:
    """The grouping and hold time of the active rule set."""
    row = _latest_rule_set(session)
    if row is None:
        return Policy()
    spec = row.spec
    return Policy(
        group_by=tuple(spec.get("group_by") or rules_mod.DEFAULT_GROUP_BY),
        hold_time=parse_duration(spec.get("hold_time", "10m")),
    )

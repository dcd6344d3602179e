"""The alert lifecycle: identity by fingerprint, groups, every change recorded as history with its
notification queued (the outbox), and what people do to alerts: acknowledge, resolve, close.

The states and the moves allowed between them are in `mloncall.alerts.states`; every change of state here
goes through `move`. Functions take keyword arguments and a session, flush and never commit. A queued
`Notification` is sent by `mloncall.alerts.notify.send_pending` after the unit of work commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from mloncall.alerts.evidence import clip
from mloncall.alerts.models import Alert, AlertEvent, AlertGroup, Notification
from mloncall.alerts.silences import match_labels, matching_silence
from mloncall.alerts.states import (
    ALERT_STATES,
    ALERT_TRANSITIONS,
    OPEN_STATES,
    AlertState,
    EventKind,
    NotificationStatus,
    NotifyEvent,
    most_urgent,
)
from mloncall.core import clock
from mloncall.core.durations import format_duration
from mloncall.core.errors import Conflict, InvalidInput
from mloncall.core.records import Record
from mloncall.stores.db import get_or_raise

#: Severities an alert may carry (a rule uses the first, third and fourth; PagerDuty adds `error`).
ALERT_SEVERITIES = ("critical", "error", "warning", "info")
#: The labels that describe a rule rather than identify its alert (they may change without a new alert).
_DESCRIPTIVE_LABELS = ("severity", "runbook", "monitor", "alertname")


@dataclass
class Transition(Record):
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


@dataclass(frozen=True)
class AlertFacts:
    """Who an alert is and how it is described, as the evaluator or another system reports it."""

    fingerprint: str
    source: str
    rule: str
    model: str | None
    severity: str
    runbook: str | None
    labels: dict[str, Any]
    annotations: dict[str, Any]
    external_id: str | None = None

    def describe(self, alert: Alert) -> None:
        """Write the latest description onto the alert (labels, annotations, severity, runbook, model)."""
        alert.labels, alert.annotations = self.labels, self.annotations
        alert.severity, alert.runbook, alert.model = self.severity, self.runbook, self.model


def fingerprint(rule: str, labels: dict[str, Any]) -> str:
    """The identity of an alert: its rule and its identifying labels (not severity, runbook or monitor, which
    describe the rule and may be edited without starting a new alert)."""
    identity = {k: str(v) for k, v in labels.items() if k not in _DESCRIPTIVE_LABELS}
    blob = json.dumps({"rule": rule, "labels": sorted(identity.items())}, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def group_key(labels: dict[str, Any], group_by: Sequence[str], source: str = "mloncall") -> str:
    """`mloncall:{model="iris",runbook="monitoring"}`: the key of the group an alert belongs to."""
    inner = ",".join(f'{name}="{labels.get(name, "")}"' for name in group_by)
    return f"{source}:{{{inner}}}"


# --- reading ---------------------------------------------------------------------------------------------


def current_alert(*, session: Session, fingerprint: str) -> Alert | None:
    """The alert a fingerprint's next evaluation updates, or None."""
    return session.scalars(sa.select(Alert).where(Alert.current_key == fingerprint)).one_or_none()


def get_alert(*, session: Session, alert_id: int) -> Alert | None:
    return session.get(Alert, alert_id)


def get_alert_or_raise(*, session: Session, alert_id: int) -> Alert:
    """The alert with this id; NotFound otherwise."""
    return get_or_raise(session, Alert, alert_id, what="alert")


def _state_filter(state: str) -> sa.ColumnElement[bool]:
    if state == "open":
        return Alert.state.in_(OPEN_STATES)
    if state in ALERT_STATES:
        return Alert.state == state
    names = ", ".join((*ALERT_STATES, "open"))
    raise InvalidInput(f"unknown state {state!r}: use one of {names}")


def list_alerts(
    *,
    session: Session,
    state: str | None = None,
    model: str | None = None,
    rule: str | None = None,
    source: str | None = None,
    group_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[Alert]:
    """Alerts, newest first (skipping `offset`, for a page); `state` is one of the states or `open`
    (pending and firing)."""
    if limit < 1:
        raise InvalidInput(f"limit must be at least 1, not {limit}")
    stmt = sa.select(Alert).options(selectinload(Alert.group))
    if state is not None:
        stmt = stmt.where(_state_filter(state))
    for column, wanted in ((Alert.model, model), (Alert.rule, rule), (Alert.source, source)):
        if wanted is not None:
            stmt = stmt.where(column == wanted)
    if group_id is not None:
        stmt = stmt.where(Alert.group_id == group_id)
    return session.scalars(stmt.order_by(Alert.id.desc()).offset(max(offset, 0)).limit(limit)).all()


def history(*, session: Session, alert_id: int) -> Sequence[AlertEvent]:
    """Every transition of an alert, oldest first."""
    get_alert_or_raise(session=session, alert_id=alert_id)
    return session.scalars(
        sa.select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
    ).all()


# --- changing --------------------------------------------------------------------------------------------


def move(alert: Alert, to: AlertState) -> str:
    """Set the alert's state, if the move is allowed (see `states.ALERT_TRANSITIONS`); the state it left."""
    before = alert.state
    alert.state = ALERT_TRANSITIONS.check(f"alert #{alert.id}", before, to)
    return before


def _queue_notification(
    session: Session, alert: Alert, event: AlertEvent, notify: str, at: dt.datetime
) -> int | None:
    """Queue the event for the channels (suppressed if a silence mutes it); the silence's id, if any."""
    silence = matching_silence(session=session, labels=match_labels(alert), at=at)
    silence_id = silence.id if silence is not None else None
    event.silence_id = silence_id
    session.add(
        Notification(
            alert_id=alert.id,
            event_id=event.id,
            event=notify,
            status=NotificationStatus.SUPPRESSED if silence is not None else NotificationStatus.PENDING,
            silence_id=silence_id,
            created_at=at,
            finished_at=at if silence is not None else None,
        )
    )
    session.flush()
    return silence_id


def record(
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
        actor=clip(actor, 128),
        reason=clip(reason),
        evidence=evidence or {},
    )
    session.add(event)
    alert.updated_at = at
    session.flush()
    silence_id = _queue_notification(session, alert, event, notify, at) if notify is not None else None
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
        silenced_by=silence_id,
    )


def ensure_group(
    session: Session, *, key: str, source: str, labels: dict[str, Any], at: dt.datetime
) -> AlertGroup:
    """The group with this key, made on first use; touched otherwise."""
    group = session.scalars(sa.select(AlertGroup).where(AlertGroup.key == key)).one_or_none()
    if group is None:
        group = AlertGroup(key=key[:512], source=source, labels=labels, created_at=at, updated_at=at)
        session.add(group)
        session.flush()
    else:
        group.updated_at = at
    return group


def new_alert(
    session: Session,
    *,
    previous: Alert | None,
    facts: AlertFacts,
    group: AlertGroup,
    state: AlertState,
    at: dt.datetime,
) -> Alert:
    """A new alert for a fingerprint; the previous one (closed, or resolved too long ago) is superseded."""
    if previous is not None:
        previous.current_key = None  # this fingerprint's history goes on in a new alert
        session.flush()
    alert = Alert(
        fingerprint=facts.fingerprint,
        current_key=facts.fingerprint,
        source=facts.source,
        external_id=facts.external_id,
        rule=facts.rule[:255],
        model=facts.model,
        state=ALERT_TRANSITIONS.check("a new alert", None, state),
        severity=facts.severity,
        runbook=facts.runbook,
        labels=facts.labels,
        annotations=facts.annotations,
        group_id=group.id,
        active_since=at,
        fired_at=at if state == AlertState.FIRING else None,
        reopen_count=0,
        created_at=at,
        updated_at=at,
    )
    session.add(alert)
    session.flush()
    return alert


def within_hold(alert: Alert, at: dt.datetime, hold: dt.timedelta) -> bool:
    """Whether a resolved alert that fired may still re-open at `at` (flapping protection)."""
    return alert.fired_at is not None and alert.resolved_at is not None and at - alert.resolved_at <= hold


def reopen(
    session: Session,
    alert: Alert,
    *,
    actor: str,
    at: dt.datetime,
    evidence: dict[str, Any],
    reason: str,
    hold_time: dt.timedelta,
    observe: Callable[[Alert], None] | None = None,
) -> Transition:
    """A resolved alert fires again within the hold time: the same alert, straight back to firing."""
    assert alert.resolved_at is not None
    since = format_duration(at - alert.resolved_at)
    if observe is not None:
        observe(alert)
    move(alert, AlertState.FIRING)
    alert.reopen_count += 1
    alert.resolved_at = None
    alert.active_since = at
    # The acknowledgement was for the episode that resolved; a re-opened alert needs a new one.
    alert.acknowledged_at = None
    alert.acknowledged_by = None
    return record(
        session, alert, kind=EventKind.REOPENED, from_state=AlertState.RESOLVED, actor=actor, at=at,
        evidence=evidence,
        reason=f"fired again {since} after it resolved, within the hold time of "
        f"{format_duration(hold_time)} (re-open #{alert.reopen_count}): {reason}",
        notify=NotifyEvent.REOPENED,
    )  # fmt: skip


def resolve_now(
    session: Session,
    alert: Alert,
    *,
    actor: str,
    at: dt.datetime,
    reason: str,
    evidence: dict[str, Any] | None = None,
) -> Transition:
    """An open alert resolves; its channels are told only if it had fired."""
    before = move(alert, AlertState.RESOLVED)
    alert.resolved_at = at
    return record(
        session, alert, kind=EventKind.RESOLVED, from_state=before, actor=actor, at=at, evidence=evidence,
        reason=reason, notify=NotifyEvent.RESOLVED if before == AlertState.FIRING else None,
    )  # fmt: skip


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
    alert.acknowledged_by = clip(actor, 128)
    return alert, record(
        session, alert, kind=EventKind.ACKNOWLEDGED, from_state=alert.state, actor=actor, at=at,
        reason=reason or f"acknowledged by {actor}",
    )  # fmt: skip


def resolve(*, session: Session, alert_id: int, note: str, actor: str) -> tuple[Alert, Transition]:
    """Resolve an alert by hand with a note. If its condition still holds, the next evaluation re-opens it."""
    if not note or not note.strip():
        raise InvalidInput("a note is required: say why the alert is resolved")
    alert = get_alert_or_raise(session=session, alert_id=alert_id)
    if alert.state not in OPEN_STATES:
        raise Conflict(f"alert {alert_id} is already {alert.state}")
    alert.resolution_note = clip(note)
    return alert, resolve_now(
        session, alert, actor=actor, at=clock.now(), reason=f"resolved by hand: {note.strip()}"
    )


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
    if alert.state == AlertState.CLOSED:
        raise Conflict(f"alert {alert_id} was already closed by {alert.closed_by} at {alert.closed_at}")
    at = clock.now()
    before = move(alert, AlertState.CLOSED)
    alert.closed_at = at
    alert.closed_by = clip(actor, 128)
    alert.root_cause = clip(root_cause.strip())
    alert.action = clip(action.strip())
    alert.resolution_note = clip(note.strip()) if note else alert.resolution_note
    if alert.resolved_at is None:
        alert.resolved_at = at
    alert.current_key = None
    record(
        session, alert, kind=EventKind.CLOSED, from_state=before, actor=actor, at=at,
        reason=f"closed: root cause: {root_cause.strip()}; action: {action.strip()}" + (f"; {note.strip()}" if note else ""),
        evidence={"root_cause": root_cause, "action": action, "note": note},
        notify=NotifyEvent.RESOLVED if before == AlertState.FIRING else None,
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
    """The alert group with this id; NotFound otherwise."""
    return get_or_raise(session, AlertGroup, group_id, what="alert group")


def group_state(alerts: Iterable[Alert]) -> str:
    """The most urgent state among a group's alerts."""
    return most_urgent(a.state for a in alerts)

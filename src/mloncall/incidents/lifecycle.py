"""The incident lifecycle: open (by command or from an alert), acknowledge, mitigate, resolve, close; every
move recorded as an `IncidentEvent` with its reason and shown on the timeline.

Functions take keyword arguments and a session, flush and never commit; a runbook calls them directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.alerts import lifecycle as alerts
from mloncall.alerts.states import OPEN_STATES as OPEN_ALERT_STATES
from mloncall.core import clock
from mloncall.core.durations import format_duration, parse_duration
from mloncall.core.errors import Conflict, InvalidInput
from mloncall.incidents import escalation, outbox
from mloncall.incidents.config import IncidentSettings, parse_severity
from mloncall.incidents.models import (
    GroupClaim,
    Incident,
    IncidentAlert,
    IncidentEvent,
    Postmortem,
    RoleAssignment,
    StatusUpdate,
)
from mloncall.incidents.states import (
    OPEN_STATES,
    TRANSITIONS,
    IncidentState,
    MessageKind,
    PostmortemStatus,
    TimelineKind,
)
from mloncall.incidents.timeline import add_entry, clip
from mloncall.stores.db import get_or_raise

MAX_CADENCE = dt.timedelta(days=7)


#: The tables of an incident's records that `rows_of` lists.
Owned = TypeVar("Owned", IncidentEvent, RoleAssignment, StatusUpdate)


def get_incident_or_raise(*, session: Session, incident_id: int) -> Incident:
    """The incident with this id; NotFound otherwise."""
    return get_or_raise(session, Incident, incident_id, what="incident")


def rows_of(session: Session, table: type[Owned], incident_id: int) -> Sequence[Owned]:
    """The rows of `table` that belong to an incident, oldest first; NotFound for an unknown incident."""
    get_incident_or_raise(session=session, incident_id=incident_id)
    return session.scalars(sa.select(table).where(table.incident_id == incident_id).order_by(table.id)).all()


def require_open(incident: Incident, doing: str) -> None:
    """Conflict with the reason unless the incident is still being worked."""
    if incident.state == IncidentState.MERGED:
        raise Conflict(
            f"cannot {doing}: incident {incident.id} was merged into incident {incident.merged_into_id}; "
            f"work on incident {incident.merged_into_id} (or unmerge {incident.id})"
        )
    if incident.state == IncidentState.CLOSED:
        raise Conflict(f"cannot {doing}: incident {incident.id} is closed (its post-mortem is complete)")
    if incident.state == IncidentState.RESOLVED and doing not in ("post an update", "add a note"):
        raise Conflict(f"cannot {doing}: incident {incident.id} is resolved")


def list_incidents(
    *, session: Session, state: str | None = None, model: str | None = None, limit: int = 100, offset: int = 0
) -> Sequence[Incident]:
    """Incidents, newest first (skipping `offset`, for a page); `state` is a state, `open` (triggered, acknowledged, mitigated) or None."""
    if limit < 1:
        raise InvalidInput(f"limit must be at least 1, not {limit}")
    stmt = sa.select(Incident)
    if state == "open":
        stmt = stmt.where(Incident.state.in_(OPEN_STATES))
    elif state is not None:
        if state not in tuple(IncidentState):
            raise InvalidInput(f"unknown state {state!r}: use one of {', '.join((*IncidentState, 'open'))}")
        stmt = stmt.where(Incident.state == state)
    if model is not None:
        stmt = stmt.where(Incident.model == model)
    return session.scalars(stmt.order_by(Incident.id.desc()).offset(max(offset, 0)).limit(limit)).all()


def record(
    session: Session,
    incident: Incident,
    *,
    before: str | None,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
) -> IncidentEvent:
    """Write the event and the timeline entry of a move already made to `incident`."""
    at = clock.now()
    incident.updated_at = at
    event = IncidentEvent(
        incident_id=incident.id, at=at, actor=clip(actor, 128), from_state=before, to_state=incident.state,
        reason=clip(reason), evidence=evidence or {},
    )  # fmt: skip
    session.add(event)
    add_entry(
        session=session, incident_id=incident.id, kind=TimelineKind.STATE, actor=actor, at=at,
        text=f"{before or 'new'} -> {incident.state}: {reason}", detail={"from": before, "to": incident.state},
    )  # fmt: skip
    return event


def move(
    session: Session,
    incident: Incident,
    to: IncidentState,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
) -> IncidentEvent:
    """Change the incident's state if the move is allowed (`states.TRANSITIONS`), recording it."""
    before = incident.state
    incident.state = TRANSITIONS.check(f"incident {incident.id}", before, to)
    return record(session, incident, before=before, actor=actor, reason=reason, evidence=evidence)


def cadence_of(value: Any, settings: IncidentSettings, severity: str) -> dt.timedelta:
    """An update cadence in the duration grammar (the severity's when None)."""
    if value is None:
        return settings.of(severity).cadence
    return parse_duration(value, what="update cadence", maximum=MAX_CADENCE)


def open_incident(
    *,
    session: Session,
    settings: IncidentSettings,
    title: str,
    severity: str,
    actor: str,
    model: str | None = None,
    description: str = "",
    cadence: Any = None,
    policy: str | None = None,
    detected_at: dt.datetime | None = None,
    reason: str = "opened by command",
) -> Incident:
    """Open an incident: its severity's cadence and escalation policy start now, its subscribers are told."""
    if not title or not title.strip():
        raise InvalidInput("an incident needs a title")
    sev = parse_severity(severity)
    every = cadence_of(cadence, settings, sev)
    if policy is not None:
        escalation.get_policy_or_raise(session=session, name=policy)
    at = clock.now()
    incident = Incident(
        title=clip(title.strip(), 255), severity=sev, state=TRANSITIONS.check("a new incident", None, IncidentState.TRIGGERED), model=model,
        description=description, opened_by=clip(actor, 128), detected_at=detected_at or at, opened_at=at,
        lineage=[], last_signal_at=at, cadence_s=every.total_seconds(), next_update_due=at + every,
        escalation_policy=policy or settings.of(sev).policy,
        subscribers=list(settings.subscribers or [outbox.EVERY_CHANNEL]), created_at=at, updated_at=at,
    )  # fmt: skip
    session.add(incident)
    session.flush()
    record(session, incident, before=None, actor=actor, reason=reason)
    outbox.queue(
        session, incident, kind=MessageKind.OPENED, channels=incident.subscribers,
        title=f"[INCIDENT] #{incident.id} {sev}: {incident.title}",
        text=f"Incident #{incident.id} ({sev}) is open: {incident.title}.\n"
        f"Affected: {model or 'see the incident'}. Since: {incident.detected_at.isoformat()}.\n"
        f"Updates at least every {format_duration(every)}. See: mloncall incident show {incident.id}",
    )  # fmt: skip
    escalation.start(session=session, incident=incident, settings=settings)
    return incident


def _acknowledge_alerts(session: Session, incident: Incident, actor: str) -> None:
    links = session.scalars(
        sa.select(IncidentAlert).where(
            IncidentAlert.incident_id == incident.id, IncidentAlert.detached_at.is_(None)
        )
    ).all()
    for link in links:
        alert = alerts.get_alert(session=session, alert_id=link.alert_id)
        if alert is not None and alert.state in OPEN_ALERT_STATES and alert.acknowledged_at is None:
            alerts.acknowledge(
                session=session, alert_id=alert.id, actor=actor, reason=f"incident {incident.id} acknowledged"
            )


def acknowledge(*, session: Session, incident_id: int, actor: str, note: str = "") -> Incident:
    """Someone is on it: escalation stops, and the incident's open alerts are acknowledged too.
    Acknowledging twice keeps the first."""
    incident = get_incident_or_raise(session=session, incident_id=incident_id)
    require_open(incident, "acknowledge")
    if incident.acknowledged_at is not None:
        return incident
    incident.acknowledged_at, incident.acknowledged_by = clock.now(), clip(actor, 128)
    escalation.stop(incident)
    if incident.state == IncidentState.TRIGGERED:
        move(
            session,
            incident,
            IncidentState.ACKNOWLEDGED,
            actor=actor,
            reason=note or f"acknowledged by {actor}",
        )
    _acknowledge_alerts(session, incident, actor)
    return incident


def mitigate(*, session: Session, incident_id: int, actor: str, note: str) -> Incident:
    """The impact is contained (a rollback, a traffic shift); the cause may remain."""
    if not note or not note.strip():
        raise InvalidInput("say what mitigated the impact")
    incident = get_incident_or_raise(session=session, incident_id=incident_id)
    require_open(incident, "mitigate")
    if incident.acknowledged_at is None:
        incident.acknowledged_at, incident.acknowledged_by = clock.now(), clip(actor, 128)
    escalation.stop(incident)
    incident.mitigated_at = clock.now()
    move(session, incident, IncidentState.MITIGATED, actor=actor, reason=f"mitigated: {note.strip()}")
    return incident


def release_claims(session: Session, incident: Incident) -> None:
    """The incident no longer holds its alert groups: the next alert in one opens a new incident."""
    session.execute(sa.delete(GroupClaim).where(GroupClaim.incident_id == incident.id))


def resolve(*, session: Session, incident_id: int, actor: str, summary: str, cause: str = "") -> Incident:
    """The problem is over: no more pages or reminders; subscribers are told in plain words."""
    if not summary or not summary.strip():
        raise InvalidInput("a resolution summary is required: say what ended the problem")
    incident = get_incident_or_raise(session=session, incident_id=incident_id)
    require_open(incident, "resolve")
    at = clock.now()
    incident.resolved_at, incident.resolution = at, clip(summary.strip())
    incident.root_cause = clip(cause.strip()) if cause else incident.root_cause
    incident.mitigated_at = incident.mitigated_at or at
    escalation.stop(incident)
    incident.next_update_due = None
    release_claims(session, incident)
    move(session, incident, IncidentState.RESOLVED, actor=actor, reason=f"resolved: {summary.strip()}")
    outbox.queue(
        session, incident, kind=MessageKind.RESOLVED, channels=incident.subscribers,
        title=f"[RESOLVED] incident #{incident.id} {incident.severity}: {incident.title}",
        text=f"Incident #{incident.id} is resolved: {summary.strip()}.\n"
        f"It lasted {format_duration(at - incident.detected_at)} from the first signal. "
        "A post-mortem follows.",
    )  # fmt: skip
    return incident


def close(*, session: Session, incident_id: int, actor: str) -> Incident:
    """Close the loop; only a resolved incident whose post-mortem is complete closes."""
    incident = get_incident_or_raise(session=session, incident_id=incident_id)
    if incident.state != IncidentState.RESOLVED:
        raise Conflict(f"incident {incident_id} is {incident.state}: only a resolved incident closes")
    pm = session.scalars(sa.select(Postmortem).where(Postmortem.incident_id == incident_id)).one_or_none()
    if pm is None or pm.status != PostmortemStatus.COMPLETE:
        raise Conflict(
            f"incident {incident_id} cannot close before its post-mortem is complete: "
            f"draft it with `mloncall incident postmortem {incident_id}` and mark it complete"
        )
    incident.closed_at = clock.now()
    move(session, incident, IncidentState.CLOSED, actor=actor, reason="closed: post-mortem complete")
    return incident


def history(*, session: Session, incident_id: int) -> Sequence[IncidentEvent]:
    """Every transition, oldest first."""
    return rows_of(session, IncidentEvent, incident_id)

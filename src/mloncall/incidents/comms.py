"""Communication: the one bridge per incident, subscribers, status updates with a stakeholder summary in
plain words, and the reminders when an update is overdue (the commander first, then the next escalation
step), the answer to "no updates being posted" and "duplicate channels or bridges"."""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.core import clock
from mloncall.core.durations import format_duration, parse_duration
from mloncall.core.errors import Conflict, InvalidInput
from mloncall.incidents import escalation, outbox
from mloncall.incidents.config import IncidentSettings
from mloncall.incidents.lifecycle import MAX_CADENCE, get_incident_or_raise, require_open, rows_of
from mloncall.incidents.models import EscalationPolicy, Incident, StatusUpdate
from mloncall.incidents.roles import current_roles
from mloncall.incidents.states import OPEN_STATES, MessageKind, Role, TimelineKind
from mloncall.incidents.timeline import add_entry, clip
from mloncall.stores.db import find_one

_PLACEHOLDERS = {"id", "model", "severity"}
_CHANNEL = re.compile(r"^[#@]?[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _check_bridge(value: str) -> str:
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.hostname:
        return value
    if _CHANNEL.match(value):
        return value
    raise InvalidInput(
        f"bad bridge {value!r}: give an http(s) URL or a chat channel name such as #incident-7"
    )


def bridge_from_template(template: str, incident: Incident) -> str:
    """The bridge the `[incidents] bridge` template names for this incident."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        unknown = sorted(fields - _PLACEHOLDERS)
        if unknown:
            raise InvalidInput(
                f"[incidents] bridge: unknown placeholder(s) {', '.join(unknown)}: use {{id}}, {{model}}, {{severity}}"
            )
        return template.format(
            id=incident.id, model=incident.model or "incident", severity=incident.severity.lower()
        )
    except (ValueError, IndexError) as exc:  # an unbalanced brace, a bad format spec, an empty `{}`
        raise InvalidInput(
            f"[incidents] bridge {template!r} is not a template ({exc}): use {{id}}, {{model}}, {{severity}}"
        ) from None


def open_bridge(
    *, session: Session, settings: IncidentSettings, incident_id: int, actor: str, bridge: str | None = None
) -> tuple[Incident, bool]:
    """The incident's one bridge, recorded the first time (from `bridge` or the template); asking again
    returns the first. A different bridge for an incident that has one is a Conflict. True if created now."""
    incident = get_incident_or_raise(session=session, incident_id=incident_id)
    wanted = _check_bridge(bridge) if bridge else None
    if incident.bridge is not None:
        if wanted is not None and wanted != incident.bridge:
            raise Conflict(
                f"incident {incident_id} already has its bridge {incident.bridge} (opened by {incident.bridge_by}): "
                "one bridge per incident"
            )
        return incident, False
    require_open(incident, "open a bridge")
    incident.bridge = wanted or _check_bridge(bridge_from_template(settings.bridge, incident))
    incident.bridge_at, incident.bridge_by = clock.now(), clip(actor, 128)
    add_entry(
        session=session, incident_id=incident_id, kind=TimelineKind.BRIDGE, actor=actor,
        text=f"bridge opened: {incident.bridge}", detail={"bridge": incident.bridge},
    )  # fmt: skip
    return incident, True


def subscribe(*, session: Session, incident_id: int, channels: Sequence[str], actor: str) -> Incident:
    """Add channels (by name, from `[alerts] channels`) to those told of the incident's updates."""
    incident = get_incident_or_raise(session=session, incident_id=incident_id)
    if not channels or not all(isinstance(c, str) and c.strip() for c in channels):
        raise InvalidInput("name at least one channel")
    current = [c for c in incident.subscribers if c != outbox.EVERY_CHANNEL]
    incident.subscribers = [*current, *(c for c in channels if c not in current)]
    add_entry(
        session=session, incident_id=incident_id, kind=TimelineKind.NOTE, actor=actor,
        text=f"subscribers: {', '.join(incident.subscribers)}",
    )  # fmt: skip
    return incident


def _when(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def stakeholder_summary(incident: Incident, update: StatusUpdate, now: dt.datetime) -> str:
    """What is affected, since when, what is being done, next update at: in plain words."""
    affected = update.impact or (
        f"predictions of model {incident.model}" if incident.model else incident.title
    )
    lines = [
        f"What is affected: {affected}.",
        f"Since: {_when(incident.detected_at)} ({format_duration(now - incident.detected_at)} ago).",
        f"What is being done: {update.status}.",
    ]
    if update.next_steps:
        lines.append(f"Next: {update.next_steps}.")
    if update.next_update_at is not None:
        lines.append(f"Next update at: {_when(update.next_update_at)}.")
    else:
        lines.append("This incident is resolved; no further updates are planned.")
    return "\n".join(lines)


def post_update(
    *,
    session: Session,
    incident_id: int,
    status: str,
    actor: str,
    impact: str = "",
    next_steps: str = "",
    next_update: Any = None,
) -> StatusUpdate:
    """Post a status update to the subscribers and the timeline; the next one is due after the cadence (or
    `next_update`, a duration)."""
    if not status or not status.strip():
        raise InvalidInput("an update needs a status: say what is happening")
    incident = get_incident_or_raise(session=session, incident_id=incident_id)
    require_open(incident, "post an update")
    now = clock.now()
    every = (
        parse_duration(next_update, what="next update", maximum=MAX_CADENCE)
        if next_update is not None
        else dt.timedelta(seconds=incident.cadence_s)
    )
    due = now + every if incident.state in OPEN_STATES else None
    update = StatusUpdate(
        incident_id=incident_id, at=now, author=clip(actor, 128), status=clip(status.strip()),
        impact=clip(impact.strip()), next_steps=clip(next_steps.strip()), next_update_at=due, summary="",
    )  # fmt: skip
    update.summary = stakeholder_summary(incident, update, now)
    session.add(update)
    incident.next_update_due, incident.update_reminders = due, 0
    outbox.queue(
        session, incident, kind=MessageKind.UPDATE, channels=incident.subscribers,
        title=f"[UPDATE] incident #{incident.id} {incident.severity}: {incident.title}", text=update.summary,
        body={"update": {"status": update.status, "impact": update.impact, "next": update.next_steps,
                         "next_update_at": due.isoformat() if due else None}},
    )  # fmt: skip
    add_entry(
        session=session, incident_id=incident_id, kind=TimelineKind.UPDATE, actor=actor,
        text=f"update: {update.status}", detail={"summary": update.summary},
    )  # fmt: skip
    session.flush()
    return update


def list_updates(*, session: Session, incident_id: int) -> Sequence[StatusUpdate]:
    return rows_of(session, StatusUpdate, incident_id)


# --- overdue updates -------------------------------------------------------------------------------------


def _commander(session: Session, incident: Incident) -> str | None:
    return current_roles(session=session, incident_id=incident.id)[Role.COMMANDER] or incident.acknowledged_by


def _remind_commander(
    session: Session, incident: Incident, settings: IncidentSettings, late: dt.timedelta
) -> None:
    who = _commander(session, incident) or "the on-call engineer"
    text = (
        f"{who}: incident #{incident.id} ({incident.severity}) is {format_duration(late)} late for its update "
        f"(every {format_duration(dt.timedelta(seconds=incident.cadence_s))}).\n"
        f"Post one: mloncall incident update {incident.id} --status TEXT"
    )
    outbox.queue(
        session, incident, kind=MessageKind.REMINDER, channels=settings.page_channels or [outbox.EVERY_CHANNEL],
        title=f"[REMINDER] incident #{incident.id}: an update is overdue", text=text,
        body={"reminder": {"overdue_update": True, "to": who}},
    )  # fmt: skip
    add_entry(
        session=session, incident_id=incident.id, kind=TimelineKind.REMINDER, actor="reminders",
        text=f"reminded {who}: the update is {format_duration(late)} overdue", detail={"to": who},
    )  # fmt: skip


def _escalate_silence(
    session: Session, incident: Incident, settings: IncidentSettings, late: dt.timedelta
) -> None:
    policy = find_one(session, EscalationPolicy, name=incident.escalation_policy or "")
    reason = f"no update for incident #{incident.id}: {format_duration(late)} overdue after a reminder"
    if policy is None:
        add_entry(
            session=session, incident_id=incident.id, kind=TimelineKind.REMINDER, actor="reminders",
            text=f"{reason}; no escalation policy to escalate to",
        )  # fmt: skip
        return
    index = min(incident.escalation_step + 1, len(policy.steps) - 1)
    escalation.page(
        session=session, incident=incident, target=policy.steps[index]["notify"], reason=reason,
        actor="reminders", settings=settings, step=index,
    )  # fmt: skip


def remind_overdue(
    *, session: Session, settings: IncidentSettings, now: dt.datetime | None = None
) -> list[int]:
    """Remind the commander when an update is overdue; after another half cadence, page the next escalation
    step. The ids of incidents reminded or escalated in this pass."""
    at = now or clock.now()
    due = session.scalars(
        sa.select(Incident)
        .where(Incident.state.in_(OPEN_STATES), Incident.next_update_due <= at, Incident.update_reminders < 2)
        .order_by(Incident.id)
    ).all()
    acted = []
    for incident in due:
        assert incident.next_update_due is not None
        late = at - incident.next_update_due
        if incident.update_reminders == 0:
            _remind_commander(session, incident, settings, late)
        elif late >= dt.timedelta(seconds=incident.cadence_s / 2):
            _escalate_silence(session, incident, settings, late)
        else:
            continue
        incident.update_reminders += 1
        acted.append(incident.id)
    return acted

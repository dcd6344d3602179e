"""Incident roles (commander, communications, operations, scribe): assign, hand off, renounce, with the
history of who assumed and renounced each, and the reminder when a role stays unclaimed too long."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.access import service as access
from mloncall.access.models import Principal
from mloncall.core import clock
from mloncall.core.durations import format_duration
from mloncall.core.errors import Conflict, InvalidInput
from mloncall.incidents import outbox
from mloncall.incidents.config import IncidentSettings
from mloncall.incidents.lifecycle import get_incident_or_raise, require_open, rows_of
from mloncall.incidents.models import Incident, RoleAssignment
from mloncall.incidents.states import OPEN_STATES, MessageKind, Role, TimelineKind
from mloncall.incidents.timeline import add_entry, clip


def parse_role(value: str) -> Role:
    aliases = {"ic": Role.COMMANDER, "incident-commander": Role.COMMANDER, "comms": Role.COMMUNICATIONS,
               "ops": Role.OPERATIONS}  # fmt: skip
    text = str(value).strip().lower()
    try:
        return aliases.get(text) or Role(text)
    except ValueError:
        raise InvalidInput(f"unknown role {value!r}: use one of {', '.join(Role)}") from None


def holder(*, session: Session, incident_id: int, role: str) -> RoleAssignment | None:
    """The current holder of a role, or None."""
    key = f"{incident_id}:{parse_role(role)}"
    return session.scalars(sa.select(RoleAssignment).where(RoleAssignment.holder_key == key)).one_or_none()


def current_roles(*, session: Session, incident_id: int) -> dict[str, str | None]:
    """Each role and who holds it now (None: unclaimed)."""
    rows = session.scalars(
        sa.select(RoleAssignment).where(
            RoleAssignment.incident_id == incident_id, RoleAssignment.holder_key.is_not(None)
        )
    ).all()
    held = {r.role: r.principal for r in rows}
    return {str(role): held.get(role) for role in Role}


def role_history(*, session: Session, incident_id: int) -> Sequence[RoleAssignment]:
    """Every assignment, oldest first (assumed and, once handed off or renounced, renounced)."""
    return rows_of(session, RoleAssignment, incident_id)


def _assume(
    session: Session, incident: Incident, role: Role, principal: str, actor: str, note: str
) -> RoleAssignment:
    row = RoleAssignment(
        incident_id=incident.id, role=role, principal=principal, holder_key=f"{incident.id}:{role}",
        assumed_at=clock.now(), assigned_by=clip(actor, 128), note=note,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row


def _record_change(
    session: Session, incident_id: int, role: Role, principal: str, change: str, actor: str
) -> None:
    """The timeline entry of a principal who assumed or renounced a role."""
    add_entry(
        session=session, incident_id=incident_id, kind=TimelineKind.ROLE, actor=actor,
        text=f"{principal} {change} {role}", detail={"role": role, "principal": principal, "change": change},
    )  # fmt: skip


def _role_change(
    session: Session, incident_id: int, role: str, principal: str, doing: str
) -> tuple[Incident, Role, Principal, RoleAssignment | None]:
    """What a role change needs, checked: the open incident, the role, the known principal, the holder."""
    incident = get_incident_or_raise(session=session, incident_id=incident_id)
    require_open(incident, doing)
    wanted = parse_role(role)
    person = access.get_principal_or_raise(session=session, name=principal)
    return incident, wanted, person, holder(session=session, incident_id=incident_id, role=wanted)


def assign(
    *, session: Session, incident_id: int, role: str, principal: str, actor: str, note: str = ""
) -> RoleAssignment:
    """Give an unclaimed role to a known principal (a held role changes hands by `handoff`)."""
    incident, wanted, person, current = _role_change(session, incident_id, role, principal, "assign a role")
    if current is not None:
        if current.principal == person.name:
            return current
        raise Conflict(
            f"{wanted} of incident {incident_id} is {current.principal}: "
            f"use `mloncall incident handoff {incident_id} {wanted} {person.name}`"
        )
    row = _assume(session, incident, wanted, person.name, actor, note)
    _record_change(session, incident_id, wanted, person.name, "assumed", actor)
    return row


def handoff(
    *, session: Session, incident_id: int, role: str, to: str, actor: str, note: str = ""
) -> RoleAssignment:
    """The holder of a role hands it to someone else: the first renounces, the second assumes."""
    incident, wanted, person, current = _role_change(session, incident_id, role, to, "hand off a role")
    if current is None:
        raise Conflict(f"nobody holds {wanted} of incident {incident_id}: use `incident assign` to give it")
    if current.principal == person.name:
        raise InvalidInput(
            f"{person.name} already holds {wanted} of incident {incident_id}: a handoff needs someone else"
        )
    current.renounced_at, current.holder_key = clock.now(), None
    session.flush()
    row = _assume(session, incident, wanted, person.name, actor, note)
    add_entry(
        session=session, incident_id=incident_id, kind=TimelineKind.ROLE, actor=actor,
        text=f"{current.principal} handed {wanted} to {person.name}" + (f": {note}" if note else ""),
        detail={"role": wanted, "from": current.principal, "to": person.name, "change": "handoff"},
    )  # fmt: skip
    return row


def renounce(*, session: Session, incident_id: int, role: str, actor: str) -> RoleAssignment:
    """The holder gives a role up; it is unclaimed until assigned again."""
    wanted = parse_role(role)
    current = holder(session=session, incident_id=incident_id, role=wanted)
    if current is None:
        raise Conflict(f"nobody holds {wanted} of incident {incident_id}")
    current.renounced_at, current.holder_key = clock.now(), None
    _record_change(session, incident_id, wanted, current.principal, "renounced", actor)
    return current


def remind_unclaimed(
    *, session: Session, settings: IncidentSettings, now: dt.datetime | None = None
) -> list[tuple[int, str]]:
    """Remind once per role and incident when a role stays unclaimed past the limit; (incident, role) pairs."""
    at = now or clock.now()
    limit = settings.role_claim_limit
    incidents = session.scalars(
        sa.select(Incident).where(Incident.state.in_(OPEN_STATES), Incident.opened_at <= at - limit)
    ).all()
    reminded: list[tuple[int, str]] = []
    for incident in incidents:
        held = current_roles(session=session, incident_id=incident.id)
        missing = [r for r, who in held.items() if who is None and r not in incident.role_reminders]
        if not missing:
            continue
        incident.role_reminders = [*incident.role_reminders, *missing]
        names = ", ".join(missing)
        text = (
            f"Incident #{incident.id} ({incident.severity}) has had no {names} for {format_duration(at - incident.opened_at)}.\n"
            f"Claim a role: mloncall incident assign {incident.id} ROLE PRINCIPAL"
        )
        outbox.queue(
            session, incident, kind=MessageKind.REMINDER, channels=settings.page_channels or [outbox.EVERY_CHANNEL],
            title=f"[REMINDER] incident #{incident.id}: unclaimed role(s) {names}", text=text,
            body={"reminder": {"unclaimed_roles": missing}},
        )  # fmt: skip
        add_entry(
            session=session, incident_id=incident.id, kind=TimelineKind.REMINDER, actor="reminders",
            text=f"reminder: unclaimed role(s) {names} after {format_duration(limit)}", detail={"roles": missing},
        )  # fmt: skip
        reminded.extend((incident.id, r) for r in missing)
    return reminded

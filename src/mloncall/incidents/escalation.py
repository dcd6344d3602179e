"""Escalation: policies of ordered steps (notify a schedule or a person, wait, repeat the whole K more
times), the pages they send, and the one rule that stops them: an incident that is acknowledged, resolved or
merged pages nobody. Every page is a `Page` row, a timeline entry and a queued message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.access import service as access
from mloncall.core import clock
from mloncall.core.durations import format_duration, parse_duration
from mloncall.core.errors import Conflict, InvalidInput, NotFound
from mloncall.incidents import outbox, schedules
from mloncall.incidents.config import IncidentSettings
from mloncall.incidents.models import EscalationPolicy, Incident, Page
from mloncall.incidents.states import IncidentState, MessageKind, TimelineKind
from mloncall.incidents.timeline import add_entry
from mloncall.stores.db import find_one, find_one_or_raise

_TARGET_KINDS = ("schedule", "person")


def parse_step(raw: Mapping[str, Any] | str) -> dict[str, Any]:
    """A step from `{"notify": "schedule:primary", "wait": "5m"}` or `schedule:primary=5m`."""
    if isinstance(raw, str):
        target, sep, wait = raw.partition("=")
        if not sep:
            raise InvalidInput(
                f"bad step {raw!r}: use TARGET=WAIT, e.g. schedule:primary=5m or person:alice=10m"
            )
        raw = {"notify": target.strip(), "wait": wait.strip()}
    if not isinstance(raw, Mapping) or set(raw) - {"notify", "wait"}:
        raise InvalidInput("a step is {notify: 'schedule:NAME' | 'person:NAME', wait: DURATION}")
    target = str(raw.get("notify", ""))
    kind, _, name = target.partition(":")
    if kind not in _TARGET_KINDS or not name:
        raise InvalidInput(f"bad step target {target!r}: use schedule:NAME or person:NAME")
    pause = parse_duration(raw.get("wait"), what=f"wait of step {target}", maximum=dt.timedelta(days=1))
    return {"notify": target, "wait": pause.total_seconds()}


def _check_target(session: Session, target: str) -> None:
    kind, _, name = target.partition(":")
    if kind == "schedule":
        schedules.get_schedule_or_raise(session=session, name=name)
    else:
        access.get_principal_or_raise(session=session, name=name)


def create_policy(
    *, session: Session, name: str, steps: Sequence[Mapping[str, Any] | str], repeat: int = 0, actor: str
) -> EscalationPolicy:
    """A policy of ordered steps, tried in turn and repeated `repeat` more times while nobody acknowledges."""
    schedules.check_name(name, "escalation policy")
    if find_one(session, EscalationPolicy, name=name) is not None:
        raise Conflict(f"escalation policy {name!r} already exists")
    if not steps:
        raise InvalidInput("an escalation policy needs at least one step")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 0 <= repeat <= 10:
        raise InvalidInput(f"repeat must be a whole number from 0 to 10, not {repeat!r}")
    parsed = [parse_step(s) for s in steps]
    for step in parsed:
        _check_target(session, step["notify"])
    policy = EscalationPolicy(
        name=name, steps=parsed, repeat=repeat, created_at=clock.now(), created_by=actor[:128]
    )
    session.add(policy)
    session.flush()
    return policy


def get_policy_or_raise(*, session: Session, name: str) -> EscalationPolicy:
    return find_one_or_raise(session, EscalationPolicy, what="escalation policy", name=name)


def list_policies(*, session: Session) -> Sequence[EscalationPolicy]:
    return session.scalars(sa.select(EscalationPolicy).order_by(EscalationPolicy.name)).all()


def describe(policy: EscalationPolicy) -> str:
    steps = ", then ".join(
        f"{s['notify']} (wait {format_duration(dt.timedelta(seconds=s['wait']))})" for s in policy.steps
    )
    return steps + (f"; repeated {policy.repeat} more time(s)" if policy.repeat else "")


# --- pages -----------------------------------------------------------------------------------------------


def resolve_target(session: Session, target: str, at: dt.datetime) -> str:
    """The person a target reaches now: a person, or whoever is on call on the schedule."""
    kind, _, name = target.partition(":")
    if kind == "person":
        return access.get_principal_or_raise(session=session, name=name).name
    if kind == "schedule":
        return schedules.on_call(schedules.get_schedule_or_raise(session=session, name=name), at).principal
    raise InvalidInput(f"bad target {target!r}: use schedule:NAME or person:NAME")


def next_target(*, session: Session, incident: Incident) -> str:
    """Whom escalating by hand pages when nobody is named: the policy's next step (its last, once there).
    InvalidInput without a policy; NotFound, with the fix, when the incident's policy does not exist."""
    if not incident.escalation_policy:
        raise InvalidInput(
            f"incident {incident.id} has no escalation policy: name a target (schedule:NAME or person:NAME)"
        )
    policy = find_one(session, EscalationPolicy, name=incident.escalation_policy)
    if policy is None:
        raise NotFound(
            f"its escalation policy {incident.escalation_policy!r} does not exist: create it (mloncall oncall "
            "policy create) or name a target (schedule:NAME or person:NAME)"
        )
    return str(policy.steps[min(incident.escalation_step + 1, len(policy.steps) - 1)]["notify"])


def page(
    *,
    session: Session,
    incident: Incident,
    target: str,
    reason: str,
    actor: str,
    settings: IncidentSettings,
    step: int | None = None,
    round_: int | None = None,
) -> Page:
    """Page whoever the target reaches now about an open incident; Conflict once it is no longer open."""
    if not incident.is_open:
        raise Conflict(f"incident {incident.id} is {incident.state}: nobody is paged for it any more")
    at = clock.now()
    who = resolve_target(session, target, at)
    title = f"[PAGE] incident #{incident.id} {incident.severity}: {incident.title}"
    text = "\n".join(
        [
            f"{who}, you are paged for incident #{incident.id} ({incident.severity}, {incident.state}).",
            f"why: {reason}",
            f"bridge: {incident.bridge}" if incident.bridge else "no bridge yet: mloncall incident bridge",
            f"acknowledge: mloncall incident ack {incident.id}",
        ]
    )
    message = outbox.queue(
        session, incident, kind=MessageKind.PAGE, channels=settings.page_channels or [outbox.EVERY_CHANNEL],
        title=title, text=text, body={"page": {"principal": who, "target": target, "step": step}},
    )  # fmt: skip
    row = Page(
        incident_id=incident.id, principal=who, target=target, step=step, round=round_, reason=reason,
        message_id=message.id, at=at,
    )  # fmt: skip
    session.add(row)
    add_entry(
        session=session, incident_id=incident.id, kind=TimelineKind.PAGE, actor=actor,
        text=f"paged {who} ({target}): {reason}", detail={"principal": who, "target": target, "step": step},
    )  # fmt: skip
    session.flush()
    return row


def _page_step(
    session: Session, incident: Incident, policy: EscalationPolicy, settings: IncidentSettings
) -> None:
    step = policy.steps[incident.escalation_step]
    page(
        session=session, incident=incident, target=step["notify"], actor="escalation", settings=settings,
        step=incident.escalation_step, round_=incident.escalation_round,
        reason=f"escalation policy {policy.name}, step {incident.escalation_step + 1} of {len(policy.steps)}"
        + (f", round {incident.escalation_round + 1}" if incident.escalation_round else "")
        + " (nobody has acknowledged)" * bool(incident.escalation_step or incident.escalation_round),
    )  # fmt: skip
    incident.next_escalation_at = clock.now() + dt.timedelta(seconds=step["wait"])


def start(*, session: Session, incident: Incident, settings: IncidentSettings) -> None:
    """Begin the severity's policy: page its first step now. A missing policy is noted, not fatal."""
    name = incident.escalation_policy
    policy = find_one(session, EscalationPolicy, name=name) if name else None
    if policy is None:
        if name:
            add_entry(
                session=session, incident_id=incident.id, kind=TimelineKind.PAGE, actor="escalation",
                text=f"no escalation policy {name!r}: nobody was paged (create it with mloncall oncall policy create)",
            )  # fmt: skip
        return
    incident.escalation_step, incident.escalation_round = 0, 0
    _page_step(session, incident, policy, settings)


def stop(incident: Incident) -> None:
    """No further escalation (acknowledged, resolved or merged)."""
    incident.next_escalation_at = None


def advance(*, session: Session, incident: Incident, settings: IncidentSettings) -> bool:
    """Go to the next step (or the next round) and page it; False when the policy is exhausted."""
    policy = find_one(session, EscalationPolicy, name=incident.escalation_policy or "")
    if policy is None or not incident.is_open:
        stop(incident)
        return False
    step, round_ = incident.escalation_step + 1, incident.escalation_round
    if step >= len(policy.steps):
        step, round_ = 0, round_ + 1
    if round_ > policy.repeat:
        stop(incident)
        add_entry(
            session=session, incident_id=incident.id, kind=TimelineKind.PAGE, actor="escalation",
            text=f"escalation policy {policy.name} exhausted after {policy.repeat + 1} round(s): nobody acknowledged",
        )  # fmt: skip
        return False
    incident.escalation_step, incident.escalation_round = step, round_
    _page_step(session, incident, policy, settings)
    return True


def escalate_due(
    *, session: Session, settings: IncidentSettings, now: dt.datetime | None = None
) -> list[int]:
    """Advance every unacknowledged incident whose step's wait is over; the ids of those escalated."""
    at = now or clock.now()
    due = session.scalars(
        sa.select(Incident)
        .where(Incident.state == IncidentState.TRIGGERED, Incident.next_escalation_at <= at)
        .order_by(Incident.id)
    ).all()
    return [i.id for i in due if advance(session=session, incident=i, settings=settings)]

"""An incident's timeline: entries written as things happen (alerts, roles, updates, pages, notes, and what
other parts of the platform report: runbook steps, grants), merged on reading with the deploys, canary steps,
aborts and rollbacks of the incident's model while it was open.

`add_entry` is the seam other domains and the runbook engine call: `kind` says what happened, `detail`
carries ids they can follow (`{"runbook_run": 7, "step": "rollback"}`, `{"grant": 3}`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.access import grants
from mloncall.access.permissions import scope_label
from mloncall.core import clock
from mloncall.core.errors import InvalidInput
from mloncall.core.records import Record
from mloncall.incidents.models import Incident, TimelineEntry
from mloncall.incidents.states import TimelineKind
from mloncall.rollout.models import Rollout, RolloutEvent
from mloncall.stores.db import get_or_raise


def clip(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def add_entry(
    *,
    session: Session,
    incident_id: int,
    kind: str,
    text: str,
    actor: str,
    detail: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> TimelineEntry:
    """Add one entry to an incident's timeline (any `TimelineKind`); the incident must exist."""
    get_or_raise(session, Incident, incident_id, what="incident")
    try:
        kind = TimelineKind(kind)
    except ValueError:
        raise InvalidInput(f"unknown timeline kind {kind!r}: use one of {', '.join(TimelineKind)}") from None
    if not text or not text.strip():
        raise InvalidInput("a timeline entry needs text")
    entry = TimelineEntry(
        incident_id=incident_id,
        at=at or clock.now(),
        kind=kind,
        actor=clip(actor, 128),
        text=clip(text.strip()),
        detail=detail or {},
    )
    session.add(entry)
    session.flush()
    return entry


def add_note(*, session: Session, incident_id: int, text: str, actor: str) -> TimelineEntry:
    """A manual note on the timeline."""
    return add_entry(session=session, incident_id=incident_id, kind=TimelineKind.NOTE, text=text, actor=actor)


@dataclass
class TimelineItem(Record):
    """One line of the timeline as shown: stored entries and the model's deploys alike."""

    at: dt.datetime
    kind: str
    actor: str
    text: str
    detail: dict[str, Any] = field(default_factory=dict)


def _deploys(session: Session, incident: Incident) -> list[TimelineItem]:
    """The rollout events of the incident's model from an hour before detection until it resolved."""
    if incident.model is None:
        return []
    since = incident.detected_at - dt.timedelta(hours=1)
    until = incident.resolved_at or clock.now()
    rows = session.execute(
        sa.select(RolloutEvent, Rollout)
        .join(Rollout, Rollout.id == RolloutEvent.rollout_id)
        .where(Rollout.model_name == incident.model, RolloutEvent.at >= since, RolloutEvent.at <= until)
        .order_by(RolloutEvent.at, RolloutEvent.id)
    ).all()
    return [
        TimelineItem(
            at=event.at,
            kind=TimelineKind.DEPLOY,
            actor=event.actor,
            text=f"rollout #{rollout.id} ({rollout.strategy} to v{rollout.to_version}): "
            f"{event.from_state or 'new'} -> {event.to_state} at {event.weight:.0%}"
            + (f": {event.reason}" if event.reason else ""),
            detail={"rollout": rollout.id, "to_state": event.to_state, "weight": event.weight},
        )
        for event, rollout in rows
    ]


def _grants(session: Session, incident: Incident) -> list[TimelineItem]:
    """The break-glass requests filed for the incident: filed, answered and ended, each a line."""
    items: list[TimelineItem] = []
    for row in grants.list_requests(session=session, incident_id=incident.id, limit=1000):
        what = f"access request #{row.id}: {row.requester} for {row.role} {scope_label(row.scope)}"
        detail = {"request": row.id, "requester": row.requester, "role": row.role, "scope": row.scope}
        items.append(
            TimelineItem(row.created_at, TimelineKind.GRANT, row.requester, f"{what}: {row.reason}", detail)
        )
        if row.decided_at is not None and row.decided_by is not None:
            answered = "approved until " + row.expires_at.isoformat() if row.expires_at else "denied"
            items.append(
                TimelineItem(row.decided_at, TimelineKind.GRANT, row.decided_by, f"{what} {answered}", detail)
            )
        if row.ended_at is not None and row.state != "denied":
            items.append(
                TimelineItem(row.ended_at, TimelineKind.GRANT, row.ended_by or "mloncall",
                             f"{what} {row.state} after {row.uses} use(s)", detail)
            )  # fmt: skip
    return items


def read(*, session: Session, incident_id: int) -> list[TimelineItem]:
    """The whole timeline, oldest first."""
    incident = get_or_raise(session, Incident, incident_id, what="incident")
    stored = session.scalars(
        sa.select(TimelineEntry).where(TimelineEntry.incident_id == incident_id).order_by(TimelineEntry.id)
    ).all()
    items = [
        TimelineItem(at=e.at, kind=e.kind, actor=e.actor, text=e.text, detail=dict(e.detail)) for e in stored
    ]
    items.extend(_deploys(session, incident))
    items.extend(_grants(session, incident))
    return sorted(items, key=lambda i: i.at)

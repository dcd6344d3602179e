"""Request and response models of the incidents domain (the API's bodies and the CLI's `--json`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from mloncall.access import grants
from mloncall.incidents import service


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class IncidentOut(_Out):
    id: int
    title: str
    severity: str
    state: str
    model: str | None
    opened_by: str
    detected_at: dt.datetime
    opened_at: dt.datetime
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    mitigated_at: dt.datetime | None
    resolved_at: dt.datetime | None
    closed_at: dt.datetime | None
    merged_into_id: int | None
    bridge: str | None
    lineage: list[Any]
    cadence_s: float
    next_update_due: dt.datetime | None
    escalation_policy: str | None
    next_escalation_at: dt.datetime | None
    subscribers: list[Any]
    resolution: str
    root_cause: str


class LinkOut(_Out):
    alert_id: int
    incident_id: int
    reason: str
    match: dict[str, Any]
    linked_at: dt.datetime
    linked_by: str
    detached_at: dt.datetime | None
    detached_by: str | None
    detach_reason: str | None


class RoleOut(_Out):
    role: str
    principal: str
    assumed_at: dt.datetime
    assigned_by: str
    renounced_at: dt.datetime | None


class GrantOut(_Out):
    """A break-glass grant (or request) filed for this incident: it stays listed after it ends."""

    id: int
    requester: str
    role: str
    scope: str
    state: str
    reason: str
    decided_by: str | None
    starts_at: dt.datetime | None
    expires_at: dt.datetime | None
    uses: int


class IncidentDetail(BaseModel):
    incident: IncidentOut
    roles: dict[str, str | None]
    alerts: list[LinkOut]
    role_history: list[RoleOut]
    grants: list[GrantOut] = Field(default_factory=list)


def detail(session: Session, incident_id: int) -> IncidentDetail:
    """An incident with its roles, alerts, role history and the access grants tied to it."""
    incident = service.get_incident_or_raise(session=session, incident_id=incident_id)
    return IncidentDetail(
        incident=IncidentOut.model_validate(incident),
        roles=service.current_roles(session=session, incident_id=incident_id),
        alerts=[LinkOut.model_validate(x) for x in service.links(session=session, incident_id=incident_id)],
        role_history=[
            RoleOut.model_validate(r) for r in service.role_history(session=session, incident_id=incident_id)
        ],
        grants=[
            GrantOut.model_validate(g) for g in grants.list_requests(session=session, incident_id=incident_id)
        ],
    )


class UpdateOut(_Out):
    id: int
    at: dt.datetime
    author: str
    status: str
    impact: str
    next_steps: str
    next_update_at: dt.datetime | None
    summary: str


class TimelineOut(BaseModel):
    at: dt.datetime
    kind: str
    actor: str
    text: str
    detail: dict[str, Any]


class PostmortemOut(_Out):
    incident_id: int
    status: str
    markdown: str
    facts: dict[str, Any]
    went_well: str
    went_badly: str
    drafted_at: dt.datetime
    completed_at: dt.datetime | None
    completed_by: str | None


class ActionItemOut(_Out):
    id: int
    incident_id: int
    title: str
    owner: str
    due: dt.date
    status: str
    done_at: dt.datetime | None


class ScheduleOut(_Out):
    name: str
    members: list[Any]
    time_zone: str
    starts: str
    shift_s: float
    description: str


class PolicyOut(_Out):
    name: str
    steps: list[Any]
    repeat: int


class OnCallOut(BaseModel):
    schedule: str
    principal: str
    since: dt.datetime
    until: dt.datetime
    override: bool


# --- requests --------------------------------------------------------------------------------------------

_TEXT = Field(min_length=1, max_length=4000)


class OpenIn(BaseModel):
    title: str = Field(min_length=1, max_length=255)
    severity: str = Field(min_length=1, max_length=8)
    model: str | None = Field(default=None, max_length=128)
    description: str = Field(default="", max_length=4000)
    cadence: str | float | None = Field(default=None, description="update cadence, e.g. 30m")
    policy: str | None = Field(default=None, max_length=64)
    alert_ids: list[int] = Field(default_factory=list, max_length=1000)


class NoteIn(BaseModel):
    note: str = Field(default="", max_length=4000)


class TextIn(BaseModel):
    text: str = _TEXT


class AssignIn(BaseModel):
    role: str = Field(min_length=1, max_length=32)
    principal: str = Field(min_length=1, max_length=128)
    note: str = Field(default="", max_length=4000)


class HandoffIn(BaseModel):
    role: str = Field(min_length=1, max_length=32)
    to: str = Field(min_length=1, max_length=128)
    note: str = Field(default="", max_length=4000)


class BridgeIn(BaseModel):
    bridge: str | None = Field(default=None, max_length=512)


class BridgeOut(BaseModel):
    bridge: str
    created: bool
    incident: IncidentOut


class UpdateIn(BaseModel):
    status: str = _TEXT
    impact: str = Field(default="", max_length=4000)
    next: str = Field(default="", max_length=4000)
    next_update: str | float | None = None


class EscalateIn(BaseModel):
    to: str | None = Field(default=None, max_length=160, description="schedule:NAME or person:NAME")
    reason: str = Field(default="escalated by hand", max_length=4000)


class ResolveIn(BaseModel):
    summary: str = _TEXT
    cause: str = Field(default="", max_length=4000)


class MergeIn(BaseModel):
    into: int = Field(ge=1)
    reason: str = Field(default="", max_length=4000)


class LinkIn(BaseModel):
    alert_id: int = Field(ge=1)
    reason: str = Field(default="", max_length=4000)


class CompleteIn(BaseModel):
    went_well: str = _TEXT
    went_badly: str = _TEXT
    root_cause: str = Field(default="", max_length=4000)


class ActionItemIn(BaseModel):
    title: str = _TEXT
    owner: str = Field(min_length=1, max_length=128)
    due: dt.date


class ScheduleIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    members: list[str] = Field(min_length=1, max_length=100)
    time_zone: str = Field(default="UTC", max_length=64)
    handoff: str = Field(default="09:00", max_length=5)
    shift: str | float = "1w"
    start: dt.date | None = None
    description: str = Field(default="", max_length=4000)


class OverrideIn(BaseModel):
    principal: str = Field(min_length=1, max_length=128)
    starts_at: dt.datetime
    ends_at: dt.datetime
    reason: str = Field(default="", max_length=4000)


class PolicyIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    steps: list[dict[str, Any] | str] = Field(min_length=1, max_length=20)
    repeat: int = 0

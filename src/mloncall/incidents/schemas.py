"""Request and response models of the incidents domain (the API's bodies and the CLI's `--json`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema
from pydantic.json_schema import JsonDict
from sqlalchemy.orm import Session

from mloncall.access import grants
from mloncall.core.durations import duration_pattern
from mloncall.core.names import NAME_PATTERN, TEXT_PATTERN
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

_TEXT = Field(min_length=1, max_length=4000, json_schema_extra={"pattern": TEXT_PATTERN})
_ROLE: JsonDict = {
    "enum": [
        "commander",
        "communications",
        "operations",
        "scribe",
        "ic",
        "incident-commander",
        "comms",
        "ops",
    ]
}
_SEVERITY = "^(SEV[1-5]|sev[1-5]|[1-5])$"
#: How often an incident's status is updated: at most a week (as `lifecycle.MAX_CADENCE`).
_CADENCE = duration_pattern(maximum=dt.timedelta(days=7))
_WEEK = 7 * 86400.0
_TARGET = NAME_PATTERN[1:-1]
#: An escalation step as text: `schedule:NAME=WAIT` or `person:NAME=WAIT`, the wait at most a day.
_WAIT = duration_pattern(maximum=dt.timedelta(days=1))
_STEP = f"^(schedule|person):{_TARGET}={_WAIT[1:-1]}$"
#: A rotation's shift: at least an hour, at most four weeks (as `schedules.create_schedule` checks).
_SHIFT = duration_pattern(minimum=dt.timedelta(hours=1), maximum=dt.timedelta(days=28))
_ZONES: list[JsonValue] = [*sorted(available_timezones())]
_MAX_REPEAT = 10


#: An escalation step as an object: whom to notify, and how long to wait for an acknowledgement.
_STEP_OBJECT: JsonDict = {
    "type": "object",
    "properties": {
        "notify": {"type": "string", "pattern": f"^(schedule|person):{_TARGET}$"},
        "wait": {"type": "string", "pattern": _WAIT},
    },
    "required": ["notify", "wait"],
    "additionalProperties": False,
}


def _text(pattern: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "pattern": pattern})


def _seconds(low: float, high: float) -> WithJsonSchema:
    return WithJsonSchema({"type": "number", "exclusiveMinimum": low, "maximum": high})


class OpenIn(BaseModel):
    title: str = Field(min_length=1, max_length=255, json_schema_extra={"pattern": TEXT_PATTERN})
    severity: str = Field(min_length=1, max_length=8, json_schema_extra={"pattern": _SEVERITY})
    model: str | None = Field(default=None, max_length=128)
    description: str = Field(default="", max_length=4000)
    cadence: Annotated[str, _text(_CADENCE)] | Annotated[float, _seconds(0, _WEEK)] | None = Field(
        default=None, description="update cadence, e.g. 30m"
    )
    policy: str | None = Field(default=None, max_length=64, json_schema_extra={"pattern": NAME_PATTERN})
    alert_ids: list[int] = Field(default_factory=list, max_length=1000)


class NoteIn(BaseModel):
    note: str = Field(default="", max_length=4000)


class TextIn(BaseModel):
    text: str = _TEXT


class AssignIn(BaseModel):
    role: str = Field(min_length=1, max_length=32, json_schema_extra=_ROLE)
    principal: str = Field(min_length=1, max_length=128)
    note: str = Field(default="", max_length=4000)


class HandoffIn(BaseModel):
    role: str = Field(min_length=1, max_length=32, json_schema_extra=_ROLE)
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
    next_update: Annotated[str, _text(_CADENCE)] | Annotated[float, _seconds(0, _WEEK)] | None = None


class EscalateIn(BaseModel):
    to: str | None = Field(
        default=None,
        max_length=160,
        description="schedule:NAME or person:NAME",
        json_schema_extra={"pattern": r"^(?:schedule:.{1,64}|person:.{1,128})$"},
    )
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
    name: str = Field(min_length=1, max_length=64, json_schema_extra={"pattern": NAME_PATTERN})
    members: list[str] = Field(min_length=1, max_length=100)
    time_zone: str = Field(default="UTC", max_length=64, json_schema_extra={"enum": _ZONES})
    handoff: str = Field(
        default="09:00", max_length=5, json_schema_extra={"pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}
    )
    shift: Annotated[str, _text(_SHIFT)] | Annotated[float, _seconds(3599, 28 * 86400)] = "1w"
    start: dt.date | None = None
    description: str = Field(default="", max_length=4000)


class OverrideIn(BaseModel):
    principal: str = Field(min_length=1, max_length=128)
    starts_at: dt.datetime
    ends_at: dt.datetime
    reason: str = Field(default="", max_length=4000)


class PolicyIn(BaseModel):
    name: str = Field(min_length=1, max_length=64, json_schema_extra={"pattern": NAME_PATTERN})
    steps: list[dict[str, Any] | str] = Field(
        min_length=1,
        max_length=20,
        json_schema_extra={"items": {"anyOf": [_STEP_OBJECT, {"type": "string", "pattern": _STEP}]}},
    )
    repeat: int = Field(0, json_schema_extra={"minimum": 0, "maximum": _MAX_REPEAT})

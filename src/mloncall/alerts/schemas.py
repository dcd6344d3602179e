"""Shapes of alert answers (HTTP routes and the CLI's `--json`) and of the requests the routes take,
including the inbound Alertmanager webhook (version 4) and PagerDuty Events API v2 bodies."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from mloncall.alerts.models import Alert, AlertGroup
from mloncall.alerts.rules import RuleFile
from mloncall.core.durations import duration_pattern
from mloncall.core.names import TEXT_PATTERN

# --- answers ---------------------------------------------------------------------------------------------
#
# Built from the tables with `model_validate(row)`. FastAPI dumps an answer and validates the dump again, so
# a field read from a differently named attribute accepts both names (`AliasChoices`).


class AlertOut(BaseModel):
    """One alert, as listed."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    fingerprint: str
    source: str
    external_id: str | None
    rule: str
    model: str | None
    state: str
    severity: str
    runbook: str | None
    labels: dict[str, Any]
    annotations: dict[str, Any]
    value: float | None
    group_id: int | None
    group: str | None
    acknowledged: bool
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    silenced_by: int | None = Field(
        default=None, description="the active silence muting this alert's notifications now"
    )
    active_since: dt.datetime
    fired_at: dt.datetime | None
    resolved_at: dt.datetime | None
    reopen_count: int
    last_evaluated_at: dt.datetime | None
    closed_at: dt.datetime | None
    closed_by: str | None
    root_cause: str | None
    action: str | None
    resolution_note: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @field_validator("group", mode="before")
    @classmethod
    def _group_key(cls, value: Any) -> Any:
        return value.key if isinstance(value, AlertGroup) else value

    @classmethod
    def from_alert(cls, alert: Alert, *, silenced_by: int | None = None) -> Self:
        """The alert's answer; `silenced_by` is not the alert's own: it is the silence in force now."""
        return cls.model_validate(alert).model_copy(update={"silenced_by": silenced_by})


class EventOut(BaseModel):
    """One entry of an alert's history."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: dt.datetime
    kind: str
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    evidence: dict[str, Any]
    silence_id: int | None


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: str
    channel_type: str
    attempt: int
    status: str
    error: str | None
    response_code: int | None
    at: dt.datetime


class NotificationOut(BaseModel):
    """One event told (or not) to the channels, with every delivery attempt."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    event: str
    status: str
    silence_id: int | None
    error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    deliveries: list[DeliveryOut]


class AlertDetail(AlertOut):
    """An alert with its latest evidence, its history and its notifications."""

    last_check: dict[str, Any]
    history: list[EventOut] = Field(validation_alias=AliasChoices("events", "history"))
    notifications: list[NotificationOut]


class GroupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    source: str
    labels: dict[str, Any]
    state: str
    alerts: list[int] = Field(validation_alias=AliasChoices("alert_ids", "alerts"))
    open_alerts: int
    updated_at: dt.datetime


class SilenceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    matchers: list[str]
    status: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    comment: str
    created_by: str
    created_at: dt.datetime
    expired_by: str | None

    @field_validator("matchers", mode="before")
    @classmethod
    def _matcher_text(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [f"{m['name']}{m['op']}{m['value']}" if isinstance(m, dict) else m for m in value]


class RuleSetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    sha256: str
    origin: str
    loaded_at: dt.datetime | None
    loaded_by: str | None
    group_by: list[str]
    hold_time: str
    rules: list[dict[str, Any]]

    @field_validator("rules", mode="before")
    @classmethod
    def _rule_dicts(cls, value: Any) -> Any:
        return [r.to_dict() for r in value.rules] if isinstance(value, RuleFile) else value


# --- requests --------------------------------------------------------------------------------------------


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class _Body(BaseModel):
    """A request body: no NUL characters anywhere (PostgreSQL cannot store them, so no backend takes them)."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        if _has_nul(data):
            raise ValueError("the body contains a NUL character")
        return data


_Text = Field(min_length=1, max_length=4000, json_schema_extra={"pattern": TEXT_PATTERN})
#: The matchers the document promises: `NAME=VALUE` and `NAME!=VALUE` (a regex matcher, `=~` or `!~`, is
#: accepted too when its regex compiles, which no pattern can say).
MATCHER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}!?=(?:[^~\s\x00][^\x00]{0,255})?$"
#: A matcher an alert without the label fails: `NAME=VALUE` (a value, not quotes) or `NAME!=` (nothing).
_NEEDS_VALUE = r"^[A-Za-z_][A-Za-z0-9_]{0,63}(=[^~\s\x00\"'][^\x00]{0,255}|!=)$"


class AckIn(_Body):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=4000)


class ResolveIn(_Body):
    model_config = ConfigDict(extra="forbid")
    note: str = _Text


class CloseIn(_Body):
    model_config = ConfigDict(extra="forbid")
    root_cause: str = _Text
    action: str = _Text
    note: str = Field(default="", max_length=4000)


class SilenceIn(_Body):
    model_config = ConfigDict(extra="forbid")
    matchers: list[Annotated[str, WithJsonSchema({"type": "string", "pattern": MATCHER_PATTERN})]] = Field(
        min_length=1,
        max_length=50,
        description='e.g. ["model=iris", "rule=~drift.*"]; a regex (`=~`, `!~`) must compile',
        # At least one matcher needs a label value, or the silence would mute every alert.
        json_schema_extra={"contains": {"pattern": _NEEDS_VALUE}},
    )
    duration: str = Field(
        min_length=1,
        max_length=32,
        json_schema_extra={"pattern": duration_pattern(maximum=dt.timedelta(days=365))},
        description="how long, e.g. 2h; at most 365 days",
    )
    comment: str = _Text
    starts_at: dt.datetime | None = None


class TransitionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    alert_id: int
    kind: str
    from_state: str | None
    to_state: str
    reason: str
    notify: str | None
    silenced_by: int | None


# --- inbound: Alertmanager webhook, version 4 -------------------------------------------------------------

_LabelSet = dict[str, str]


class AlertmanagerAlert(BaseModel):
    """One alert of an Alertmanager webhook notification."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: _LabelSet = Field(min_length=1)
    annotations: _LabelSet = Field(default_factory=dict)
    startsAt: dt.datetime
    endsAt: dt.datetime | None = None
    generatorURL: str = Field(default="", max_length=4000)
    fingerprint: str = Field(default="", max_length=64)

    @field_validator("startsAt", "endsAt")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamps must carry a time zone (RFC 3339)")
        return value


class AlertmanagerPayload(_Body):
    """The body Alertmanager's `webhook_config` receiver POSTs (payload version "4")."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    groupKey: str = Field(min_length=1, max_length=480)
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = Field(default="", max_length=255)
    groupLabels: _LabelSet = Field(default_factory=dict)
    commonLabels: _LabelSet = Field(default_factory=dict)
    commonAnnotations: _LabelSet = Field(default_factory=dict)
    externalURL: str = Field(default="", max_length=4000)
    alerts: list[AlertmanagerAlert] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _unique_alerts(self) -> AlertmanagerPayload:
        seen: set[str] = set()
        for i, alert in enumerate(self.alerts):
            key = alert.fingerprint or repr(sorted(alert.labels.items()))
            if key in seen:
                raise ValueError(f"alerts[{i}] repeats an alert of the same notification")
            seen.add(key)
        return self


# --- inbound: PagerDuty Events API v2 ---------------------------------------------------------------------


class PagerDutyPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1, max_length=1024)
    source: str = Field(min_length=1, max_length=255)
    severity: Literal["critical", "error", "warning", "info"]
    timestamp: dt.datetime | None = None
    component: str | None = Field(default=None, max_length=255)
    group: str | None = Field(default=None, max_length=255)
    class_: str | None = Field(default=None, alias="class", max_length=255)
    custom_details: dict[str, Any] | str | None = None


class PagerDutyEvent(_Body):
    """A PagerDuty Events API v2 event (`POST /v2/enqueue` body)."""

    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        # What `_needs` checks, stated in the document: a trigger carries a payload, the others a dedup_key.
        json_schema_extra={
            "if": {"properties": {"event_action": {"const": "trigger"}}},
            "then": {"required": ["payload"], "properties": {"payload": {"type": "object"}}},
            "else": {"required": ["dedup_key"], "properties": {"dedup_key": {"type": "string"}}},
        },
    )

    routing_key: str = Field(min_length=1, max_length=128)
    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str | None = Field(default=None, min_length=1, max_length=255)
    payload: PagerDutyPayload | None = None
    client: str | None = Field(default=None, max_length=255)
    client_url: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _needs(self) -> PagerDutyEvent:
        if self.event_action == "trigger" and self.payload is None:
            raise ValueError("a trigger event needs a payload with summary, source and severity")
        if self.event_action != "trigger" and not self.dedup_key:
            raise ValueError(f"an {self.event_action} event needs the dedup_key of the alert it refers to")
        return self

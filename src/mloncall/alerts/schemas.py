"""Shapes of alert answers (HTTP routes and the CLI's `--json`) and of the requests the routes take,
including the inbound Alertmanager webhook (version 4) and PagerDuty Events API v2 bodies."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mloncall.alerts.models import Alert, AlertEvent, AlertGroup, DeliveryAttempt, Notification, Silence
from mloncall.alerts.service import ActiveRules, group_state, silence_status

# --- answers ---------------------------------------------------------------------------------------------


class AlertOut(BaseModel):
    """One alert, as listed."""

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
    silenced_by: int | None = Field(description="the active silence muting this alert's notifications now")
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

    @classmethod
    def from_alert(cls, alert: Alert, *, silenced_by: int | None = None) -> AlertOut:
        return cls(
            id=alert.id,
            fingerprint=alert.fingerprint,
            source=alert.source,
            external_id=alert.external_id,
            rule=alert.rule,
            model=alert.model,
            state=alert.state,
            severity=alert.severity,
            runbook=alert.runbook,
            labels=alert.labels or {},
            annotations=alert.annotations or {},
            value=alert.value,
            group_id=alert.group_id,
            group=alert.group.key if alert.group is not None else None,
            acknowledged=alert.acknowledged,
            acknowledged_at=alert.acknowledged_at,
            acknowledged_by=alert.acknowledged_by,
            silenced_by=silenced_by,
            active_since=alert.active_since,
            fired_at=alert.fired_at,
            resolved_at=alert.resolved_at,
            reopen_count=alert.reopen_count,
            last_evaluated_at=alert.last_evaluated_at,
            closed_at=alert.closed_at,
            closed_by=alert.closed_by,
            root_cause=alert.root_cause,
            action=alert.action,
            resolution_note=alert.resolution_note,
            created_at=alert.created_at,
            updated_at=alert.updated_at,
        )


class EventOut(BaseModel):
    """One entry of an alert's history."""

    id: int
    at: dt.datetime
    kind: str
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    evidence: dict[str, Any]
    silence_id: int | None

    @classmethod
    def from_event(cls, event: AlertEvent) -> EventOut:
        return cls(
            id=event.id,
            at=event.at,
            kind=event.kind,
            from_state=event.from_state,
            to_state=event.to_state,
            actor=event.actor,
            reason=event.reason,
            evidence=event.evidence or {},
            silence_id=event.silence_id,
        )


class DeliveryOut(BaseModel):
    channel: str
    channel_type: str
    attempt: int
    status: str
    error: str | None
    response_code: int | None
    at: dt.datetime

    @classmethod
    def from_attempt(cls, d: DeliveryAttempt) -> DeliveryOut:
        return cls(
            channel=d.channel,
            channel_type=d.channel_type,
            attempt=d.attempt,
            status=d.status,
            error=d.error,
            response_code=d.response_code,
            at=d.at,
        )


class NotificationOut(BaseModel):
    """One event told (or not) to the channels, with every delivery attempt."""

    id: int
    event: str
    status: str
    silence_id: int | None
    error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    deliveries: list[DeliveryOut]

    @classmethod
    def from_notification(cls, n: Notification) -> NotificationOut:
        return cls(
            id=n.id,
            event=n.event,
            status=n.status,
            silence_id=n.silence_id,
            error=n.error,
            created_at=n.created_at,
            finished_at=n.finished_at,
            deliveries=[DeliveryOut.from_attempt(d) for d in n.deliveries],
        )


class AlertDetail(AlertOut):
    """An alert with its latest evidence, its history and its notifications."""

    last_check: dict[str, Any]
    history: list[EventOut]
    notifications: list[NotificationOut]

    @classmethod
    def from_alert_detail(cls, alert: Alert, *, silenced_by: int | None = None) -> AlertDetail:
        base = AlertOut.from_alert(alert, silenced_by=silenced_by).model_dump()
        return cls(
            **base,
            last_check=alert.last_check or {},
            history=[EventOut.from_event(e) for e in alert.events],
            notifications=[NotificationOut.from_notification(n) for n in alert.notifications],
        )


class GroupOut(BaseModel):
    id: int
    key: str
    source: str
    labels: dict[str, Any]
    state: str
    alerts: list[int]
    open_alerts: int
    updated_at: dt.datetime

    @classmethod
    def from_group(cls, group: AlertGroup, alerts: list[Alert]) -> GroupOut:
        return cls(
            id=group.id,
            key=group.key,
            source=group.source,
            labels=group.labels or {},
            state=group_state(alerts),
            alerts=[a.id for a in alerts],
            open_alerts=sum(a.state in ("pending", "firing") for a in alerts),
            updated_at=group.updated_at,
        )


class SilenceOut(BaseModel):
    id: int
    matchers: list[str]
    status: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    comment: str
    created_by: str
    created_at: dt.datetime
    expired_by: str | None

    @classmethod
    def from_silence(cls, s: Silence, at: dt.datetime | None = None) -> SilenceOut:
        return cls(
            id=s.id,
            matchers=[f"{m['name']}{m['op']}{m['value']}" for m in s.matchers],
            status=silence_status(s, at),
            starts_at=s.starts_at,
            ends_at=s.ends_at,
            comment=s.comment,
            created_by=s.created_by,
            created_at=s.created_at,
            expired_by=s.expired_by,
        )


class RuleSetOut(BaseModel):
    version: int
    sha256: str
    origin: str
    loaded_at: dt.datetime | None
    loaded_by: str | None
    group_by: list[str]
    hold_time: str
    rules: list[dict[str, Any]]

    @classmethod
    def from_active(cls, active: ActiveRules) -> RuleSetOut:
        spec = active.rules.to_dict()
        return cls(
            version=active.version,
            sha256=active.sha256,
            origin=active.origin,
            loaded_at=active.loaded_at,
            loaded_by=active.loaded_by,
            group_by=spec["group_by"],
            hold_time=spec["hold_time"],
            rules=spec["rules"],
        )


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


_Text = Field(min_length=1, max_length=4000)


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
    matchers: list[str] = Field(
        min_length=1, max_length=50, description='e.g. ["model=iris", "rule=~drift.*"]'
    )
    duration: str = Field(min_length=1, max_length=32, description="how long, e.g. 2h")
    comment: str = _Text
    starts_at: dt.datetime | None = None


class TransitionOut(BaseModel):
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

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

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

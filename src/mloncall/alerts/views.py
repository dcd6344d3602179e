"""Alert routes: list, show, acknowledge, resolve, close and silence alerts; the active rules; and the inbound
Alertmanager (webhook version 4) and PagerDuty (Events API v2) receivers.

Alertmanager sends the bearer token with `http_config: {authorization: {credentials: <token>}}` in its
`webhook_configs`; a PagerDuty-style sender sends it as `Authorization: Bearer <token>`. Both need a role that
may `alerts.write` (operator). Notifications queued by a request are sent after its answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from mloncall.access.models import Principal
from mloncall.alerts import inbound, notify, service
from mloncall.alerts.schemas import (
    AckIn,
    AlertDetail,
    AlertmanagerPayload,
    AlertOut,
    CloseIn,
    GroupOut,
    PagerDutyEvent,
    ResolveIn,
    RuleSetOut,
    SilenceIn,
    SilenceOut,
    TransitionOut,
)
from mloncall.api.deps import (
    AlertIdPath,
    Change,
    DbSession,
    LimitQuery,
    SilenceIdPath,
    allow,
    audit_note,
    change,
    send_later,
)
from mloncall.core.durations import parse_duration

log = logging.getLogger("mloncall.alerts")

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])


SendLater = Annotated[
    Callable[[], None], send_later(notify.send_pending, log=log, what="alert notifications")
]


def _transition(t: service.Transition | None) -> TransitionOut | None:
    return TransitionOut.model_validate(t) if t is not None else None


class AlertChange(BaseModel):
    alert: AlertOut
    transition: TransitionOut | None


class RulesIn(BaseModel):
    yaml: str = Field(min_length=1, max_length=1_000_000, description="the rules file's text")
    origin: str = Field(default="api", max_length=512)


class RulesLoaded(BaseModel):
    changed: bool
    rules: RuleSetOut


@router.get("", summary="Alerts, newest first")
def list_alerts(
    session: DbSession,
    state: Annotated[
        str | None,
        Query(
            description="pending, firing, resolved, inactive, closed or open",
            json_schema_extra={"pattern": "^(pending|firing|resolved|inactive|closed|open)$"},
        ),
    ] = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    rule: Annotated[str | None, Query(max_length=255)] = None,
    source: Annotated[str | None, Query(max_length=32)] = None,
    limit: LimitQuery = 100,
    _: Principal = allow("alerts:read"),
) -> list[AlertOut]:
    alerts = service.list_alerts(
        session=session, state=state, model=model, rule=rule, source=source, limit=limit
    )
    silences = service.active_silences(session=session)
    return [
        AlertOut.from_alert(
            a, silenced_by=_silence_id(service.silenced_by(session=session, alert=a, silences=silences))
        )
        for a in alerts
    ]


def _silence_id(silence: Any) -> int | None:
    return silence.id if silence is not None else None


@router.get("/groups", summary="Alert groups (by model and runbook, or Alertmanager's groupKey)")
def list_groups(
    session: DbSession,
    all_groups: Annotated[bool, Query(alias="all", description="also groups without an open alert")] = False,
    _: Principal = allow("alerts:read"),
) -> list[GroupOut]:
    return [
        GroupOut.model_validate(g) for g, _ in service.list_groups(session=session, include_quiet=all_groups)
    ]


@router.get("/rules", summary="The active rule set")
def show_rules(session: DbSession, _: Principal = allow("alerts:read")) -> RuleSetOut:
    return RuleSetOut.model_validate(service.active_rules(session=session))


@router.put(
    "/rules", summary="Load a rules file (refused whole, with lines and reasons, if anything is wrong)"
)
def load_rules(
    body: RulesIn, request: Request, session: DbSession, principal: Principal = allow("alerts:manage")
) -> RulesLoaded:
    active, changed = service.load_rules(
        session=session, text=body.yaml, origin=body.origin, actor=principal.name
    )
    audit_note(request, version=active.version, sha256=active.sha256, changed=changed)
    return RulesLoaded(changed=changed, rules=RuleSetOut.model_validate(active))


@router.get("/silences", summary="Silences, newest first")
def list_silences(
    session: DbSession,
    all_silences: Annotated[bool, Query(alias="all", description="also expired silences")] = False,
    _: Principal = allow("alerts:read"),
) -> list[SilenceOut]:
    return [
        SilenceOut.model_validate(s)
        for s in service.list_silences(session=session, include_expired=all_silences)
    ]


@router.post("/silences", status_code=201, summary="Silence the notifications of matching alerts for a while")
def create_silence(
    body: SilenceIn, request: Request, session: DbSession, principal: Principal = allow("alerts:manage")
) -> SilenceOut:
    audit_note(request, matchers=body.matchers, duration=body.duration)
    silence = service.create_silence(
        session=session,
        matchers=body.matchers,
        duration=parse_duration(body.duration, what="silence length"),
        comment=body.comment,
        actor=principal.name,
        starts_at=body.starts_at,
    )
    audit_note(request, silence_id=silence.id)
    return SilenceOut.model_validate(silence)


@router.post("/silences/{silence_id}/expire", summary="End a silence now")
def expire_silence(
    silence_id: SilenceIdPath, session: DbSession, principal: Principal = allow("alerts:manage")
) -> SilenceOut:
    return SilenceOut.model_validate(
        service.expire_silence(session=session, silence_id=silence_id, actor=principal.name)
    )


@router.post("/alertmanager", summary="Alertmanager webhook receiver (payload version 4)")
def alertmanager_webhook(
    payload: AlertmanagerPayload,
    request: Request,
    session: DbSession,
    send_later: SendLater,
    principal: Principal = allow("alerts:manage"),
) -> dict[str, Any]:
    audit_note(request, group_key=payload.groupKey, status=payload.status, alerts=len(payload.alerts))
    result = inbound.receive_alertmanager(
        session=session, payload=payload, actor=f"alertmanager:{principal.name}"
    )
    if any(a.transition is not None and a.transition.notify for a in result.alerts):
        send_later()
    return result.to_dict()


@router.post(
    "/pagerduty", status_code=202, summary="PagerDuty Events API v2 receiver (trigger, acknowledge, resolve)"
)
def pagerduty_event(
    event: PagerDutyEvent,
    request: Request,
    session: DbSession,
    send_later: SendLater,
    principal: Principal = allow("alerts:manage"),
) -> dict[str, Any]:
    audit_note(request, event_action=event.event_action, dedup_key=event.dedup_key)
    result = inbound.receive_pagerduty(session=session, event=event, actor=f"pagerduty:{principal.name}")
    if result.transition is not None and result.transition.notify:
        send_later()
    return result.to_dict()


@router.get("/{alert_id}", summary="An alert with its evidence, history and notifications")
def show_alert(alert_id: AlertIdPath, session: DbSession, _: Principal = allow("alerts:read")) -> AlertDetail:
    alert = service.get_alert_or_raise(session=session, alert_id=alert_id)
    return AlertDetail.from_alert(
        alert, silenced_by=_silence_id(service.silenced_by(session=session, alert=alert))
    )


@router.post("/{alert_id}/ack", summary="Acknowledge an alert (operator)")
def acknowledge(
    alert_id: AlertIdPath, body: AckIn | None = None, c: Change = change("alerts:manage")
) -> AlertChange:
    alert, t = service.acknowledge(
        session=c.session, alert_id=alert_id, actor=c.actor, **dict(body or AckIn())
    )
    return AlertChange(alert=AlertOut.from_alert(alert), transition=_transition(t))


@router.post("/{alert_id}/resolve", summary="Resolve an alert by hand, with a note (operator)")
def resolve(
    alert_id: AlertIdPath, body: ResolveIn, send_later: SendLater, c: Change = change("alerts:manage")
) -> AlertChange:
    c.note(**dict(body))
    alert, t = service.resolve(session=c.session, alert_id=alert_id, actor=c.actor, **dict(body))
    if t.notify:
        send_later()
    return AlertChange(alert=AlertOut.from_alert(alert), transition=_transition(t))


@router.post("/{alert_id}/close", summary="Close an investigated alert with root cause and action (operator)")
def close(
    alert_id: AlertIdPath, body: CloseIn, send_later: SendLater, c: Change = change("alerts:manage")
) -> AlertOut:
    c.note(root_cause=body.root_cause, action=body.action)
    alert = service.close(session=c.session, alert_id=alert_id, actor=c.actor, **dict(body))
    send_later()
    return AlertOut.from_alert(alert)

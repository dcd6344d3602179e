"""HTTP routes of incidents and on-call: thin over `mloncall.incidents.service`; messages a change queues are
sent after the answer (the scheduler's next pass retries what fails)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session

from mloncall.access.models import Principal
from mloncall.api.deps import CurrentContext, DbSession, allow, send_later
from mloncall.core.errors import Conflict, NotFound
from mloncall.core.names import MAX_ID
from mloncall.incidents import outbox, service
from mloncall.incidents.models import Incident
from mloncall.incidents.schemas import (
    ActionItemIn,
    ActionItemOut,
    AssignIn,
    BridgeIn,
    BridgeOut,
    CompleteIn,
    EscalateIn,
    HandoffIn,
    IncidentDetail,
    IncidentOut,
    LinkIn,
    LinkOut,
    MergeIn,
    NoteIn,
    OnCallOut,
    OpenIn,
    OverrideIn,
    PolicyIn,
    PolicyOut,
    PostmortemOut,
    ResolveIn,
    RoleOut,
    ScheduleIn,
    ScheduleOut,
    TextIn,
    TimelineOut,
    UpdateIn,
    UpdateOut,
    detail,
)

log = logging.getLogger("mloncall.incidents")

router = APIRouter(prefix="/api/v1", tags=["incidents"])

IncidentId = Annotated[int, Path(ge=1, le=MAX_ID, description="incident id")]


SendLater = Annotated[Callable[[], None], send_later(outbox.send_pending, log=log, what="incident messages")]


def _settings(ctx: CurrentContext) -> service.IncidentSettings:
    return service.incident_settings(ctx.settings)


Settings = Annotated[service.IncidentSettings, Depends(_settings)]


def _detail(session: Session, incident: Incident) -> IncidentDetail:
    return detail(session, incident.id)


@router.get("/incidents", summary="Incidents, newest first")
def list_incidents(
    session: DbSession,
    state: Annotated[
        str | None,
        Query(
            max_length=16,
            json_schema_extra={"pattern": "^(triggered|acknowledged|mitigated|resolved|closed|merged|open)$"},
        ),
    ] = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    _: Principal = allow("incidents:read"),
) -> list[IncidentOut]:
    rows = service.list_incidents(session=session, state=state, model=model, limit=limit)
    return [IncidentOut.model_validate(r) for r in rows]


@router.post("/incidents", status_code=201, summary="Open an incident (optionally from alerts)")
def open_incident(
    body: OpenIn,
    session: DbSession,
    settings: Settings,
    send_later: SendLater,
    who: Principal = allow("incidents:manage"),
) -> IncidentDetail:
    fields = {k: v for k, v in body if k != "alert_ids"}
    incident = service.open_incident(session=session, settings=settings, actor=who.name, **fields)
    service.link_opening_alerts(
        session=session, incident_id=incident.id, alert_ids=body.alert_ids, actor=who.name
    )
    send_later()
    return _detail(session, incident)


@router.get("/incidents/{incident_id}", summary="One incident, its roles and alerts")
def show(
    incident_id: IncidentId, session: DbSession, _: Principal = allow("incidents:read")
) -> IncidentDetail:
    return _detail(session, service.get_incident_or_raise(session=session, incident_id=incident_id))


@router.post("/incidents/{incident_id}/ack", summary="Acknowledge: escalation stops")
def ack(
    incident_id: IncidentId, body: NoteIn, session: DbSession, who: Principal = allow("incidents:manage")
) -> IncidentOut:
    return IncidentOut.model_validate(
        service.acknowledge(session=session, incident_id=incident_id, actor=who.name, note=body.note)
    )


@router.post("/incidents/{incident_id}/assign", summary="Give an unclaimed role")
def assign(
    incident_id: IncidentId, body: AssignIn, session: DbSession, who: Principal = allow("incidents:manage")
) -> RoleOut:
    with _named_in_body(session, incident_id):
        row = service.assign(session=session, incident_id=incident_id, actor=who.name, **dict(body))
    return RoleOut.model_validate(row)


@router.post("/incidents/{incident_id}/handoff", summary="Hand a role to someone else")
def handoff(
    incident_id: IncidentId, body: HandoffIn, session: DbSession, who: Principal = allow("incidents:manage")
) -> RoleOut:
    with _named_in_body(session, incident_id):
        row = service.handoff(
            session=session, incident_id=incident_id, role=body.role, to=body.to, actor=who.name,
            note=body.note,
        )  # fmt: skip
    return RoleOut.model_validate(row)


@router.post(
    "/incidents/{incident_id}/bridge", summary="The incident's one bridge (the first, if asked again)"
)
def bridge(
    incident_id: IncidentId,
    body: BridgeIn,
    session: DbSession,
    settings: Settings,
    who: Principal = allow("incidents:manage"),
) -> BridgeOut:
    incident, created = service.open_bridge(
        session=session, settings=settings, incident_id=incident_id, actor=who.name, bridge=body.bridge
    )
    return BridgeOut(
        bridge=str(incident.bridge), created=created, incident=IncidentOut.model_validate(incident)
    )


@router.post(
    "/incidents/{incident_id}/updates", status_code=201, summary="Post a status update to subscribers"
)
def update(
    incident_id: IncidentId,
    body: UpdateIn,
    session: DbSession,
    send_later: SendLater,
    who: Principal = allow("incidents:manage"),
) -> UpdateOut:
    row = service.post_update(
        session=session, incident_id=incident_id, status=body.status, actor=who.name, impact=body.impact,
        next_steps=body.next, next_update=body.next_update,
    )  # fmt: skip
    send_later()
    return UpdateOut.model_validate(row)


@router.get("/incidents/{incident_id}/updates", summary="Every status update")
def updates(
    incident_id: IncidentId, session: DbSession, _: Principal = allow("incidents:read")
) -> list[UpdateOut]:
    return [
        UpdateOut.model_validate(u) for u in service.list_updates(session=session, incident_id=incident_id)
    ]


@router.post("/incidents/{incident_id}/escalate", summary="Page the next step (or a named target) now")
def escalate(
    incident_id: IncidentId, body: EscalateIn, session: DbSession, settings: Settings, send_later: SendLater,
    who: Principal = allow("incidents:manage"),
) -> dict[str, Any]:  # fmt: skip
    with _named_in_body(session, incident_id) as incident:
        target = body.to or service.next_target(session=session, incident=incident)
        page = service.page(
            session=session,
            incident=incident,
            target=target,
            reason=body.reason,
            actor=who.name,
            settings=settings,
        )
    send_later()
    return {"incident": incident.id, "paged": page.principal, "target": page.target}


@contextmanager
def _named_in_body(session: Session, incident_id: int) -> Iterator[Incident]:
    """The path's incident, 404 if it is missing; then what the body names (a person, a schedule, the
    incident's escalation policy, another incident, an alert) missing is 409: a 404 would say the
    incident itself is gone."""
    incident = service.get_incident_or_raise(session=session, incident_id=incident_id)
    try:
        yield incident
    except NotFound as exc:
        raise Conflict(f"incident {incident_id} exists, but {exc.message}", details=exc.details) from exc


@router.post("/incidents/{incident_id}/mitigate", summary="The impact is contained")
def mitigate(
    incident_id: IncidentId, body: TextIn, session: DbSession, who: Principal = allow("incidents:manage")
) -> IncidentOut:
    return IncidentOut.model_validate(
        service.mitigate(session=session, incident_id=incident_id, actor=who.name, note=body.text)
    )


@router.post("/incidents/{incident_id}/resolve", summary="Resolve: no more pages, subscribers told")
def resolve(
    incident_id: IncidentId,
    body: ResolveIn,
    session: DbSession,
    send_later: SendLater,
    who: Principal = allow("incidents:manage"),
) -> IncidentOut:
    incident = service.resolve(
        session=session, incident_id=incident_id, actor=who.name, summary=body.summary, cause=body.cause
    )
    send_later()
    return IncidentOut.model_validate(incident)


@router.post("/incidents/{incident_id}/close", summary="Close (only once the post-mortem is complete)")
def close(
    incident_id: IncidentId, session: DbSession, who: Principal = allow("incidents:manage")
) -> IncidentOut:
    return IncidentOut.model_validate(service.close(session=session, incident_id=incident_id, actor=who.name))


@router.post("/incidents/{incident_id}/merge", summary="Merge this duplicate into another incident")
def merge(
    incident_id: IncidentId, body: MergeIn, session: DbSession, who: Principal = allow("incidents:manage")
) -> IncidentOut:
    with _named_in_body(session, incident_id):
        row = service.merge(
            session=session, duplicate_id=incident_id, into_id=body.into, actor=who.name, reason=body.reason
        )
    return IncidentOut.model_validate(row)


@router.post("/incidents/{incident_id}/unmerge", summary="Undo a merge")
def unmerge(
    incident_id: IncidentId, body: NoteIn, session: DbSession, who: Principal = allow("incidents:manage")
) -> IncidentOut:
    return IncidentOut.model_validate(
        service.unmerge(session=session, incident_id=incident_id, actor=who.name, reason=body.note)
    )


@router.post("/incidents/{incident_id}/alerts", status_code=201, summary="Join an alert by hand")
def link(
    incident_id: IncidentId, body: LinkIn, session: DbSession, who: Principal = allow("incidents:manage")
) -> LinkOut:
    with _named_in_body(session, incident_id):
        row = service.link_alert(
            session=session,
            incident_id=incident_id,
            alert_id=body.alert_id,
            actor=who.name,
            reason=body.reason or "by hand",
        )
    return LinkOut.model_validate(row)


@router.post("/incidents/{incident_id}/alerts/{alert_id}/detach", summary="Undo an alert's join")
def detach(
    incident_id: IncidentId, alert_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: NoteIn, session: DbSession,
    who: Principal = allow("incidents:manage"),
) -> LinkOut:  # fmt: skip
    row = service.detach(
        session=session, incident_id=incident_id, alert_id=alert_id, actor=who.name, reason=body.note
    )
    return LinkOut.model_validate(row)


@router.post("/incidents/{incident_id}/notes", status_code=201, summary="A note on the timeline")
def note(
    incident_id: IncidentId, body: TextIn, session: DbSession, who: Principal = allow("incidents:manage")
) -> TimelineOut:
    e = service.add_note(session=session, incident_id=incident_id, text=body.text, actor=who.name)
    return TimelineOut(at=e.at, kind=e.kind, actor=e.actor, text=e.text, detail=e.detail)


@router.get("/incidents/{incident_id}/timeline", summary="The timeline, oldest first")
def timeline(
    incident_id: IncidentId, session: DbSession, _: Principal = allow("incidents:read")
) -> list[TimelineOut]:
    return [TimelineOut(**i.__dict__) for i in service.timeline(session=session, incident_id=incident_id)]


@router.post("/incidents/{incident_id}/postmortem", summary="Draft the post-mortem from the evidence")
def postmortem(
    incident_id: IncidentId,
    session: DbSession,
    ctx: CurrentContext,
    who: Principal = allow("incidents:manage"),
) -> PostmortemOut:
    return PostmortemOut.model_validate(
        service.draft(session=session, store=ctx.store, incident_id=incident_id, actor=who.name)
    )


@router.post("/incidents/{incident_id}/postmortem/complete", summary="Mark the post-mortem complete")
def complete(
    incident_id: IncidentId, body: CompleteIn, session: DbSession, ctx: CurrentContext,
    who: Principal = allow("incidents:manage"),
) -> PostmortemOut:  # fmt: skip
    pm = service.complete(
        session=session, store=ctx.store, incident_id=incident_id, actor=who.name, **dict(body)
    )
    return PostmortemOut.model_validate(pm)


@router.post("/incidents/{incident_id}/action-items", status_code=201, summary="Add an action item")
def add_item(
    incident_id: IncidentId,
    body: ActionItemIn,
    session: DbSession,
    who: Principal = allow("incidents:manage"),
) -> ActionItemOut:
    row = service.add_action_item(session=session, incident_id=incident_id, actor=who.name, **dict(body))
    return ActionItemOut.model_validate(row)


@router.post("/action-items/{item_id}/done", summary="Mark an action item done")
def item_done(
    item_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    session: DbSession,
    who: Principal = allow("incidents:manage"),
) -> ActionItemOut:
    return ActionItemOut.model_validate(
        service.finish_action_item(session=session, item_id=item_id, actor=who.name)
    )


# --- on call ---------------------------------------------------------------------------------------------


@router.get("/oncall/now", summary="Who is on call now")
def oncall_now(
    session: DbSession,
    schedule: Annotated[str | None, Query(max_length=64)] = None,
    _: Principal = allow("incidents:read"),
) -> list[OnCallOut]:
    return [OnCallOut(**o.__dict__) for o in service.oncall_now(session=session, schedule=schedule)]


@router.post("/oncall/schedules", status_code=201, summary="Create a rotation")
def create_schedule(
    body: ScheduleIn, session: DbSession, who: Principal = allow("incidents:manage")
) -> ScheduleOut:
    row = service.create_schedule(session=session, actor=who.name, **dict(body))
    return ScheduleOut.model_validate(row)


@router.get("/oncall/schedules", summary="Every schedule")
def schedules(session: DbSession, _: Principal = allow("incidents:read")) -> list[ScheduleOut]:
    return [ScheduleOut.model_validate(s) for s in service.list_schedules(session=session)]


@router.post(
    "/oncall/schedules/{name}/overrides", status_code=201, summary="Someone takes the shift for a while"
)
def override(
    name: Annotated[str, Path(max_length=64)],
    body: OverrideIn,
    session: DbSession,
    who: Principal = allow("incidents:manage"),
) -> dict[str, Any]:
    o = service.add_override(session=session, schedule=name, actor=who.name, **dict(body))
    return {
        "id": o.id,
        "schedule": name,
        "principal": o.principal,
        "starts_at": o.starts_at,
        "ends_at": o.ends_at,
    }


@router.get("/oncall/schedules/{name}/ical", summary="The shifts as an iCalendar feed")
def ical(
    name: Annotated[str, Path(max_length=64)],
    session: DbSession,
    days: Annotated[int, Query(ge=1, le=366)] = 28,
    member: Annotated[str | None, Query(max_length=128)] = None,
    _: Principal = allow("incidents:read"),
) -> Response:
    data = service.to_ical(session=session, schedule=name, days=days, member=member)
    return Response(content=data, media_type="text/calendar")


@router.post("/oncall/policies", status_code=201, summary="Create an escalation policy")
def create_policy(
    body: PolicyIn, session: DbSession, who: Principal = allow("incidents:manage")
) -> PolicyOut:
    row = service.create_policy(session=session, actor=who.name, **dict(body))
    return PolicyOut.model_validate(row)


@router.get("/oncall/policies", summary="Every escalation policy")
def policies(session: DbSession, _: Principal = allow("incidents:read")) -> list[PolicyOut]:
    return [PolicyOut.model_validate(p) for p in service.list_policies(session=session)]

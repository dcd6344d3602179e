"""Runbook routes: list and show runbooks, start and resume runs, list runs, a run's status (and its
acceptance judged again), and its export. A run executes after the response is sent: poll its status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import PlainTextResponse

from mloncall.access.models import Principal
from mloncall.api.deps import CurrentContext, DbSession, allow, audit_note
from mloncall.core.errors import InvalidInput
from mloncall.runbooks import engine, export, service
from mloncall.runbooks.catalog import all_runbooks, get_runbook
from mloncall.runbooks.schemas import ResumeRequest, RunRequest
from mloncall.stores.context import Context

router = APIRouter(prefix="/api/v1/runbooks", tags=["runbooks"])


def _record(ctx: Context, run_id: int) -> dict[str, Any]:
    with ctx.db.session() as s:
        return export.run_dict(s, service.get_run_or_raise(session=s, run_id=run_id), events=False)


@router.get("", summary="The runbooks this installation can run")
def list_runbooks(_: Principal = allow("runbooks:read")) -> list[dict[str, Any]]:
    return [export.runbook_dict(b) for b in all_runbooks()]


@router.get("/runs", summary="Runs, newest first")
def list_runs(
    session: DbSession,
    runbook: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    _: Principal = allow("runbooks:read"),
) -> list[dict[str, Any]]:
    if runbook is not None:
        get_runbook(runbook)
    return [
        export.run_dict(session, r, events=False)
        for r in service.list_runs(session=session, runbook=runbook, limit=limit)
    ]


@router.get("/runs/{run_id}", summary="A run's steps, their state and evidence, and its acceptance")
def status(
    run_id: int,
    session: DbSession,
    _: Principal = allow("runbooks:read"),
) -> dict[str, Any]:
    return export.run_dict(session, service.get_run_or_raise(session=session, run_id=run_id))


@router.post("/runs/{run_id}/acceptance", summary="Judge a finished run's acceptance criteria again, now")
def recheck(
    run_id: int, request: Request, ctx: CurrentContext, principal: Annotated[Principal, allow("runbooks:run")]
) -> dict[str, Any]:
    acceptance = engine.recheck(ctx, run_id, actor=principal.name)
    audit_note(request, run=run_id, outcome=acceptance["outcome"])
    return {**_record(ctx, run_id), "acceptance": acceptance}


@router.get("/runs/{run_id}/export", summary="The run as a report: markdown or json")
def export_run(
    run_id: int,
    session: DbSession,
    format: Annotated[str, Query(json_schema_extra={"enum": ["markdown", "json"]})] = "markdown",
    _: Principal = allow("runbooks:read"),
) -> PlainTextResponse:
    if format not in export.FORMATS:
        raise InvalidInput(f"unknown format {format!r}: use markdown or json")
    text = export.export(session, service.get_run_or_raise(session=session, run_id=run_id), format)
    media = "application/json" if format == "json" else "text/markdown"
    return PlainTextResponse(text, media_type=media)


@router.post(
    "/runs/{run_id}/resume", status_code=202, summary="Continue a run from its first unfinished step"
)
def resume(
    run_id: int,
    body: ResumeRequest,
    request: Request,
    tasks: BackgroundTasks,
    ctx: CurrentContext,
    principal: Annotated[Principal, allow("runbooks:run")],
) -> dict[str, Any]:
    root = engine.resumable(ctx, run_id)
    tasks.add_task(engine.execute_after_answer, ctx, root, actor=principal.name, yes=body.yes, resumed=True)
    audit_note(request, run=root, yes=body.yes)
    return _record(ctx, root)


@router.get("/{name}", summary="A runbook's scenario, objective, parameters, steps, acceptance, contacts")
def show(name: str, _: Principal = allow("runbooks:read")) -> dict[str, Any]:
    return export.runbook_dict(get_runbook(name))


@router.post("/{name}/runs", status_code=202, summary="Start a run; it executes after the answer")
def start(
    name: str,
    body: RunRequest,
    request: Request,
    tasks: BackgroundTasks,
    ctx: CurrentContext,
    principal: Annotated[Principal, allow("runbooks:run")],
) -> dict[str, Any]:
    run_id = engine.create(
        ctx, runbook=name, params=body.params, positional=body.args, alert_id=body.alert, actor=principal.name
    )
    tasks.add_task(
        engine.execute_after_answer, ctx, run_id, actor=principal.name, yes=body.yes, resumed=False
    )
    audit_note(request, run=run_id, runbook=name, yes=body.yes)
    return _record(ctx, run_id)

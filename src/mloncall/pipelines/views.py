"""Pipeline routes: the declared pipelines, a pipeline's status (its source's health and its consumers),
a run with its stages, and starting a run or a re-run from the failed stage. A run executes within the
request (the in-process orchestrator) and the answer is the finished run; a failed run is 201 with its
failure recorded, a refused re-run 409 naming what changed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from mloncall.access.models import Principal
from mloncall.api.deps import CurrentContext, allow, audit_note
from mloncall.core.names import MAX_ID
from mloncall.pipelines import service, spec
from mloncall.pipelines.schemas import PipelineSummary, RunRead, RunRequest, StatusRead

router = APIRouter(prefix="/api/v1/pipelines", tags=["pipelines"])
RunIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="pipeline run id")]


@router.get("", summary="The declared pipelines with their latest run")
def list_pipelines(ctx: CurrentContext, _: Principal = allow("pipelines:read")) -> list[PipelineSummary]:
    return service.summaries(ctx)


@router.get("/runs/{run_id}", summary="A run's stages: status, timings, rows, hashes, log, failure and fix")
def show_run(run_id: RunIdPath, ctx: CurrentContext, _: Principal = allow("pipelines:read")) -> RunRead:
    return service.run_read(ctx, run_id)


@router.get("/{name}", summary="A pipeline's declaration")
def show(name: str, ctx: CurrentContext, _: Principal = allow("pipelines:read")) -> dict[str, Any]:
    return spec.get(ctx.settings, name).dump()


@router.get("/{name}/status", summary="The latest run, the source's health and who consumes which version")
def status(name: str, ctx: CurrentContext, _: Principal = allow("pipelines:read")) -> StatusRead:
    return service.status(ctx, name)


@router.post(
    "/{name}/runs",
    status_code=201,
    summary="Run the pipeline, or re-run its failed run from the failed stage",
)
def start(
    name: str,
    body: RunRequest,
    request: Request,
    ctx: CurrentContext,
    principal: Annotated[Principal, allow("pipelines:run")],
) -> RunRead:
    if body.from_failed:
        run_id = service.rerun_from_failed(ctx, name, actor=principal.name, run_id=body.run_id)
    else:
        run_id = service.run(ctx, name, actor=principal.name)
    out = service.run_read(ctx, run_id)
    audit_note(request, pipeline=name, run=run_id, state=out.state, from_failed=body.from_failed)
    return out

"""Quarantine routes: thin over `mloncall.pipelines.quarantine` (read with `pipelines:read`, release and drop
with `pipelines:run`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from mloncall.access.models import Principal
from mloncall.api.deps import CurrentContext, DbSession, LimitQuery, allow, audit_note
from mloncall.core.names import MAX_ID
from mloncall.pipelines import quarantine

router = APIRouter(prefix="/api/v1/quarantine", tags=["quarantine"])

BatchPath = Annotated[int, Path(ge=1, le=MAX_ID, description="quarantine batch id")]


class ReleaseIn(BaseModel):
    """Where the rows go and, optionally, the checks to re-validate them against."""

    model_config = ConfigDict(extra="forbid")

    into: str | None = Field(default=None, min_length=1, max_length=64, description="target dataset")
    checks: dict[str, Any] | None = Field(
        default=None, description="a checked schema (features, target, checks); default: the ones they failed"
    )


class DropIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)


@router.get("", summary="Quarantine batches, newest first")
def list_batches(
    session: DbSession,
    _: Principal = allow("pipelines:read"),
    pipeline: Annotated[str | None, Query(max_length=128)] = None,
    state: Annotated[
        str | None,
        Query(max_length=16, json_schema_extra={"pattern": "^(held|released|dropped)$"}),
    ] = None,
    limit: LimitQuery = 100,
) -> list[dict[str, Any]]:
    rows = quarantine.list_batches(session=session, pipeline=pipeline, state=state, limit=limit)
    return [quarantine.QuarantineBatch.of(r).to_dict() for r in rows]


@router.get("/files", summary="Source files moved aside as corrupted, newest first")
def list_files(
    session: DbSession,
    _: Principal = allow("pipelines:read"),
    pipeline: Annotated[str | None, Query(max_length=128)] = None,
    limit: LimitQuery = 100,
) -> list[dict[str, Any]]:
    return quarantine.list_files(session=session, source=pipeline, limit=limit)


@router.get("/{batch_id}", summary="A batch with its history and its first failing cells")
def show_batch(
    batch_id: BatchPath,
    ctx: CurrentContext,
    _: Principal = allow("pipelines:read"),
    cells: Annotated[int, Query(ge=0, le=10_000, description="failing cells to include")] = 100,
) -> dict[str, Any]:
    with ctx.db.session() as session:
        row = quarantine.get_batch(session=session, batch_id=batch_id)
        out: dict[str, Any] = quarantine.QuarantineBatch.of(row).to_dict()
        out["events"] = [
            {"at": e.at, "actor": e.actor, "from": e.from_state, "to": e.to_state, "reason": e.reason}
            for e in row.events
        ]
        session.expunge(row)
    if out["state"] == "held":
        out["failures"] = json.loads(quarantine.read_failures(ctx, row).head(cells).to_json(orient="records"))
    return out


@router.post("/{batch_id}/release", summary="Re-validate the rows and release those that pass into a dataset")
def release_batch(
    batch_id: BatchPath,
    body: ReleaseIn,
    request: Request,
    ctx: CurrentContext,
    principal: Annotated[Principal, allow("pipelines:run")],
) -> dict[str, Any]:
    done = quarantine.release(
        ctx, batch_id=batch_id, into=body.into, schema=body.checks, actor=principal.name
    )
    audit_note(
        request, batch=batch_id, released=done.released, refused=done.refused, into=done.dataset_version
    )
    return done.to_dict()


@router.post("/{batch_id}/drop", summary="Discard a batch's rows")
def drop_batch(
    batch_id: BatchPath,
    body: DropIn,
    request: Request,
    ctx: CurrentContext,
    principal: Annotated[Principal, allow("pipelines:run")],
) -> dict[str, Any]:
    batch = quarantine.drop(ctx, batch_id=batch_id, reason=body.reason, actor=principal.name)
    audit_note(request, batch=batch_id, rows=batch.rows, reason=body.reason)
    return batch.to_dict()

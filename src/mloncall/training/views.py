"""Training routes: train a new version from a registered dataset, retrain against production."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from mloncall.access.models import Principal
from mloncall.api.deps import CurrentContext, SeedQuery, allow, audit_note
from mloncall.api.uploads import TABLE_BODY_DOC, RawBody, uploaded_table
from mloncall.core.names import SeedField
from mloncall.registry import service as registry
from mloncall.registry.schemas import ModelVersionOut
from mloncall.training.defaults import DEFAULT_RECALL_MARGIN, DEFAULT_REFERENCE_MARGIN, DEFAULT_TARGET

router = APIRouter(prefix="/api/v1/models", tags=["training"])


class TrainRequest(BaseModel):
    """What to train: a registered dataset (`name` or `name:version`), or the bundled Iris data if omitted."""

    dataset: str | None = Field(None, max_length=200, examples=["iris:1"])
    target: str = Field(DEFAULT_TARGET, min_length=1, max_length=128)
    algorithm: str = Field("logistic_regression", examples=["logistic_regression", "random_forest"])
    seed: SeedField = 42
    test_size: float = Field(0.3, gt=0, lt=1)
    description: str = Field("", max_length=10_000)


def _version_out(ctx: CurrentContext, name: str, version: int) -> ModelVersionOut:
    with ctx.db.session() as session:
        mv = registry.get_version_or_raise(session=session, name=name, version=version)
        return registry.version_out(session=session, store=ctx.store, model_version=mv)


@router.post("/{name}/versions", status_code=201, summary="Train and register the model's next version")
def train(
    name: str,
    spec: TrainRequest,
    request: Request,
    ctx: CurrentContext,
    principal: Annotated[Principal, allow("registry:write", model="name")],
) -> ModelVersionOut:
    from mloncall.training import service

    run = service.train(
        ctx=ctx,
        name=name,
        dataset=spec.dataset,
        target=spec.target,
        algorithm=spec.algorithm,
        seed=spec.seed,
        test_size=spec.test_size,
        created_by=principal.name,
        description=spec.description,
    )
    audit_note(request, version=run.model_version.version, accuracy=run.metrics["accuracy"])
    return _version_out(ctx, name, run.model_version.version)


@router.post(
    "/{name}/retrain",
    status_code=201,
    summary="Retrain on production's data plus the new rows in the body; the gate verdict is in `gate`",
    openapi_extra=TABLE_BODY_DOC,
)
def retrain(
    name: str,
    request: Request,
    ctx: CurrentContext,
    principal: Annotated[Principal, allow("registry:write", model="name")],
    body: RawBody,
    recall_margin: Annotated[float, Query(ge=0, le=1)] = DEFAULT_RECALL_MARGIN,
    reference_margin: Annotated[float, Query(ge=0, le=1)] = DEFAULT_REFERENCE_MARGIN,
    seed: SeedQuery = None,
) -> ModelVersionOut:
    from mloncall.training import service

    with uploaded_table(request, body) as path:
        run = service.retrain(
            ctx=ctx,
            name=name,
            data=path,
            seed=seed,
            recall_margin=recall_margin,
            reference_margin=reference_margin,
            created_by=principal.name,
            source_label="rows uploaded over HTTP",
        )
    gate = run.gate or {}
    audit_note(
        request, version=run.model_version.version, gate=gate.get("verdict"), reason=gate.get("reason")
    )
    return _version_out(ctx, name, run.model_version.version)

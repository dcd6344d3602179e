"""SLO routes: list, set, read, delete a model's objectives, and its error budget and burn rates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from mloncall.access.models import Principal
from mloncall.api.deps import CurrentContext, DbSession, allow, audit_note
from mloncall.core.names import NAME_PATTERN
from mloncall.scaling import service
from mloncall.scaling.schemas import SloOut, SloRequest, SloStatusOut

router = APIRouter(prefix="/api/v1/slos", tags=["slos"])
#: A model's name as the registry spells them: any other spelling is a 400, never a key the store refuses.
Model = Annotated[str, Path(pattern=NAME_PATTERN, max_length=64, description="the model's name")]


@router.get("", summary="Every model's SLO, from the API and from mloncall.toml")
def list_slos(session: DbSession, ctx: CurrentContext, _: Principal = allow("alerts:read")) -> list[SloOut]:
    return [SloOut.of(o) for o in service.list_objectives(session=session, settings=ctx.settings)]


@router.put("/{model}", summary="Set a model's SLO (it takes precedence over mloncall.toml)")
def set_slo(
    model: Model,
    spec: SloRequest,
    request: Request,
    session: DbSession,
    principal: Principal = allow("alerts:manage"),
) -> SloOut:
    found = service.set_objectives(
        session=session, model=model, latency_p99=spec.latency_p99, error_rate=spec.error_rate,
        availability=spec.availability, window=spec.window, actor=principal.name,
    )  # fmt: skip
    audit_note(request, model=model)
    return SloOut.of(found)


@router.get("/{model}", summary="A model's SLO")
def get_slo(
    model: Model, session: DbSession, ctx: CurrentContext, _: Principal = allow("alerts:read")
) -> SloOut:
    return SloOut.of(service.require_objectives(session=session, settings=ctx.settings, model=model))


@router.delete("/{model}", status_code=204, summary="Forget the SLO set through the API")
def delete_slo(
    model: Model, request: Request, session: DbSession, _: Principal = allow("alerts:manage")
) -> None:
    service.delete_objectives(session=session, model=model)
    audit_note(request, model=model)


@router.get("/{model}/status", summary="Error budget left and the burn rate of every alert window")
def slo_status(
    model: Model, session: DbSession, ctx: CurrentContext, _: Principal = allow("alerts:read")
) -> SloStatusOut:
    return SloStatusOut(**service.slo_status(ctx=ctx, session=session, model=model))

"""Registry routes: list and show models and versions, resolve aliases, verify artifacts, move aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from mloncall.access.models import Principal
from mloncall.api.deps import Change, CurrentContext, DbSession, VersionPath, allow, change
from mloncall.core.errors import IntegrityError
from mloncall.registry import service
from mloncall.registry.models import AliasEvent
from mloncall.registry.schemas import (
    AliasEventOut,
    AliasSet,
    ModelDetail,
    ModelSummary,
    ModelVersionOut,
    VerifyReportOut,
    VersionDeleted,
)

router = APIRouter(prefix="/api/v1/models", tags=["registry"])


@router.get("", summary="Every model with its latest version and aliases")
def list_models(
    session: DbSession, _: Principal = allow("registry:read", model="name")
) -> list[ModelSummary]:
    return [ModelSummary.from_model(m) for m in service.list_models(session=session)]


@router.get("/{name}", summary="A model with all its versions")
def show_model(
    name: str, session: DbSession, _: Principal = allow("registry:read", model="name")
) -> ModelDetail:
    return ModelDetail.from_model(service.get_model_or_raise(session=session, name=name))


@router.get("/{name}/versions/{version}", summary="Everything recorded about one version")
def show_version(
    name: str,
    version: VersionPath,
    session: DbSession,
    ctx: CurrentContext,
    _: Principal = allow("registry:read", model="name"),
) -> ModelVersionOut:
    mv = service.get_version_or_raise(session=session, name=name, version=version)
    return service.version_out(session=session, store=ctx.store, model_version=mv)


@router.get("/{name}/aliases/{alias}", summary="The version an alias points at")
def resolve_alias(
    name: str,
    alias: str,
    session: DbSession,
    ctx: CurrentContext,
    _: Principal = allow("registry:read", model="name"),
) -> ModelVersionOut:
    mv = service.get_alias_or_raise(session=session, name=name, alias=alias).model_version
    return service.version_out(session=session, store=ctx.store, model_version=mv)


@router.get("/{name}/alias-history", summary="Every alias move of a model, oldest first")
def alias_history(
    name: str,
    session: DbSession,
    alias: Annotated[str | None, Query(description="only this alias")] = None,
    _: Principal = allow("registry:read", model="name"),
) -> list[AliasEventOut]:
    events = service.alias_history(session=session, name=name, alias=alias)
    return [AliasEventOut.of(e, model_name=name) for e in events]


@router.post(
    "/{name}/versions/{version}/verify",
    summary="Recompute every file's checksum; 409 integrity_error naming each missing or altered file",
)
def verify_version(
    name: str,
    version: VersionPath,
    session: DbSession,
    ctx: CurrentContext,
    _: Principal = allow("registry:read", model="name"),
) -> VerifyReportOut:
    mv = service.get_version_or_raise(session=session, name=name, version=version)
    report = VerifyReportOut.model_validate(service.verify(store=ctx.store, model_version=mv))
    if not report.ok:
        raise IntegrityError(
            f"{report.ref} failed verification: {report.reason}", details=report.model_dump(mode="json")
        )
    return report


@router.put("/{name}/aliases/{alias}", summary="Point an alias at a version (operator)")
def set_alias(
    name: str, alias: str, body: AliasSet, c: Change = change("deploy:execute", model="name")
) -> AliasEventOut:
    c.note(**dict(body))
    event = service.set_alias(session=c.session, name=name, alias=alias, actor=c.actor, **dict(body))
    return _moved(c, event, name)


@router.delete("/{name}/aliases/{alias}", summary="Remove an alias (operator)")
def remove_alias(
    name: str,
    alias: str,
    reason: Annotated[str, Query(max_length=2000)] = "",
    c: Change = change("deploy:execute", model="name"),
) -> AliasEventOut:
    c.note(reason=reason)
    event = service.remove_alias(session=c.session, name=name, alias=alias, actor=c.actor, reason=reason)
    return _moved(c, event, name)


def _moved(c: Change, event: AliasEvent, name: str) -> AliasEventOut:
    c.note(from_version=event.from_version)
    return AliasEventOut.of(event, model_name=name)


@router.delete(
    "/{name}/versions/{version}", summary="Delete a version and its files (registry:write; 409 while aliased)"
)
def delete_version(
    name: str, version: VersionPath, c: Change = change("registry:write", model="name")
) -> VersionDeleted:
    service.delete_version(session=c.session, store=c.ctx.store, name=name, version=version)
    return VersionDeleted(name=name, version=version)

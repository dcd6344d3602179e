"""Dataset routes: list and show versions with their profiles, upload a validated snapshot."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from mloncall.access.models import Principal
from mloncall.api.deps import CurrentContext, DbSession, VersionPath, allow, audit_note
from mloncall.api.uploads import TABLE_BODY_DOC, RawBody, uploaded_table
from mloncall.data import files, service
from mloncall.data.schemas import DatasetRead, DatasetVersionRead

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])


@router.get("", summary="Every dataset with its versions")
def list_datasets(session: DbSession, _: Principal = allow("artifacts:read")) -> list[DatasetRead]:
    return [DatasetRead.model_validate(d) for d in service.list_datasets(session=session)]


@router.get("/{name}", summary="A dataset with its versions")
def show_dataset(name: str, session: DbSession, _: Principal = allow("artifacts:read")) -> DatasetRead:
    return DatasetRead.model_validate(service.get_dataset_or_raise(session=session, name=name))


@router.get("/{name}/versions/{version}", summary="A version with its schema and reference profile")
def show_version(
    name: str, version: VersionPath, session: DbSession, _: Principal = allow("artifacts:read")
) -> DatasetVersionRead:
    dv = service.get_version_or_raise(session=session, name=name, version=version)
    return DatasetVersionRead.of(dv, with_profile=True)


@router.post(
    "/{name}",
    status_code=201,
    summary="Validate a file and register it as the dataset's next version (or return the identical one)",
    response_model_by_alias=True,
    openapi_extra=TABLE_BODY_DOC,
)
def upload(
    name: str,
    request: Request,
    ctx: CurrentContext,
    principal: Annotated[Principal, allow("artifacts:write")],
    body: RawBody,
    target: Annotated[str, Query(min_length=1, max_length=128, description="The label column.")] = "species",
) -> DatasetVersionRead:
    with uploaded_table(request, body) as path:
        raw = files.read_table(path)
    dv, _ = service.register_rows(
        db=ctx.db,
        store=ctx.store,
        name=name,
        raw=raw,
        target=target,
        origin="request body",
        source="uploaded over HTTP",
        created_by=principal.name,
    )
    with ctx.db.session() as session:
        dv = service.get_version_or_raise(session=session, name=name, version=dv.version)
        out = DatasetVersionRead.of(dv)
    audit_note(request, dataset=out.ref, content_hash=out.content_hash, rows=out.row_count)
    return out

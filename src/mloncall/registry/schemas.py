"""Shapes of registry answers, shared by the HTTP routes and the CLI's `--json` output."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Self

from pydantic import AliasPath, BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from mloncall.core.names import IdField
from mloncall.registry.models import AliasEvent, Model, ModelVersion


class FileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    key: str
    sha256: str
    size: int


class ModelVersionOut(BaseModel):
    """Everything recorded about one model version.

    Built from a version row with `of`: its alias names (`service.aliases_of`) and the store's root are not
    the row's, so they come in the validation context.
    """

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    name: str = Field(validation_alias=AliasPath("model", "name"))
    version: int
    ref: str = ""
    algorithm: str
    description: str
    tags: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, Any]
    signature: dict[str, Any]
    lineage: dict[str, Any]
    gate: dict[str, Any] | None
    dataset_version_id: int | None
    created_at: dt.datetime
    created_by: str
    aliases: list[str] = Field(default_factory=list)
    files: list[FileOut]
    artifact_uri: str = Field(
        validation_alias="artifact_prefix", description="where the version's files live"
    )

    @model_validator(mode="after")
    def _placed(self, info: ValidationInfo) -> Self:
        """The reference, and from the context the sorted alias names and the artifact root."""
        context = info.context or {}
        self.ref = f"{self.name}:{self.version}"
        self.aliases = sorted(context.get("aliases", self.aliases))
        root = context.get("artifact_root")
        if root:
            self.artifact_uri = f"{root.rstrip('/')}/{self.artifact_uri}"
        return self

    @classmethod
    def of(
        cls, mv: ModelVersion, *, aliases: Iterable[str], artifact_root: str | None = None
    ) -> ModelVersionOut:
        """From a version row, the alias names pointing at it (`service.aliases_of`) and the store root."""
        return cls.model_validate(mv, context={"aliases": list(aliases), "artifact_root": artifact_root})


class VersionBrief(BaseModel):
    """One line of a model's version list."""

    version: int
    ref: str
    algorithm: str
    created_at: dt.datetime
    created_by: str
    aliases: list[str]
    accuracy: float | None
    gate: dict[str, Any] | None


class ModelSummary(BaseModel):
    name: str
    description: str
    created_at: dt.datetime
    created_by: str
    version_count: int
    latest_version: int | None
    aliases: dict[str, int] = Field(description="alias name -> version")

    @classmethod
    def from_model(cls, model: Model) -> ModelSummary:
        return cls(**_summary_fields(model))


class ModelDetail(ModelSummary):
    versions: list[VersionBrief]

    @classmethod
    def from_model(cls, model: Model) -> ModelDetail:
        fields = _summary_fields(model)
        by_version: dict[int, list[str]] = {}
        for alias, version in fields["aliases"].items():
            by_version.setdefault(version, []).append(alias)
        versions = [
            VersionBrief(
                version=mv.version,
                ref=f"{model.name}:{mv.version}",
                algorithm=mv.algorithm,
                created_at=mv.created_at,
                created_by=mv.created_by,
                aliases=sorted(by_version.get(mv.version, [])),
                accuracy=_number(mv.metrics.get("accuracy")),
                gate=mv.gate,
            )
            for mv in model.versions
        ]
        return cls(**fields, versions=versions)


def _summary_fields(model: Model) -> dict[str, Any]:
    version_of = {mv.id: mv.version for mv in model.versions}
    return {
        "name": model.name,
        "description": model.description,
        "created_at": model.created_at,
        "created_by": model.created_by,
        "version_count": len(model.versions),
        "latest_version": max(version_of.values(), default=None),
        "aliases": {
            a.name: version_of[a.model_version_id] for a in sorted(model.aliases, key=lambda a: a.name)
        },
    }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class AliasEventOut(BaseModel):
    """One alias move: None as from_version means created, as to_version means removed.

    An event row knows its model by id only, so `of` passes the model's name in the validation context.
    """

    model_config = ConfigDict(from_attributes=True)

    name: str = ""
    alias: str
    from_version: int | None
    to_version: int | None
    at: dt.datetime
    actor: str
    reason: str

    @model_validator(mode="after")
    def _named(self, info: ValidationInfo) -> Self:
        self.name = (info.context or {}).get("model_name", self.name)
        return self

    @classmethod
    def of(cls, event: AliasEvent, *, model_name: str) -> AliasEventOut:
        return cls.model_validate(event, context={"model_name": model_name})


#: Text a database stores on every backend (PostgreSQL refuses NUL bytes).
NO_NUL = r"^[^\x00]*$"


class AliasSet(BaseModel):
    """Point an alias at a version."""

    model_config = ConfigDict(extra="forbid")

    version: IdField
    reason: str = Field(default="", max_length=2000, pattern=NO_NUL)


class FileCheckOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    key: str
    status: str = Field(description="ok, missing, altered, or unexpected (in the folder, never recorded)")
    expected: str
    actual: str | None
    size: int


class VerifyReportOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    ref: str
    ok: bool
    outcome: str = Field(validation_alias=AliasPath("check", "outcome", "label"))
    reason: str = Field(validation_alias=AliasPath("check", "reason"))
    seconds: float
    total_bytes: int
    files: list[FileCheckOut]


class VersionDeleted(BaseModel):
    name: str
    version: int
    deleted: bool = True

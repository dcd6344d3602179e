"""Shapes of registry answers, shared by the HTTP routes and the CLI's `--json` output."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mloncall.registry.models import AliasEvent, ArtifactFile, Model, ModelVersion
from mloncall.registry.service import VerifyReport


class FileOut(BaseModel):
    name: str
    key: str
    sha256: str
    size: int

    @classmethod
    def from_file(cls, f: ArtifactFile) -> FileOut:
        return cls(name=f.name, key=f.key, sha256=f.sha256, size=f.size)


class ModelVersionOut(BaseModel):
    """Everything recorded about one model version."""

    name: str
    version: int
    ref: str
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
    aliases: list[str]
    files: list[FileOut]
    artifact_uri: str = Field(description="where the version's files live")

    @classmethod
    def from_version(
        cls, mv: ModelVersion, *, aliases: Iterable[str], artifact_root: str | None = None
    ) -> ModelVersionOut:
        """From a version row, the alias names pointing at it (`service.aliases_of`) and the store root."""
        return cls(
            name=mv.model.name,
            version=mv.version,
            ref=f"{mv.model.name}:{mv.version}",
            algorithm=mv.algorithm,
            description=mv.description,
            tags=mv.tags,
            params=mv.params,
            metrics=mv.metrics,
            signature=mv.signature,
            lineage=mv.lineage,
            gate=mv.gate,
            dataset_version_id=mv.dataset_version_id,
            created_at=mv.created_at,
            created_by=mv.created_by,
            aliases=sorted(aliases),
            files=[FileOut.from_file(f) for f in mv.files],
            artifact_uri=f"{artifact_root.rstrip('/')}/{mv.artifact_prefix}"
            if artifact_root
            else mv.artifact_prefix,
        )


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
    """One alias move: None as from_version means created, as to_version means removed."""

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    at: dt.datetime
    actor: str
    reason: str

    @classmethod
    def from_event(cls, event: AliasEvent, *, model_name: str) -> AliasEventOut:
        return cls(
            name=model_name,
            alias=event.alias,
            from_version=event.from_version,
            to_version=event.to_version,
            at=event.at,
            actor=event.actor,
            reason=event.reason,
        )


#: Text a database stores on every backend (PostgreSQL refuses NUL bytes).
NO_NUL = r"^[^\x00]*$"


class AliasSet(BaseModel):
    """Point an alias at a version."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1)
    reason: str = Field(default="", max_length=2000, pattern=NO_NUL)


class FileCheckOut(BaseModel):
    name: str
    key: str
    status: str = Field(description="ok, missing or altered")
    expected: str
    actual: str | None
    size: int


class VerifyReportOut(BaseModel):
    ref: str
    ok: bool
    outcome: str
    reason: str
    seconds: float
    total_bytes: int
    files: list[FileCheckOut]

    @classmethod
    def from_report(cls, report: VerifyReport) -> VerifyReportOut:
        check = report.check
        return cls(
            ref=report.ref,
            ok=report.ok,
            outcome=check.outcome.label,
            reason=check.reason,
            seconds=report.seconds,
            total_bytes=report.total_bytes,
            files=[
                FileCheckOut(
                    name=f.name, key=f.key, status=f.status, expected=f.expected, actual=f.actual, size=f.size
                )
                for f in report.files
            ],
        )


class VersionDeleted(BaseModel):
    name: str
    version: int
    deleted: bool = True

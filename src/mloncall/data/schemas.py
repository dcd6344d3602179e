"""Pydantic shapes of the data domain: the schema a version is validated against, API responses."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mloncall.core.errors import InvalidInput

if TYPE_CHECKING:
    from mloncall.data.models import Dataset, DatasetVersion


class FeatureSpec(BaseModel):
    """One numeric input column, with the range seen when the schema was inferred."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    dtype: Literal["float64"] = "float64"
    min: float | None = None
    max: float | None = None


class TargetSpec(BaseModel):
    """The label column and, when known, the labels it may hold."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    classes: list[str] | None = None


class DatasetSchema(BaseModel):
    """Which columns a dataset has, in order: the features, then the target."""

    model_config = ConfigDict(extra="ignore")

    features: list[FeatureSpec] = Field(min_length=1)
    target: TargetSpec | None = None

    @model_validator(mode="after")
    def _distinct_names(self) -> DatasetSchema:
        names = self.columns
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"column name(s) used twice: {', '.join(dupes)}")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def columns(self) -> list[str]:
        return self.feature_names + ([self.target.name] if self.target is not None else [])

    @classmethod
    def parse(cls, schema: dict[str, Any] | DatasetSchema) -> DatasetSchema:
        """A schema from its dict form; InvalidInput says what is wrong with it."""
        if isinstance(schema, DatasetSchema):
            return schema
        try:
            return cls.model_validate(schema)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'schema'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidInput(f"invalid dataset schema: {problems}") from None


class DatasetVersionRead(BaseModel):
    """A dataset version as the API and `--json` show it (dump `by_alias=True` for the `schema` key)."""

    model_config = ConfigDict(populate_by_name=True)

    ref: str
    name: str
    version: int
    content_hash: str
    row_count: int
    key: str
    sha256: str
    size: int
    target: str | None
    data_schema: dict[str, Any] = Field(alias="schema")
    profile: dict[str, Any] | None = None
    source: str
    parents: list[Any]
    created_at: dt.datetime
    created_by: str

    @classmethod
    def of(cls, dv: DatasetVersion, *, with_profile: bool = False) -> DatasetVersionRead:
        """The response for a version whose `dataset` is loaded."""
        return cls(
            ref=f"{dv.dataset.name}:{dv.version}",
            name=dv.dataset.name,
            version=dv.version,
            content_hash=dv.content_hash,
            row_count=dv.row_count,
            key=dv.key,
            sha256=dv.sha256,
            size=dv.size,
            target=dv.target,
            data_schema=dv.schema,
            profile=dv.profile if with_profile else None,
            source=dv.source,
            parents=list(dv.parents or []),
            created_at=dv.created_at,
            created_by=dv.created_by,
        )


class DatasetRead(BaseModel):
    """A dataset with a summary of its versions, oldest first."""

    name: str
    description: str
    created_at: dt.datetime
    created_by: str
    latest_version: int | None
    versions: list[DatasetVersionRead]

    @classmethod
    def of(cls, ds: Dataset) -> DatasetRead:
        versions = [DatasetVersionRead.of(v) for v in ds.versions]
        return cls(
            name=ds.name,
            description=ds.description,
            created_at=ds.created_at,
            created_by=ds.created_by,
            latest_version=versions[-1].version if versions else None,
            versions=versions,
        )

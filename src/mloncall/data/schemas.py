"""Pydantic shapes of the data domain: the schema a version is validated against, API responses."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import AliasPath, BaseModel, ConfigDict, Field, ValidationError, model_validator

from mloncall.core.errors import InvalidInput

if TYPE_CHECKING:
    from mloncall.data.models import DatasetVersion


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
    """A dataset version as the API and `--json` show it (dump `by_alias=True` for the `schema` key).

    Built from a version whose `dataset` is loaded; the profile (large) only when `of` asks for it.
    """

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    ref: str = ""
    name: str = Field(validation_alias=AliasPath("dataset", "name"))
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

    @model_validator(mode="after")
    def _ref(self) -> Self:
        self.ref = f"{self.name}:{self.version}"
        return self

    @classmethod
    def of(cls, dv: DatasetVersion, *, with_profile: bool = False) -> DatasetVersionRead:
        """The response for a version whose `dataset` is loaded."""
        out = cls.model_validate(dv)
        return out if with_profile else out.model_copy(update={"profile": None})


class DatasetRead(BaseModel):
    """A dataset with a summary of its versions, oldest first."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    description: str
    created_at: dt.datetime
    created_by: str
    latest_version: int | None = None
    versions: list[DatasetVersionRead]

    @model_validator(mode="after")
    def _summary(self) -> Self:
        """The newest version's number; the versions listed without their (large) profiles."""
        self.versions = [v.model_copy(update={"profile": None}) for v in self.versions]
        self.latest_version = self.versions[-1].version if self.versions else None
        return self

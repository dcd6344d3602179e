"""How a pipeline is declared: a YAML file of stages (extract, validate, transform, load), found by name.

```yaml
name: iris-ingest
dataset: iris              # the load stage registers the next version of this dataset
freshness: 1d              # the SLA the newest source file is held to
retries: {attempts: 3, backoff: 200ms}   # transient errors only (timeouts, refused connections)
schema: {features: [{name: sepal_length, min: 0, max: 10}, ...], target: {name: species}}
stages:
  - {name: extract, kind: extract, source: {files: "sources/iris/*.csv", on_corrupt: quarantine}}
                                        # or {s3: ...} or {sql: ..., url: ...}; on_corrupt: fail by default
  - {name: validate, kind: validate, rename: {}, checks: [{check: min_rows, value: 10}],
     on_bad_rows: quarantine, max_quarantined_share: 0.05}  # bad rows set aside (default: fail the run)
  - {name: transform, kind: transform, steps: [{fn: normalize_labels, aliases: {Iris-setosa: setosa}}]}
  - {name: load, kind: load}
```

Declarations are the YAML files of `<home>/pipelines/`, and the examples shipped beside this module; a
relative source path is taken under `MLONCALL_HOME`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mloncall.core.config import Settings
from mloncall.core.durations import parse_seconds
from mloncall.core.errors import InvalidInput, NotFound
from mloncall.core.names import check_name
from mloncall.data.schemas import DatasetSchema
from mloncall.pipelines.states import StageKind

EXAMPLES = Path(__file__).with_name("examples")


class Source(BaseModel):
    """Where the extract stage reads: a file glob, an S3 prefix, or a SQL query (exactly one)."""

    model_config = ConfigDict(extra="forbid")

    files: str | None = None
    s3: str | None = None
    sql: str | None = None
    url: str | None = Field(None, description="The SQLAlchemy URL a `sql` source is read from.")
    #: a file that cannot be parsed fails the run (`fail`), or is moved aside into the quarantine area
    #: with its reason and the run goes on with the other files (`quarantine`)
    on_corrupt: Literal["fail", "quarantine"] = "fail"

    @model_validator(mode="after")
    def _one(self) -> Source:
        given = [k for k in ("files", "s3", "sql") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of files (a glob), s3 (s3://bucket/prefix) or sql (a query)")
        if self.sql and not self.url:
            raise ValueError("a sql source needs the url of its database")
        if self.s3 and not self.s3.startswith("s3://"):
            raise ValueError(f"s3 must be an s3://bucket/prefix URL, got {self.s3!r}")
        return self

    @property
    def kind(self) -> str:
        return "files" if self.files else "s3" if self.s3 else "sql"


class Transform(BaseModel):
    """One registered transform function by name, with its arguments."""

    model_config = ConfigDict(extra="allow")

    fn: str

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    kind: StageKind
    source: Source | None = None
    #: validate: source column names mapped to the schema's (a renamed upstream column, repaired here)
    rename: dict[str, str] = Field(default_factory=dict)
    checks: list[dict[str, Any]] = Field(default_factory=list)
    #: validate: a run with bad rows fails (`fail`), or sets them aside and goes on with the rest
    #: (`quarantine`) while their share stays within `max_quarantined_share` (itself a check)
    on_bad_rows: Literal["fail", "quarantine"] = "fail"
    max_quarantined_share: float = Field(0.05, ge=0.0, le=1.0)
    steps: list[Transform] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        check_name(v, "stage name")
        return v

    def digest(self) -> str:
        """The sha256 of the stage's declaration: a re-run refuses to skip a stage whose declaration changed."""
        return _digest(self.model_dump(mode="json"))


class Retries(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(3, ge=1, le=10)
    backoff: str = "200ms"

    @field_validator("backoff")
    @classmethod
    def _backoff(cls, v: str) -> str:
        parse_seconds(v, what="retries.backoff")
        return v

    @property
    def backoff_seconds(self) -> float:
        return parse_seconds(self.backoff, what="retries.backoff")


class Pipeline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    dataset: str
    freshness: str | None = None
    retries: Retries = Field(default_factory=Retries)
    data_schema: dict[str, Any] = Field(alias="schema")
    stages: list[Stage] = Field(min_length=2)

    @model_validator(mode="after")
    def _shape(self) -> Pipeline:
        check_name(self.name, "pipeline name")
        check_name(self.dataset, "dataset name")
        DatasetSchema.parse(self.data_schema)
        if self.freshness is not None:
            parse_seconds(self.freshness, what="freshness")
        kinds = [s.kind for s in self.stages]
        if kinds[0] != StageKind.EXTRACT or kinds.count(StageKind.EXTRACT) != 1:
            raise ValueError("the first stage, and only it, must be the extract stage")
        if kinds[-1] != StageKind.LOAD or kinds.count(StageKind.LOAD) != 1:
            raise ValueError("the last stage, and only it, must be the load stage")
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage name(s) used twice: {', '.join(dupes)}")
        if self.stages[0].source is None:
            raise ValueError(f"the extract stage {self.stages[0].name!r} needs a source")
        from mloncall.pipelines.transforms import TRANSFORMS

        for stage in self.stages:
            for step in stage.steps:
                if step.fn not in TRANSFORMS:
                    raise ValueError(
                        f"stage {stage.name!r}: unknown transform {step.fn!r}; "
                        f"registered: {', '.join(sorted(TRANSFORMS))}"
                    )
        return self

    @property
    def schema(self) -> DatasetSchema:  # type: ignore[override]
        return DatasetSchema.parse(self.data_schema)

    @property
    def source(self) -> Source:
        assert self.stages[0].source is not None
        return self.stages[0].source

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise NotFound(f"pipeline {self.name} has no stage {name!r}: its stages are {self.stage_names}")

    @property
    def stage_names(self) -> str:
        return ", ".join(s.name for s in self.stages)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def digest(self) -> str:
        return _digest(self.dump())


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def parse(data: Any, *, origin: str) -> Pipeline:
    """A declaration from its parsed YAML; InvalidInput names the file and each problem's place."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{origin}: a pipeline declaration is a mapping (name, dataset, schema, stages)")
    try:
        return Pipeline.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'pipeline'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise InvalidInput(f"{origin}: invalid pipeline declaration: {problems}") from None


def load_file(path: Path) -> Pipeline:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"pipeline file {path} cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"pipeline file {path} is not valid YAML: {exc}") from None
    return parse(data, origin=str(path))


def declarations_dir(settings: Settings) -> Path:
    return settings.home / "pipelines"


def discover(settings: Settings) -> dict[str, tuple[Pipeline, Path]]:
    """Every declared pipeline by name: the home's own first, then the shipped examples it does not replace."""
    found: dict[str, tuple[Pipeline, Path]] = {}
    for folder in (declarations_dir(settings), EXAMPLES):
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            pipeline = load_file(path)
            found.setdefault(pipeline.name, (pipeline, path))
    return found


def get(settings: Settings, name: str) -> Pipeline:
    check_name(name, "pipeline name")
    found = discover(settings)
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise NotFound(f"no pipeline {name!r}: declared pipelines are {known} (see `mloncall pipeline list`)")
    return found[name][0]


def add(settings: Settings, path: Path) -> Pipeline:
    """Validate a declaration file and keep it under the home (atomically), replacing one of its name."""
    pipeline = load_file(path)
    folder = declarations_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{pipeline.name}.yaml"
    tmp = folder / f".{pipeline.name}.yaml.tmp"
    tmp.write_text(yaml.safe_dump(pipeline.dump(), sort_keys=False), encoding="utf-8")
    tmp.replace(target)
    return pipeline


Kind = Literal["files", "s3", "sql"]

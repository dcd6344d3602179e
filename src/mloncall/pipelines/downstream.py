"""What a pipeline feeds: the models that train on its dataset's versions, the monitors that compare live
traffic against them, and whether their retraining is blocked because the source is stale or failed.

Consumers only ever see validated versions: the load stage is the only stage that registers one, and it
runs only after validation passed (the data service validates again before it stores a byte).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.core import clock
from mloncall.core.durations import parse_seconds
from mloncall.data.models import Dataset, DatasetVersion
from mloncall.pipelines import extract, history, records
from mloncall.pipelines import spec as pipeline_spec
from mloncall.pipelines.spec import Pipeline
from mloncall.pipelines.states import RunState
from mloncall.registry.models import Alias, Model, ModelVersion
from mloncall.stores.context import Context

#: The alias whose version serves traffic, so whose training data the monitors compare against.
SERVING_ALIAS = "production"


@dataclass
class Consumer:
    """A model version trained on one of the dataset's versions, and whether monitors compare against it."""

    model: str
    version: int
    trains_on: str
    aliases: list[str]
    monitored: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Health:
    """A pipeline's source as its consumers need it: fine, or blocked with the reasons."""

    pipeline: str
    dataset: str
    reasons: list[str] = field(default_factory=list)
    latest_run: int | None = None
    latest_state: str | None = None
    newest_source: dt.datetime | None = None

    @property
    def blocked(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline, "dataset": self.dataset, "blocked": self.blocked, "reasons": self.reasons,
            "latest_run": self.latest_run, "latest_state": self.latest_state,
            "newest_source": self.newest_source.isoformat() if self.newest_source else None,
        }  # fmt: skip


def consumers(*, session: Session, dataset: str) -> list[Consumer]:
    """Every model version trained on a version of `dataset`, newest first, with its aliases."""
    stmt = (
        sa.select(ModelVersion, Model.name, DatasetVersion.version)
        .join(Model, ModelVersion.model_id == Model.id)
        .join(DatasetVersion, ModelVersion.dataset_version_id == DatasetVersion.id)
        .join(Dataset, DatasetVersion.dataset_id == Dataset.id)
        .where(Dataset.name == dataset)
        .order_by(Model.name, ModelVersion.version.desc())
    )
    aliases: dict[int, list[str]] = {}
    for alias in session.scalars(sa.select(Alias)):
        aliases.setdefault(alias.model_version_id, []).append(alias.name)
    return [
        Consumer(
            name,
            mv.version,
            f"{dataset}:{dv}",
            sorted(aliases.get(mv.id, [])),
            SERVING_ALIAS in aliases.get(mv.id, []),
        )
        for mv, name, dv in session.execute(stmt)
    ]


def live_source(ctx: Context, pipeline: Pipeline) -> tuple[list[str], dt.datetime | None]:
    """The source as it is now, for an engineer looking at it: what is wrong with its files (none match,
    the newest is older than the SLA) and when the newest was written. Blocking never reads this."""
    source = pipeline.source
    if source.files is None:
        return [], None
    found = extract.file_hashes(source, ctx.settings.home)
    if not found:
        return [f"pipeline {pipeline.name}: no source file matches {source.files}"], None
    newest = dt.datetime.fromtimestamp(max(Path(p).stat().st_mtime for p in found), tz=dt.UTC)
    late = _past_sla(pipeline, (clock.now() - newest).total_seconds(), "the newest source file")
    return ([late] if late else []), newest


def _past_sla(pipeline: Pipeline, age: float, what: str) -> str:
    if pipeline.freshness is None or age <= parse_seconds(pipeline.freshness):
        return ""
    return f"pipeline {pipeline.name}: {what} is {age / 3600:.1f} h old, past its freshness SLA of {pipeline.freshness}"


def recorded_freshness(*, session: Session, pipeline: Pipeline, now: dt.datetime) -> history.Freshness | None:
    """The pipeline's source as its runs last saw it (`pipelines.history`): the age of its newest data at now."""
    found = history.freshness(session=session, now=now, pattern=pipeline.name)
    return next((f for f in found if f.source == pipeline.name), None)


def health(ctx: Context, pipeline: Pipeline) -> Health:
    """Blocked when the latest run failed or was interrupted, or when the newest data its runs saw is older
    than the SLA now: the run history decides, never the files as they are. A pipeline that never ran is no
    source of its dataset yet, so it blocks nothing."""
    out = Health(pipeline.name, pipeline.dataset)
    with ctx.db.session() as session:
        run = records.latest_run(session=session, pipeline=pipeline.name)
        if run is None:
            return out
        records.reap(session, run)
        out.latest_run, out.latest_state = run.id, run.state
        if run.state in (RunState.FAILED, RunState.INTERRUPTED):
            what = f" ({run.failure_class})" if run.failure_class else ""
            out.reasons.append(
                f"pipeline {pipeline.name} run #{run.id} {run.state} at stage {run.failed_stage}{what}: "
                f"{run.error}"
            )
        seen = recorded_freshness(session=session, pipeline=pipeline, now=clock.now())
    if seen is not None and seen.age_seconds is not None:
        out.newest_source = seen.newest_at
        late = _past_sla(pipeline, seen.age_seconds, "the newest source data its runs saw")
        if late:
            out.reasons.append(late)
    return out


def sla_seconds(pipeline: Pipeline) -> float | None:
    return parse_seconds(pipeline.freshness) if pipeline.freshness is not None else None


def feeding_model(ctx: Context, model: str) -> list[Pipeline]:
    """The declared pipelines whose dataset some version of the model trained on."""
    found = []
    with ctx.db.session() as session:
        for pipeline in sorted(pipeline_spec.discover(ctx.settings).values(), key=lambda p: p[0].name):
            if any(c.model == model for c in consumers(session=session, dataset=pipeline[0].dataset)):
                found.append(pipeline[0])
    return found


def feeding(ctx: Context, dataset: str) -> list[Pipeline]:
    return [p for p, _path in pipeline_spec.discover(ctx.settings).values() if p.dataset == dataset]


def retraining_block(ctx: Context, *, dataset: str) -> list[str]:
    """Why retraining on `dataset` must not start: a pipeline feeding it is stale or failed (empty: go)."""
    reasons: list[str] = []
    for pipeline in feeding(ctx, dataset):
        reasons += health(ctx, pipeline).reasons
    return reasons

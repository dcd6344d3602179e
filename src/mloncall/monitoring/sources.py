"""The monitors of the batch data a model trains on, from its pipelines' run history: `freshness` (the newest
data the runs saw is older than the source's declared SLA, or `max_age`) and `pipeline` (the latest run
failed, or was interrupted). One part per pipeline feeding the model; the worst judged one wins.
"""

from __future__ import annotations

from mloncall.core.outcome import Check, Outcome
from mloncall.monitoring.schemas import FreshnessParams, PipelineParams
from mloncall.monitoring.scope import Scope
from mloncall.monitoring.verdict import Part, combine
from mloncall.pipelines import downstream, records
from mloncall.pipelines.states import RunState


def _none_feeds(scope: Scope) -> str:
    return f"no declared pipeline feeds the dataset {scope.model} trains on"


def run_freshness(scope: Scope, params: FreshnessParams) -> Check:
    parts = []
    with scope.ctx.db.session() as session:
        for pipeline in downstream.feeding_model(scope.ctx, scope.model):
            limit = params.max_age.total_seconds() if params.max_age is not None else None
            if limit is None and pipeline.freshness is not None:
                limit = downstream.sla_seconds(pipeline)
            seen = downstream.recorded_freshness(session=session, pipeline=pipeline, now=scope.until)
            evidence = {
                "dataset": pipeline.dataset,
                "sla_seconds": limit,
                "age_seconds": None,
                "age_hours": None,
            }
            if limit is None:
                parts.append(
                    Part(pipeline.name, Outcome.INCONCLUSIVE, "it declares no freshness SLA", evidence)
                )
                continue
            if seen is None or seen.age_seconds is None:
                why = "no run of it has dated its source data yet"
                parts.append(Part(pipeline.name, Outcome.INCONCLUSIVE, why, evidence))
                continue
            age = seen.age_seconds
            evidence.update(
                age_seconds=age, age_hours=age / 3600, newest_at=seen.newest_at.isoformat() if seen.newest_at else None,
                observed_at=seen.observed_at.isoformat(), status=seen.status,
            )  # fmt: skip
            if age > limit:
                why = (
                    f"its newest source data is {age / 3600:.1f} h old, past its SLA of {limit / 3600:.1f} h"
                )
                parts.append(Part(pipeline.name, Outcome.FAILED, why, evidence))
            else:
                why = f"its newest source data is {age / 3600:.1f} h old (SLA {limit / 3600:.1f} h)"
                parts.append(Part(pipeline.name, Outcome.SUCCESSFUL, why, evidence))
    return combine("freshness", parts, {}, empty_reason=_none_feeds(scope))


def run_pipeline(scope: Scope, params: PipelineParams) -> Check:
    bad = {RunState.FAILED} | ({RunState.INTERRUPTED} if params.interrupted else set())
    parts = []
    with scope.ctx.db.session() as session:
        for pipeline in downstream.feeding_model(scope.ctx, scope.model):
            run = records.latest_run(session=session, pipeline=pipeline.name)
            if run is None:
                parts.append(Part(pipeline.name, Outcome.INCONCLUSIVE, "it never ran", {"run": None}))
                continue
            records.reap(session, run)
            evidence = {
                "run": run.id, "state": run.state, "failed_stage": run.failed_stage,
                "failure_class": run.failure_class, "error": run.error, "fix": run.fix, "dataset": pipeline.dataset,
            }  # fmt: skip
            if run.state in bad:
                what = f" ({run.failure_class})" if run.failure_class else ""
                why = f"run #{run.id} {run.state} at stage {run.failed_stage}{what}: {run.error}"
                parts.append(Part(pipeline.name, Outcome.FAILED, why, evidence))
            elif run.state == RunState.RUNNING:
                parts.append(Part(pipeline.name, Outcome.INCONCLUSIVE, f"run #{run.id} is running", evidence))
            else:
                parts.append(Part(pipeline.name, Outcome.SUCCESSFUL, f"run #{run.id} {run.state}", evidence))
    return combine("pipeline", parts, {}, empty_reason=_none_feeds(scope))

"""Running declared pipelines on the orchestrator, and re-running a failed run from its failed stage.

A re-run skips the stages before the failed one only after proving their inputs byte-identical to the
failed run's, by hash: each source file, each skipped stage's declaration and its kept output. If anything
changed it refuses, names what changed and offers the full run. The load stage registers content-hashed
dataset versions, so a re-run never makes a duplicate, and a snapshot is visible only once committed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mloncall.core import clock
from mloncall.core.errors import Conflict
from mloncall.data.models import Dataset
from mloncall.pipelines import downstream, extract, spec
from mloncall.pipelines.models import PipelineRun, PipelineStage
from mloncall.pipelines.orchestrator import DagsterOrchestrator, Orchestrator, Plan
from mloncall.pipelines.records import HOST, created, get_run_or_raise, latest_run, move_run, move_stage, reap
from mloncall.pipelines.runner import Runner
from mloncall.pipelines.schemas import PipelineSummary, RunRead, StatusRead
from mloncall.pipelines.spec import Pipeline
from mloncall.pipelines.states import RunMode, RunState, StageState
from mloncall.stores.context import Context
from mloncall.stores.db import find_one


def default_orchestrator(ctx: Context) -> Orchestrator:
    return DagsterOrchestrator(ctx.settings.home)


@dataclass(frozen=True)
class Reuse:
    """A stage a re-run keeps from the failed run: its record as it was."""

    name: str
    inputs: dict[str, Any]
    output_key: str | None
    output_hash: str | None
    rows_in: int | None
    rows_out: int | None
    details: dict[str, Any]


def _create(ctx: Context, pipeline: Pipeline, *, actor: str, mode: RunMode, parent: int | None,
            start: str, reused: dict[str, Reuse]) -> int:  # fmt: skip
    with ctx.db.session() as session:
        run = PipelineRun(
            pipeline=pipeline.name, state=RunState.RUNNING, mode=mode, parent_id=parent, from_stage=start,
            spec=pipeline.dump(), spec_hash=pipeline.digest(), orchestrator="dagster", host=HOST,
            pid=os.getpid(), started_by=actor, started_at=clock.now(), error="", fix="",
        )  # fmt: skip
        session.add(run)
        session.flush()
        created(session, run, actor)
        for i, s in enumerate(pipeline.stages, start=1):
            stage = PipelineStage(run_id=run.id, position=i, name=s.name, kind=s.kind, state=StageState.PENDING,
                                  log="", error="", inputs={}, details={"declaration": s.digest()})  # fmt: skip
            run.stages.append(stage)
            session.flush()
            if s.name in reused:
                r = reused[s.name]
                move_stage(session, stage, StageState.REUSED, actor=actor,
                           reason=f"kept from run #{parent}: its inputs are unchanged",
                           inputs=r.inputs, output_key=r.output_key, output_hash=r.output_hash,
                           rows_in=r.rows_in, rows_out=r.rows_out,
                           details={**r.details, "declaration": s.digest()})  # fmt: skip
        return run.id


def _execute(ctx: Context, pipeline: Pipeline, run_id: int, *, actor: str, start: str,
             orchestrator: Orchestrator | None) -> int:  # fmt: skip
    engine = orchestrator or default_orchestrator(ctx)
    names = [s.name for s in pipeline.stages]
    plan = Plan(pipeline.name, tuple(names[names.index(start):]), pipeline.retries.attempts,
                pipeline.retries.backoff_seconds)  # fmt: skip
    runner = Runner(ctx, pipeline, run_id, actor=actor, start=start)
    with ctx.db.session() as session:
        get_run_or_raise(session=session, run_id=run_id).orchestrator = engine.name
    result = engine.execute(plan, runner)
    with ctx.db.session() as session:
        run = get_run_or_raise(session=session, run_id=run_id)
        run.orchestrator_run_id = result.orchestrator_run_id
        for stage in run.stages:
            if stage.state == StageState.PENDING:
                move_stage(session, stage, StageState.SKIPPED, actor=actor, reason="an earlier stage failed")
        if result.success:
            move_run(session, run, RunState.SUCCEEDED, actor=actor, reason=runner.outcome.get("dataset", ""),
                     dataset_version_id=runner.outcome.get("dataset_version_id"))  # fmt: skip
        else:
            o = runner.outcome
            move_run(session, run, RunState.FAILED, actor=actor, reason=o.get("error", "a stage failed"),
                     failed_stage=o.get("failed_stage"), failure_class=o.get("failure_class"),
                     error=o.get("error", ""), fix=o.get("fix", ""))  # fmt: skip
    return run_id


def run(ctx: Context, name: str, *, actor: str, orchestrator: Orchestrator | None = None) -> int:
    """A full run of the declared pipeline; returns its run id (a failure is recorded, not raised)."""
    pipeline = spec.get(ctx.settings, name)
    run_id = _create(ctx, pipeline, actor=actor, mode=RunMode.FULL, parent=None,
                     start=pipeline.stages[0].name, reused={})  # fmt: skip
    return _execute(
        ctx, pipeline, run_id, actor=actor, start=pipeline.stages[0].name, orchestrator=orchestrator
    )


def _failed_run(ctx: Context, name: str, run_id: int | None) -> PipelineRun:
    with ctx.db.session() as session:
        found = (
            get_run_or_raise(session=session, run_id=run_id)
            if run_id
            else latest_run(session=session, pipeline=name)
        )
        if found is None:
            raise Conflict(f"pipeline {name} has never run: start it with `mloncall pipeline run {name}`")
        if found.pipeline != name:
            raise Conflict(f"pipeline run #{found.id} is a run of {found.pipeline}, not of {name}")
        reap(session, found)
        if found.state not in (RunState.FAILED, RunState.INTERRUPTED):
            raise Conflict(
                f"pipeline run #{found.id} of {name} is {found.state}: only a failed or interrupted run is "
                "re-run from its failed stage"
            )
        _ = [s.name for s in found.stages]
        session.expunge(found)
        return found


def changed_inputs(
    ctx: Context, pipeline: Pipeline, failed: PipelineRun
) -> tuple[list[str], dict[str, Reuse]]:
    """What differs between now and the failed run for each stage a re-run would skip, and those stages."""
    start = failed.failed_stage or pipeline.stages[0].name
    names = [s.name for s in pipeline.stages]
    old_names = [s.name for s in failed.stages]
    if names != old_names:
        return [f"the stages are now {', '.join(names)} (were {', '.join(old_names)})"], {}
    changed: list[str] = []
    reused: dict[str, Reuse] = {}
    by_name = {s.name: s for s in failed.stages}
    for name in names[: names.index(start)]:
        old = by_name[name]
        stage = pipeline.stage(name)
        if (old.details or {}).get("declaration") != stage.digest():
            changed.append(f"the declaration of stage {name}")
        if stage.source is not None:
            now = extract.file_hashes(stage.source, ctx.settings.home)
            for path in sorted(set(old.inputs) | set(now)):
                if path not in now:
                    changed.append(f"{path} (gone)")
                elif path not in old.inputs:
                    changed.append(f"{path} (new)")
                elif now[path] != old.inputs[path]:
                    changed.append(f"{path} (sha256 {old.inputs[path][:12]} -> {now[path][:12]})")
        if old.output_key is None or ctx.store.sha256_of(old.output_key) != old.output_hash:
            changed.append(f"the kept output of stage {name}")
        reused[name] = Reuse(
            name,
            dict(old.inputs),
            old.output_key,
            old.output_hash,
            old.rows_in,
            old.rows_out,
            dict(old.details or {}),
        )
    return changed, reused


def rerun_from_failed(ctx: Context, name: str, *, actor: str, run_id: int | None = None,
                      orchestrator: Orchestrator | None = None) -> int:  # fmt: skip
    """Re-run the failed (or interrupted) run from its failed stage, once its skipped inputs are proven
    unchanged; Conflict names what changed and offers the full run."""
    pipeline = spec.get(ctx.settings, name)
    failed = _failed_run(ctx, name, run_id)
    start = failed.failed_stage or pipeline.stages[0].name
    changed, reused = changed_inputs(ctx, pipeline, failed)
    if changed:
        raise Conflict(
            f"refusing to re-run {name} from stage {start}: changed since run #{failed.id}: "
            f"{'; '.join(changed)}. Run the whole pipeline instead: mloncall pipeline run {name}",
            details={"changed": changed, "run": failed.id, "full_run": f"mloncall pipeline run {name}"},
        )
    new_id = _create(ctx, pipeline, actor=actor, mode=RunMode.FROM_FAILED, parent=failed.id, start=start,
                     reused=reused)  # fmt: skip
    return _execute(ctx, pipeline, new_id, actor=actor, start=start, orchestrator=orchestrator)


def summaries(ctx: Context) -> list[PipelineSummary]:
    """Every declared pipeline with its latest run's state."""
    out = []
    with ctx.db.session() as session:
        for name, (pipeline, path) in sorted(spec.discover(ctx.settings).items()):
            latest = latest_run(session=session, pipeline=name)
            if latest is not None:
                reap(session, latest)
            src = pipeline.source
            out.append(
                PipelineSummary(
                    name=name, description=pipeline.description, dataset=pipeline.dataset,
                    source=f"{src.kind}: {src.files or src.s3 or src.sql}", stages=[s.name for s in pipeline.stages],
                    path=str(path), latest_run=latest.id if latest else None,
                    latest_state=latest.state if latest else None,
                )
            )  # fmt: skip
    return out


def run_read(ctx: Context, run_id: int) -> RunRead:
    with ctx.db.session() as session:
        found = get_run_or_raise(session=session, run_id=run_id)
        reap(session, found)
        return RunRead.model_validate(found)


def status(ctx: Context, name: str) -> StatusRead:
    """The latest run, whether the source blocks its consumers, and which models and monitors use which
    version of the dataset."""
    pipeline = spec.get(ctx.settings, name)
    found = downstream.health(ctx, pipeline)
    with ctx.db.session() as session:
        latest = latest_run(session=session, pipeline=name)
        latest_read = RunRead.model_validate(latest) if latest is not None else None
        users = downstream.consumers(session=session, dataset=pipeline.dataset)
        known = find_one(session, Dataset, name=pipeline.dataset)
        newest = f"{pipeline.dataset}:{known.versions[-1].version}" if known and known.versions else None
    blocked = sorted({c.model for c in users}) if found.blocked else []
    return StatusRead(
        pipeline=name, dataset=pipeline.dataset, latest=latest_read, newest_version=newest, health=found.to_dict(),
        consumers=[c.to_dict() for c in users], blocked_models=blocked,
    )  # fmt: skip

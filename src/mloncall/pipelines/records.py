"""Reading and moving run and stage records: every move checked against the state tables, written to the
run's timeline and the audit log in the same unit of work. A run whose process died is found here."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from mloncall.access import audit
from mloncall.core import clock
from mloncall.core.errors import NotFound
from mloncall.core.processes import pid_alive
from mloncall.pipelines.models import PipelineEvent, PipelineRun, PipelineStage
from mloncall.pipelines.states import RUN_TRANSITIONS, STAGE_TRANSITIONS, RunState, StageState
from mloncall.stores.db import get_or_raise

HOST = socket.gethostname()


def get_run_or_raise(*, session: Session, run_id: int) -> PipelineRun:
    return get_or_raise(session, PipelineRun, run_id, what="pipeline run")


def list_runs(*, session: Session, pipeline: str | None = None, limit: int = 20) -> Sequence[PipelineRun]:
    """Runs newest first, optionally of one pipeline, their stages loaded."""
    stmt = sa.select(PipelineRun).options(selectinload(PipelineRun.stages)).order_by(PipelineRun.id.desc())
    if pipeline is not None:
        stmt = stmt.where(PipelineRun.pipeline == pipeline)
    return session.scalars(stmt.limit(limit)).all()


def latest_run(*, session: Session, pipeline: str) -> PipelineRun | None:
    runs = list_runs(session=session, pipeline=pipeline, limit=1)
    return runs[0] if runs else None


def last_good_run(*, session: Session, pipeline: str) -> PipelineRun | None:
    """The newest succeeded run of the pipeline, its stages loaded."""
    stmt = (
        sa.select(PipelineRun)
        .options(selectinload(PipelineRun.stages))
        .where(PipelineRun.pipeline == pipeline, PipelineRun.state == RunState.SUCCEEDED)
        .order_by(PipelineRun.id.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def stage_of(run: PipelineRun, name: str) -> PipelineStage:
    for s in run.stages:
        if s.name == name:
            return s
    raise NotFound(f"pipeline run #{run.id} has no stage {name!r}")


def _record(session: Session, run: PipelineRun, stage: str | None, before: str | None, after: str,
            actor: str, reason: str) -> None:  # fmt: skip
    session.add(PipelineEvent(run_id=run.id, stage=stage, at=clock.now(), actor=actor, from_state=before,
                              to_state=after, reason=reason[:2000], evidence={}))  # fmt: skip
    audit.record(
        session=session,
        actor=actor,
        action=f"pipelines.{run.pipeline}.{'stage' if stage else 'run'}",
        target=f"pipeline-run:{run.id}" + (f"/{stage}" if stage else ""),
        outcome=str(after),
        detail={"from": before, "to": str(after), "reason": reason[:500]},
    )


def created(session: Session, run: PipelineRun, actor: str) -> None:
    """The first line of a new run's timeline."""
    _record(session, run, None, None, RunState.RUNNING, actor, f"{run.mode} run of {run.pipeline}")


def move_stage(session: Session, stage: PipelineStage, to: StageState, *, actor: str, reason: str = "",
               **fields: Any) -> None:  # fmt: skip
    STAGE_TRANSITIONS.check(f"stage {stage.name!r} of pipeline run #{stage.run_id}", stage.state, to)
    before = stage.state
    stage.state = to
    for key, value in fields.items():
        setattr(stage, key, value)
    _record(session, stage.run, stage.name, before, to, actor, reason)


def move_run(session: Session, run: PipelineRun, to: RunState, *, actor: str, reason: str = "",
             **fields: Any) -> None:  # fmt: skip
    RUN_TRANSITIONS.check(f"pipeline run #{run.id}", run.state, to)
    before = run.state
    run.state = to
    if to != RunState.RUNNING:
        run.finished_at = clock.now()
    for key, value in fields.items():
        setattr(run, key, value)
    _record(session, run, None, before, to, actor, reason)


def reap(session: Session, run: PipelineRun) -> bool:
    """Mark a run interrupted when the process running it on this host is gone (killed, crashed): its
    running stage becomes the one a re-run starts from. True if the run was reaped."""
    if run.state != RunState.RUNNING or run.host != HOST or run.pid is None or pid_alive(run.pid):
        return False
    running = [s for s in run.stages if s.state == StageState.RUNNING]
    why = f"the process running it (pid {run.pid} on {run.host}) is gone"
    for stage in running:
        move_stage(session, stage, StageState.INTERRUPTED, actor="mloncall", reason=why, error=why,
                   finished_at=clock.now())  # fmt: skip
    for stage in run.stages:
        if stage.state == StageState.PENDING:
            move_stage(session, stage, StageState.SKIPPED, actor="mloncall", reason="the run was interrupted")
    first = running[0].name if running else next((s.name for s in run.stages if s.state != "succeeded"), None)
    move_run(session, run, RunState.INTERRUPTED, actor="mloncall", reason=why, failed_stage=first, error=why)
    return True

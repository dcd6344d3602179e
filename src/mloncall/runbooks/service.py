"""Runs and their steps in the metadata database: create, read, and move them, each move recorded in the
run's timeline and in the audit log. Functions take a session and never commit."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.access import audit
from mloncall.core import clock
from mloncall.core.errors import Conflict, InvalidInput, NotFound
from mloncall.incidents import service as incidents
from mloncall.incidents.states import IncidentState, TimelineKind
from mloncall.runbooks.models import RunbookEvent, RunbookRun, RunbookStep
from mloncall.runbooks.spec import Runbook
from mloncall.runbooks.states import RUN_TRANSITIONS, STEP_TRANSITIONS, RunMode, RunState, StepState
from mloncall.stores.db import get_or_raise


def create_run(
    *,
    session: Session,
    runbook: Runbook,
    params: dict[str, Any],
    actor: str,
    alert_id: int | None = None,
    parent: RunbookRun | None = None,
    parent_step: str | None = None,
    mode: RunMode = RunMode.FULL,
) -> RunbookRun:
    """A new run of the runbook, every step pending, its start in the timeline and the audit log."""
    now = clock.now()
    run = RunbookRun(
        runbook=runbook.name,
        target=runbook.target(params),
        params=params,
        state=RunState.RUNNING,
        mode=mode,
        started_by=actor,
        alert_id=alert_id,
        incident_id=_incident_of(session, runbook, params, alert_id=alert_id, parent=parent),
        parent_id=parent.id if parent is not None else None,
        parent_step=parent_step,
        created_at=now,
        updated_at=now,
        reason="started",
    )
    run.steps = [
        RunbookStep(position=i, name=s.name, kind=s.kind, title=s.title, state=StepState.PENDING)
        for i, s in enumerate(runbook.steps, start=1)
    ]
    session.add(run)
    session.flush()
    why = f"started on {run.target}" + (f" as part of run #{parent.id}" if parent is not None else "")
    if mode == RunMode.CHECKS:
        why += f", its read-only checks only (alert #{alert_id})"
    _record(session, run, Move(None, None, RunState.RUNNING, actor, why))
    return run


def _incident_of(
    session: Session,
    runbook: Runbook,
    params: dict[str, Any],
    *,
    alert_id: int | None,
    parent: RunbookRun | None,
) -> int | None:
    """The incident a new run serves: its `incident` parameter (which must exist and not be closed), else its
    parent's, else the incident its alert belongs to."""
    if any(p.name == "incident" for p in runbook.params) and params.get("incident") is not None:
        incident = incidents.get_incident_or_raise(session=session, incident_id=int(params["incident"]))
        if incident.state == IncidentState.CLOSED:
            raise Conflict(
                f"incident {incident.id} is closed (its post-mortem is complete): there is nothing left to "
                f"run {runbook.name} on; see `mloncall incident show {incident.id}`"
            )
        if incident.state == IncidentState.MERGED:
            raise Conflict(
                f"incident {incident.id} was merged into incident {incident.merged_into_id}: "
                f"run {runbook.name} on incident {incident.merged_into_id}"
            )
        return incident.id
    if parent is not None and parent.incident_id is not None:
        return parent.incident_id
    if alert_id is not None:
        found = incidents.incident_of_alert(session=session, alert_id=alert_id)
        return found.id if found is not None and found.state != IncidentState.CLOSED else None
    return None


def get_run_or_raise(*, session: Session, run_id: int) -> RunbookRun:
    return get_or_raise(session, RunbookRun, run_id, what="runbook run")


def list_runs(
    *, session: Session, runbook: str | None = None, limit: int = 50, offset: int = 0
) -> Sequence[RunbookRun]:
    """Runs newest first (skipping `offset`, for a page), optionally of one runbook."""
    if limit < 1:
        raise InvalidInput(f"limit must be at least 1, not {limit}")
    stmt = sa.select(RunbookRun)
    if runbook is not None:
        stmt = stmt.where(RunbookRun.runbook == runbook)
    return session.scalars(stmt.order_by(RunbookRun.id.desc()).offset(max(offset, 0)).limit(limit)).all()


def checks_runs(*, session: Session, alert_id: int) -> Sequence[RunbookRun]:
    """The checks-only runs started for an alert, oldest first."""
    return session.scalars(
        sa.select(RunbookRun)
        .where(RunbookRun.alert_id == alert_id, RunbookRun.mode == RunMode.CHECKS)
        .order_by(RunbookRun.id)
    ).all()


def child_run(*, session: Session, parent_id: int, step: str) -> RunbookRun | None:
    """The sub-run a parent's step started, if any."""
    return session.scalars(
        sa.select(RunbookRun)
        .where(RunbookRun.parent_id == parent_id, RunbookRun.parent_step == step)
        .order_by(RunbookRun.id.desc())
        .limit(1)
    ).one_or_none()


def children(*, session: Session, run_id: int) -> Sequence[RunbookRun]:
    return session.scalars(
        sa.select(RunbookRun).where(RunbookRun.parent_id == run_id).order_by(RunbookRun.id)
    ).all()


def root_id(*, session: Session, run: RunbookRun) -> int:
    """The id of the run at the top of this run's tree (the one that holds the lease)."""
    current = run
    while current.parent_id is not None:
        parent = session.get(RunbookRun, current.parent_id)
        if parent is None:
            break
        current = parent
    return current.id


def step_of(run: RunbookRun, name: str) -> RunbookStep:
    for s in run.steps:
        if s.name == name:
            return s
    raise NotFound(f"run #{run.id} has no step {name!r}")


def move_step(
    *,
    session: Session,
    step: RunbookStep,
    to_state: StepState,
    actor: str,
    reason: str,
    **fields: Any,
) -> RunbookStep:
    """Move a step (the allowed moves are `states.STEP_TRANSITIONS`), set its fields, record the move."""
    STEP_TRANSITIONS.check(f"step {step.name!r}", step.state, to_state)
    before = step.state
    now = clock.now()
    if to_state == StepState.RUNNING:
        step.started_at = now
        step.finished_at = None
        step.attempts = (step.attempts or 0) + 1
        step.error = None
    if to_state in (StepState.SUCCESSFUL, StepState.INCONCLUSIVE, StepState.FAILED, StepState.SKIPPED):
        step.finished_at = now
    step.state = to_state
    step.actor = actor
    step.reason = reason
    for key, value in fields.items():
        setattr(step, key, value)
    step.run.updated_at = now
    _record(session, step.run, Move(step.name, before, to_state, actor, reason))
    return step


def move_run(
    *,
    session: Session,
    run: RunbookRun,
    to_state: RunState,
    actor: str,
    reason: str,
    outcome: str | None = None,
) -> RunbookRun:
    RUN_TRANSITIONS.check(f"run #{run.id}", run.state, to_state)
    before = run.state
    run.state = to_state
    run.reason = reason
    run.updated_at = clock.now()
    if to_state == RunState.FINISHED:
        run.finished_at = run.updated_at
        run.outcome = outcome
    _record(session, run, Move(None, before, to_state, actor, reason))
    return run


@dataclass(frozen=True)
class Move:
    """One transition of a run (step None) or of one of its steps, by whom and why."""

    step: str | None
    from_state: str | None
    to_state: str
    actor: str
    reason: str


def _record(session: Session, run: RunbookRun, move: Move) -> None:
    """One line of the run's timeline and one audit record, in the same unit of work as the move."""
    session.add(RunbookEvent(run_id=run.id, at=clock.now(), **dataclasses.asdict(move)))
    step = move.step
    audit.record(
        session=session,
        actor=move.actor,
        action=f"runbooks.{run.runbook}.{'step' if step else 'run'}",
        target=f"run:{run.id}" + (f"/{step}" if step else ""),
        outcome=str(move.to_state),
        detail={"from": move.from_state, "to": str(move.to_state), "reason": move.reason[:500]},
    )
    if run.incident_id is not None:
        _to_timeline(session, run, move)
    session.flush()


def _to_timeline(session: Session, run: RunbookRun, move: Move) -> None:
    """The same move on the timeline of the incident the run serves (what its post-mortem reads)."""
    assert run.incident_id is not None
    step, from_state, to_state, reason = move.step, move.from_state, move.to_state, move.reason
    what = f"run #{run.id} ({run.runbook})" + (f" step {step}" if step else "")
    incidents.add_entry(
        session=session,
        incident_id=run.incident_id,
        kind=TimelineKind.RUNBOOK,
        actor=move.actor,
        at=clock.now(),
        text=f"{what}: {from_state or 'new'} -> {to_state}" + (f": {reason}" if reason else ""),
        detail={"runbook_run": run.id, "runbook": run.runbook, "step": step, "from": from_state,
                "to": str(to_state)},
    )  # fmt: skip

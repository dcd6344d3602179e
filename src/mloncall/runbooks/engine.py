"""The runbook engine: execute a run step by step, record every transition, stop where a step fails,
wait where a person must confirm, resume from the first step that did not succeed, and judge acceptance.

Each transition is its own committed unit of work, so a run killed at any moment (Ctrl-C, `kill -9`, a
server restart) leaves a record that says exactly where it was. The run tree holds its target's lease
(`lease`) while it executes, so two runs never act on one model at the same time.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from mloncall.access import audit
from mloncall.core import clock
from mloncall.core.errors import Conflict, InvalidInput, MloncallError
from mloncall.core.outcome import Check, Outcome, worst
from mloncall.runbooks import lease, service
from mloncall.runbooks.catalog import get_runbook
from mloncall.runbooks.confirmation import (
    CONTINUE,
    STOP,
    WAIT,
    Recovery,
    confirm,
    manual,
    precondition,
    question,
    recover,
)
from mloncall.runbooks.models import RunbookRun, RunbookStep
from mloncall.runbooks.runcontext import (
    Confirmer,
    RunContext,
    SubRunPaused,
    Unattended,
    changed,
    move_run,
    move_step,
    run_state,
    step_row,
)
from mloncall.runbooks.spec import Step
from mloncall.runbooks.states import RunMode, RunState, StepKind, StepState, state_of
from mloncall.stores.context import Context

__all__ = [
    "Confirmer",
    "RunContext",
    "SubRunPaused",
    "Unattended",
    "execute",
    "execute_after_answer",
    "resume",
    "start",
]


# --- starting and resuming ---------------------------------------------------------------------------------


def start(
    ctx: Context,
    *,
    runbook: str,
    params: dict[str, Any],
    positional: list[str] | None = None,
    alert_id: int | None = None,
    confirmer: Confirmer,
    on_change: Callable[[int], None] | None = None,
) -> int:
    """Create a run of the named runbook with checked parameters, execute it; returns its id."""
    run_id = create(
        ctx, runbook=runbook, params=params, positional=positional, alert_id=alert_id, actor=confirmer.actor
    )
    execute(ctx, run_id, confirmer=confirmer, on_change=on_change)
    return run_id


def create(
    ctx: Context,
    *,
    runbook: str,
    params: dict[str, Any],
    actor: str,
    positional: list[str] | None = None,
    alert_id: int | None = None,
    mode: RunMode = RunMode.FULL,
) -> int:
    """A new run of the named runbook with checked parameters (the alert's model filled in), not yet run."""
    book = get_runbook(runbook)
    if book.needs_alert and alert_id is None:
        raise InvalidInput(f"runbook {book.name} works on an alert: give --alert ID")
    given = dict(params)
    with ctx.db.session() as s:
        if alert_id is not None:
            from mloncall.alerts import service as alerts

            alert = alerts.get_alert_or_raise(session=s, alert_id=alert_id)
            if any(p.name == "model" for p in book.params) and alert.model and not given.get("model"):
                given["model"] = alert.model
        parsed = book.parse_params(given, positional)
        run = service.create_run(
            session=s, runbook=book, params=parsed, actor=actor, alert_id=alert_id, mode=mode
        )
        return run.id


def resume(
    ctx: Context, run_id: int, *, confirmer: Confirmer, on_change: Callable[[int], None] | None = None
) -> int:
    """Continue a run from its first step that did not succeed; returns the id of the run resumed."""
    root = resumable(ctx, run_id)
    execute(ctx, root, confirmer=confirmer, on_change=on_change, resumed=True)
    return root


def resumable(ctx: Context, run_id: int) -> int:
    """The root of the run's tree, to resume; Conflict when the run has finished."""
    with ctx.db.session() as s:
        run = service.get_run_or_raise(session=s, run_id=run_id)
        root = service.root_id(session=s, run=run)
        if run.mode == RunMode.CHECKS:
            raise Conflict(
                f"run #{run_id} ran only the read-only checks of {run.runbook} for alert #{run.alert_id}: "
                f"nothing to resume (start a run with `mloncall runbook run {run.runbook} "
                f"--alert {run.alert_id}`)"
            )
        if run.state == RunState.FINISHED:
            raise Conflict(
                f"run #{run_id} of {run.runbook} finished {run.outcome} at {run.finished_at:%Y-%m-%d %H:%M} "
                f"UTC: nothing to resume (start a new run with `mloncall runbook run {run.runbook}`)"
            )
    return root


def execute(
    ctx: Context,
    run_id: int,
    *,
    confirmer: Confirmer,
    owner: str | None = None,
    on_change: Callable[[int], None] | None = None,
    resumed: bool = False,
) -> None:
    """Execute a run under its target's lease until it finishes, stops or waits."""
    owner = owner or lease.new_owner()
    rc, target, root = _context(ctx, run_id, confirmer, owner=owner, on_change=on_change)
    try:
        took = lease.acquire(db=ctx.db, target=target, run_id=root, owner=owner)
    except Conflict as exc:
        move_run(rc, RunState.STOPPED, f"could not act: {exc.message}", only_from=(RunState.RUNNING,))
        raise
    beat = lease.Heartbeat(ctx.db, target, owner).start() if took else None
    try:
        if resumed or run_state(rc) != RunState.RUNNING:
            move_run(rc, RunState.RUNNING, f"resumed by {rc.actor}")
        _drive(rc)
    finally:
        if beat is not None:
            beat.stop()
            lease.release(db=ctx.db, target=target, owner=owner)


def execute_after_answer(ctx: Context, run_id: int, *, actor: str, yes: bool, resumed: bool) -> None:
    """`execute` as a background task of the request that started or resumed the run, with nobody to ask
    (`yes` answers every question, else the run waits): a failure is kept in the run's record (a busy
    target stops it with the reason), since nobody waits on the task to hear it."""
    try:
        execute(ctx, run_id, confirmer=Unattended(actor, yes=yes), resumed=resumed)
    except Exception:  # kept in the run's record
        return


def _context(
    ctx: Context,
    run_id: int,
    confirmer: Confirmer,
    *,
    owner: str,
    on_change: Callable[[int], None] | None = None,
) -> tuple[RunContext, str, int]:
    """The context the run's steps work with, the run's target and the id of its tree's root."""
    with ctx.db.session() as s:
        run = service.get_run_or_raise(session=s, run_id=run_id)
        rc = _run_context(ctx, run, confirmer, owner=owner, on_change=on_change)
        return rc, run.target, service.root_id(session=s, run=run)


def _run_context(
    ctx: Context,
    run: RunbookRun,
    confirmer: Confirmer,
    *,
    owner: str,
    on_change: Callable[[int], None] | None = None,
) -> RunContext:
    """What the steps of `run` work with, acting as the confirmer's actor."""
    return RunContext(
        ctx=ctx,
        run_id=run.id,
        runbook=get_runbook(run.runbook),
        params=dict(run.params),
        actor=confirmer.actor,
        confirmer=confirmer,
        owner=owner,
        alert_id=run.alert_id,
        on_change=on_change,
    )


def run_checks(ctx: Context, run_id: int, *, actor: str) -> str:
    """Execute only a checks-mode run's triage checks (`Runbook.triage_checks`); the run's outcome.

    No lease and no confirmation: nothing is changed. Every other step is skipped, and so is every check
    after one that failed and stops its runbook. The run finishes with its worst check's outcome; its
    acceptance is not judged, since its objective was not pursued.
    """
    rc, _, _ = _context(ctx, run_id, Unattended(actor), owner="")
    triage = {spec.name for spec in rc.runbook.triage_checks()}
    halted = ""
    outcomes: list[Outcome] = []
    for spec in rc.runbook.steps:
        if spec.name not in triage or halted:
            move_step(rc, spec.name, StepState.SKIPPED, halted or "a checks-only run: not a read-only check")
            continue
        rc.step_name = spec.name
        _run_body(rc, spec, spec.run, extra={}, halt=False)
        state = step_row(rc, spec.name).state
        outcomes.append(_STATE_OUTCOMES[StepState(state)])
        if state == StepState.FAILED and spec.stop_on_failure:
            halted = f"not run: check {spec.name} failed"
    verdict = worst(outcomes).label if outcomes else Outcome.INCONCLUSIVE.label
    with ctx.db.session() as s:
        run = service.get_run_or_raise(session=s, run_id=run_id)
        service.move_run(
            session=s,
            run=run,
            to_state=RunState.FINISHED,
            actor=actor,
            reason=f"read-only checks done ({len(outcomes)} run): {verdict}",
            outcome=verdict,
        )
    changed(rc)
    return verdict


_STATE_OUTCOMES = {
    StepState.SUCCESSFUL: Outcome.SUCCESSFUL,
    StepState.INCONCLUSIVE: Outcome.INCONCLUSIVE,
    StepState.FAILED: Outcome.FAILED,
}


# --- the step loop -----------------------------------------------------------------------------------------


def _drive(rc: RunContext) -> None:
    for spec in rc.runbook.steps:
        row = step_row(rc, spec.name)
        if not _needs_running(spec, row):
            continue
        rc.step_name = spec.name
        verdict = _execute_step(rc, spec, row)
        if verdict != CONTINUE:
            return
    finish(rc)


def _needs_running(spec: Step, row: RunbookStep) -> bool:
    if row.state in (StepState.PENDING, StepState.WAITING, StepState.RUNNING):
        return True
    return row.state == StepState.FAILED and (spec.stop_on_failure or row.error is not None)


def _execute_step(rc: RunContext, spec: Step, row: RunbookStep) -> str:
    interrupted = row.state == StepState.RUNNING
    if spec.kind == StepKind.MANUAL:
        return manual(rc, spec)
    if spec.kind != StepKind.ACTION:
        return _run_body(rc, spec, spec.run, extra={"resumed": True} if interrupted else {})
    if not spec.idempotent and row.started_at is not None:
        return _recovered(rc, spec)  # it ran before, maybe in part: never again without a look and a person
    before = precondition(rc, spec)
    if before is not None and not before.passed:
        return _fail(
            rc, spec, f"precondition not met: {before.reason}", evidence={"before": before.to_dict()}
        )
    confirmation = confirm(rc, spec, question(rc, spec) or f"{spec.title}?")
    if not isinstance(confirmation, dict):
        return confirmation
    extra = {"before": before.to_dict() if before else None}
    return _run_body(rc, spec, spec.run, extra=extra, confirmation=confirmation)


def _recovered(rc: RunContext, spec: Step) -> str:
    found = recover(rc, spec)
    if not isinstance(found, Recovery):
        return found
    if found.body is None:
        return _fail(rc, spec, found.failed)
    extra = {"recovered": {"trace": found.trace}}
    return _run_body(rc, spec, found.body, extra=extra, confirmation=found.confirmation)


def _run_body(
    rc: RunContext,
    spec: Step,
    body: Callable[[RunContext], Check],
    *,
    extra: dict[str, Any],
    confirmation: dict[str, Any] | None = None,
    halt: bool = True,
) -> str:
    """Run a step's body and record its outcome; with `halt`, a failure that stops its runbook stops the run."""
    fields: dict[str, Any] = {"confirmation": confirmation} if confirmation else {}
    move_step(rc, spec.name, StepState.RUNNING, f"{spec.kind} started", **fields)
    try:
        result = body(rc)
    except SubRunPaused as paused:
        to = RunState.WAITING if paused.state == RunState.WAITING else RunState.STOPPED
        move_run(rc, to, paused.reason)
        return WAIT if to == RunState.WAITING else STOP
    except Exception as exc:  # a raising step is recorded as failed with its error; nothing after it runs
        message = exc.message if isinstance(exc, MloncallError) else f"{type(exc).__name__}: {exc}"
        tb = "" if isinstance(exc, MloncallError) else traceback.format_exc(limit=6)[-4000:]
        kept: dict[str, Any] = {"traceback": tb} if tb else {}
        return _fail(rc, spec, f"raised: {message}", error=message, evidence=kept, halt=halt)
    state = state_of(result.outcome)
    evidence = {
        **step_row(rc, spec.name).evidence,
        **extra,
        **result.evidence,
        "outcome": result.outcome.label,
    }
    if spec.kind == StepKind.ACTION:
        evidence["after"] = result.evidence
    move_step(rc, spec.name, state, result.reason, evidence=evidence)
    if spec.kind == StepKind.DECISION:
        _skip_unchosen(rc, spec, list(result.evidence.get("chosen", [])), result.reason)
    if state == StepState.FAILED and spec.stop_on_failure and halt:
        move_run(rc, RunState.STOPPED, f"step {spec.name} failed: {result.reason}")
        return STOP
    return CONTINUE


def _skip_unchosen(rc: RunContext, spec: Step, chosen: list[str], why: str) -> None:
    for name in spec.chooses_among:
        if name not in chosen and step_row(rc, name).state in (StepState.PENDING, StepState.WAITING):
            move_step(rc, name, StepState.SKIPPED, f"not chosen by {spec.name}: {why}")


def _fail(
    rc: RunContext,
    spec: Step,
    reason: str,
    *,
    error: str | None = None,
    evidence: dict[str, Any] | None = None,
    halt: bool = True,
) -> str:
    row = step_row(rc, spec.name)
    fields: dict[str, Any] = {"evidence": {**(row.evidence or {}), **(evidence or {})}}
    if error is not None:
        fields["error"] = error
    move_step(rc, spec.name, StepState.FAILED, reason, **fields)
    if halt:
        move_run(rc, RunState.STOPPED, f"step {spec.name} failed: {reason}")
    return STOP


# --- acceptance --------------------------------------------------------------------------------------------


def judge(rc: RunContext) -> dict[str, Any]:
    """Every acceptance criterion of the run, each a check with its evidence, and the verdict."""
    checks = []
    for c in rc.runbook.acceptance:
        rc.step_name = ""
        try:
            found = c.check(rc)
            checks.append(Check(c.name, found.outcome, found.reason, found.evidence))
        except Exception as exc:  # a criterion that cannot be judged is an error, not a crash
            checks.append(Check(c.name, Outcome.ERROR, getattr(exc, "message", str(exc))))
    verdict = worst(c.outcome for c in checks)
    return {
        "outcome": verdict.label,
        "checks": [c.to_dict() for c in checks],
        "checked_at": clock.now().isoformat(),
    }


def finish(rc: RunContext) -> None:
    acceptance = judge(rc)
    with rc.ctx.db.session() as s:
        run = service.get_run_or_raise(session=s, run_id=rc.run_id)
        run.acceptance = acceptance
        failed = [c["name"] for c in acceptance["checks"] if c["outcome"] != "successful"]
        why = "every acceptance criterion met" if not failed else f"acceptance not met: {', '.join(failed)}"
        service.move_run(
            session=s,
            run=run,
            to_state=RunState.FINISHED,
            actor=rc.actor,
            reason=why,
            outcome=acceptance["outcome"],
        )
    changed(rc)


def recheck(ctx: Context, run_id: int, *, actor: str) -> dict[str, Any]:
    """Judge a finished run's acceptance again, now (kept with the run, and audited)."""
    with ctx.db.session() as s:
        run = service.get_run_or_raise(session=s, run_id=run_id)
        if run.state != RunState.FINISHED:
            raise Conflict(f"run #{run_id} is {run.state}: acceptance is judged when it has finished")
        rc = _run_context(ctx, run, Unattended(actor), owner="")
    acceptance = judge(rc)
    with ctx.db.session() as s:
        run = service.get_run_or_raise(session=s, run_id=run_id)
        run.acceptance = acceptance
        audit.record(
            session=s,
            actor=actor,
            action=f"runbooks.{run.runbook}.accept",
            target=f"run:{run_id}",
            outcome=acceptance["outcome"],
            detail={"checks": len(acceptance["checks"])},
        )
    return acceptance


# --- the record --------------------------------------------------------------------------------------------

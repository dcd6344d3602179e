"""The runbook engine: execute a run step by step, record every transition, stop where a step fails,
wait where a person must confirm, resume from the first step that did not succeed, and judge acceptance.

Each transition is its own committed unit of work, so a run killed at any moment (Ctrl-C, `kill -9`, a
server restart) leaves a record that says exactly where it was. The run tree holds its target's lease
(`lease`) while it executes, so two runs never act on one model at the same time.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mloncall.core import clock
from mloncall.core.errors import Conflict, InvalidInput, MloncallError
from mloncall.core.outcome import Check, Outcome, worst
from mloncall.runbooks import lease, service
from mloncall.runbooks.catalog import get_runbook
from mloncall.runbooks.models import RunbookRun, RunbookStep
from mloncall.runbooks.spec import Runbook, Step
from mloncall.runbooks.states import RunState, StepKind, StepState, state_of
from mloncall.stores.context import Context

CONTINUE, WAIT, STOP = "continue", "wait", "stop"


class Confirmer(Protocol):
    """Who answers a run's questions: a terminal prompt, `--yes`, or (later) an approval."""

    actor: str

    def ask(self, question: str) -> bool | None:
        """True to go ahead, False to refuse, None when nobody can be asked now."""

    def note(self, prompt: str) -> str:
        """A person's note for a manual step."""


@dataclass
class Unattended:
    """No one at a terminal: `yes` answers every question, otherwise the run waits."""

    actor: str
    yes: bool = False

    def ask(self, question: str) -> bool | None:
        return True if self.yes else None

    def note(self, prompt: str) -> str:
        return "confirmed with --yes" if self.yes else ""


class SubRunPaused(Exception):
    """A sub-run stopped or waits: its parent step stays running and the parent run pauses with it."""

    def __init__(self, run_id: int, state: str, reason: str) -> None:
        super().__init__(reason)
        self.run_id, self.state, self.reason = run_id, state, reason


@dataclass
class RunContext:
    """What a step function works with: the installation, the run's parameters, and its record."""

    ctx: Context
    run_id: int
    runbook: Runbook
    params: dict[str, Any]
    actor: str
    confirmer: Confirmer
    owner: str
    alert_id: int | None = None
    step_name: str = ""
    memo: dict[str, Any] = field(default_factory=dict)
    on_change: Callable[[int], None] | None = None

    def remember(self, key: str, make: Callable[[], Any]) -> Any:
        """A value computed once per execution (evidence several steps read)."""
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def evidence_of(self, step: str) -> dict[str, Any]:
        """What an earlier step of this run recorded."""
        with self.ctx.db.session() as s:
            run = service.get_run_or_raise(session=s, run_id=self.run_id)
            return dict(service.step_of(run, step).evidence or {})

    def state_of(self, step: str) -> str:
        with self.ctx.db.session() as s:
            run = service.get_run_or_raise(session=s, run_id=self.run_id)
            return service.step_of(run, step).state

    def progress(self, **evidence: Any) -> None:
        """Record evidence of the running step at once (what a resumed step reads to not repeat itself)."""
        with self.ctx.db.session() as s:
            run = service.get_run_or_raise(session=s, run_id=self.run_id)
            row = service.step_of(run, self.step_name)
            row.evidence = {**(row.evidence or {}), **evidence}

    def attach(self, name: str, data: bytes, media_type: str) -> dict[str, Any]:
        """Keep a large attachment (an HTML report, a plot) in the artifact store with its sha256."""
        key = f"runbooks/runs/{self.run_id}/{self.step_name}/{name}"
        stored = self.ctx.store.put_bytes(key, data)
        entry = {
            "name": name,
            "key": key,
            "url": self.ctx.store.url(key),
            "sha256": stored.sha256,
            "size": stored.size,
            "media_type": media_type,
        }
        with self.ctx.db.session() as s:
            run = service.get_run_or_raise(session=s, run_id=self.run_id)
            row = service.step_of(run, self.step_name)
            row.attachments = [*(a for a in row.attachments or [] if a["name"] != name), entry]
        return entry

    def subrun(self, runbook: str, params: dict[str, Any]) -> Check:
        """Run another runbook as a linked sub-run of this step (resumed, not restarted, on a second call)."""
        with self.ctx.db.session() as s:
            parent = service.get_run_or_raise(session=s, run_id=self.run_id)
            child = service.child_run(session=s, parent_id=self.run_id, step=self.step_name)
            if child is None:
                book = get_runbook(runbook)
                child = service.create_run(
                    session=s,
                    runbook=book,
                    params=book.parse_params(params),
                    actor=self.actor,
                    alert_id=self.alert_id,
                    parent=parent,
                    parent_step=self.step_name,
                )
            child_id, finished = child.id, child.state == RunState.FINISHED
        self.progress(subrun=child_id)
        if not finished:
            execute(self.ctx, child_id, confirmer=self.confirmer, owner=self.owner, on_change=self.on_change)
        with self.ctx.db.session() as s:
            child = service.get_run_or_raise(session=s, run_id=child_id)
            state, outcome, reason = child.state, child.outcome, child.reason
        if state != RunState.FINISHED:
            raise SubRunPaused(child_id, state, f"sub-run #{child_id} ({runbook}) {state}: {reason}")
        return Check(
            f"{runbook} run #{child_id}",
            Outcome.parse(outcome or "inconclusive"),
            f"{runbook} run #{child_id} finished {outcome}: {reason}",
            {"subrun": child_id, "outcome": outcome},
        )


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
        run = service.create_run(session=s, runbook=book, params=parsed, actor=actor, alert_id=alert_id)
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
    with ctx.db.session() as s:
        run = service.get_run_or_raise(session=s, run_id=run_id)
        target, root, book = run.target, service.root_id(session=s, run=run), get_runbook(run.runbook)
        rc = RunContext(
            ctx=ctx,
            run_id=run_id,
            runbook=book,
            params=dict(run.params),
            actor=confirmer.actor,
            confirmer=confirmer,
            owner=owner,
            alert_id=run.alert_id,
            on_change=on_change,
        )
    try:
        took = lease.acquire(db=ctx.db, target=target, run_id=root, owner=owner)
    except Conflict as exc:
        _move_run(rc, RunState.STOPPED, f"could not act: {exc.message}", only_from=(RunState.RUNNING,))
        raise
    beat = lease.Heartbeat(ctx.db, target, owner).start() if took else None
    try:
        if resumed or _run_state(rc) != RunState.RUNNING:
            _move_run(rc, RunState.RUNNING, f"resumed by {rc.actor}")
        _drive(rc)
    finally:
        if beat is not None:
            beat.stop()
            lease.release(db=ctx.db, target=target, owner=owner)


# --- the step loop -----------------------------------------------------------------------------------------


def _drive(rc: RunContext) -> None:
    for spec in rc.runbook.steps:
        row = _step_row(rc, spec.name)
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
        return _manual(rc, spec)
    if spec.kind != StepKind.ACTION:
        return _run_body(rc, spec, spec.run, extra={"resumed": True} if interrupted else {})
    if not spec.idempotent and row.started_at is not None:
        return _recover(rc, spec)  # it ran before, maybe in part: never again without a look and a person
    before = _precondition(rc, spec)
    if before is not None and not before.passed:
        return _fail(
            rc, spec, f"precondition not met: {before.reason}", evidence={"before": before.to_dict()}
        )
    confirmation = _confirm(rc, spec, _question(rc, spec) or f"{spec.title}?")
    if not isinstance(confirmation, dict):
        return confirmation
    extra = {"before": before.to_dict() if before else None}
    return _run_body(rc, spec, spec.run, extra=extra, confirmation=confirmation)


def _recover(rc: RunContext, spec: Step) -> str:
    """A non-idempotent action found half-run: say what it left, re-check its precondition, ask a person."""
    trace = spec.trace(rc) if spec.trace is not None else None
    if trace:
        body = spec.resume or spec.run
        question = (
            f"'{spec.title}' was interrupted; it left {trace}. Continue from there without repeating it?"
        )
    else:
        before = _precondition(rc, spec)
        if before is not None and not before.passed:
            return _fail(rc, spec, f"interrupted and not repeated: {before.reason}")
        body = spec.run
        question = f"'{spec.title}' was interrupted and left no trace. Run it again?"
    confirmation = _confirm(rc, spec, question)
    if not isinstance(confirmation, dict):
        return confirmation
    return _run_body(rc, spec, body, extra={"recovered": {"trace": trace}}, confirmation=confirmation)


def _question(rc: RunContext, spec: Step) -> str:
    return spec.question(rc) if callable(spec.question) else spec.question


def _precondition(rc: RunContext, spec: Step) -> Check | None:
    return spec.precondition(rc) if spec.precondition is not None else None


def _confirm(rc: RunContext, spec: Step, question: str) -> dict[str, Any] | str:
    """Ask the question with the step waiting; the confirmation record, or WAIT / STOP."""
    _move_step(rc, spec.name, StepState.WAITING, f"asks: {question}")
    answer = rc.confirmer.ask(question)
    if answer is None:
        _move_run(rc, RunState.WAITING, f"step {spec.name} waits for confirmation: {question}")
        return WAIT
    if not answer:
        _move_step(
            rc, spec.name, StepState.FAILED, f"confirmation refused by {rc.actor}: nothing was changed"
        )
        _move_run(rc, RunState.STOPPED, f"step {spec.name}: confirmation refused by {rc.actor}")
        return STOP
    return {"by": rc.actor, "at": clock.now().isoformat(), "question": question}


def _manual(rc: RunContext, spec: Step) -> str:
    """A person's step: who confirmed it, when, and their note."""
    confirmation = _confirm(rc, spec, _question(rc, spec) or f"{spec.title}: done?")
    if not isinstance(confirmation, dict):
        return confirmation
    note = rc.confirmer.note(f"note for '{spec.title}'")
    confirmation["note"] = note
    _move_step(
        rc,
        spec.name,
        StepState.SUCCESSFUL,
        f"confirmed by {rc.actor}" + (f": {note}" if note else ""),
        confirmation=confirmation,
    )
    return CONTINUE


def _run_body(
    rc: RunContext,
    spec: Step,
    body: Callable[[RunContext], Check],
    *,
    extra: dict[str, Any],
    confirmation: dict[str, Any] | None = None,
) -> str:
    fields: dict[str, Any] = {"confirmation": confirmation} if confirmation else {}
    _move_step(rc, spec.name, StepState.RUNNING, f"{spec.kind} started", **fields)
    try:
        result = body(rc)
    except SubRunPaused as paused:
        to = RunState.WAITING if paused.state == RunState.WAITING else RunState.STOPPED
        _move_run(rc, to, paused.reason)
        return WAIT if to == RunState.WAITING else STOP
    except Exception as exc:  # a raising step is recorded as failed with its error; nothing after it runs
        message = exc.message if isinstance(exc, MloncallError) else f"{type(exc).__name__}: {exc}"
        tb = "" if isinstance(exc, MloncallError) else traceback.format_exc(limit=6)[-4000:]
        return _fail(rc, spec, f"raised: {message}", error=message, evidence={"traceback": tb} if tb else {})
    state = state_of(result.outcome)
    evidence = {
        **_step_row(rc, spec.name).evidence,
        **extra,
        **result.evidence,
        "outcome": result.outcome.label,
    }
    if spec.kind == StepKind.ACTION:
        evidence["after"] = result.evidence
    _move_step(rc, spec.name, state, result.reason, evidence=evidence)
    if spec.kind == StepKind.DECISION:
        _skip_unchosen(rc, spec, list(result.evidence.get("chosen", [])), result.reason)
    if state == StepState.FAILED and spec.stop_on_failure:
        _move_run(rc, RunState.STOPPED, f"step {spec.name} failed: {result.reason}")
        return STOP
    return CONTINUE


def _skip_unchosen(rc: RunContext, spec: Step, chosen: list[str], why: str) -> None:
    for name in spec.chooses_among:
        if name not in chosen and _step_row(rc, name).state in (StepState.PENDING, StepState.WAITING):
            _move_step(rc, name, StepState.SKIPPED, f"not chosen by {spec.name}: {why}")


def _fail(
    rc: RunContext,
    spec: Step,
    reason: str,
    *,
    error: str | None = None,
    evidence: dict[str, Any] | None = None,
) -> str:
    row = _step_row(rc, spec.name)
    fields: dict[str, Any] = {"evidence": {**(row.evidence or {}), **(evidence or {})}}
    if error is not None:
        fields["error"] = error
    _move_step(rc, spec.name, StepState.FAILED, reason, **fields)
    _move_run(rc, RunState.STOPPED, f"step {spec.name} failed: {reason}")
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
    _changed(rc)


def recheck(ctx: Context, run_id: int, *, actor: str) -> dict[str, Any]:
    """Judge a finished run's acceptance again, now (kept with the run, and audited)."""
    with ctx.db.session() as s:
        run = service.get_run_or_raise(session=s, run_id=run_id)
        if run.state != RunState.FINISHED:
            raise Conflict(f"run #{run_id} is {run.state}: acceptance is judged when it has finished")
        rc = RunContext(
            ctx=ctx,
            run_id=run_id,
            runbook=get_runbook(run.runbook),
            params=dict(run.params),
            actor=actor,
            confirmer=Unattended(actor),
            owner="",
            alert_id=run.alert_id,
        )
    acceptance = judge(rc)
    with ctx.db.session() as s:
        run = service.get_run_or_raise(session=s, run_id=run_id)
        run.acceptance = acceptance
        from mloncall.access import service as access

        access.record(
            session=s,
            actor=actor,
            action=f"runbooks.{run.runbook}.accept",
            target=f"run:{run_id}",
            outcome=acceptance["outcome"],
            detail={"checks": len(acceptance["checks"])},
        )
    return acceptance


# --- the record --------------------------------------------------------------------------------------------


def _step_row(rc: RunContext, name: str) -> RunbookStep:
    with rc.ctx.db.session() as s:
        run = service.get_run_or_raise(session=s, run_id=rc.run_id)
        row = service.step_of(run, name)
        s.expunge(row)
        return row


def _run_state(rc: RunContext) -> str:
    with rc.ctx.db.session() as s:
        return service.get_run_or_raise(session=s, run_id=rc.run_id).state


def _move_step(rc: RunContext, name: str, to: StepState, reason: str, **fields: Any) -> None:
    with rc.ctx.db.session() as s:
        run = service.get_run_or_raise(session=s, run_id=rc.run_id)
        step = service.step_of(run, name)
        if step.state == to == StepState.WAITING:
            return
        service.move_step(session=s, step=step, to_state=to, actor=rc.actor, reason=reason, **fields)
    _changed(rc)


def _move_run(rc: RunContext, to: RunState, reason: str, only_from: tuple[RunState, ...] = ()) -> None:
    with rc.ctx.db.session() as s:
        run: RunbookRun = service.get_run_or_raise(session=s, run_id=rc.run_id)
        if only_from and run.state not in only_from:
            return
        service.move_run(session=s, run=run, to_state=to, actor=rc.actor, reason=reason)
    _changed(rc)


def _changed(rc: RunContext) -> None:
    if rc.on_change is not None:
        rc.on_change(rc.run_id)

"""Where a run needs a person: confirming an action or a manual step, and a non-idempotent action found
half-run, which is never repeated blindly (its trace is shown, its precondition re-checked, a person asked)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mloncall.core import clock
from mloncall.core.outcome import Check
from mloncall.runbooks.runcontext import RunContext, move_run, move_step
from mloncall.runbooks.spec import Step, StepFn
from mloncall.runbooks.states import RunState, StepState

CONTINUE, WAIT, STOP = "continue", "wait", "stop"


@dataclass(frozen=True)
class Recovery:
    """How to go on with a half-run action: the body to run (its `resume` or `run`) and the confirmation,
    or, when its precondition no longer holds, why it fails without being repeated."""

    body: StepFn | None = None
    confirmation: dict[str, Any] | None = None
    trace: str | None = None
    failed: str = ""


def recover(rc: RunContext, spec: Step) -> Recovery | str:
    """A non-idempotent action found half-run: say what it left, re-check its precondition, ask a person.

    A Recovery to carry out, or WAIT / STOP when the person is not there or refused."""
    trace = spec.trace(rc) if spec.trace is not None else None
    if trace:
        body = spec.resume or spec.run
        question = (
            f"'{spec.title}' was interrupted; it left {trace}. Continue from there without repeating it?"
        )
    else:
        before = precondition(rc, spec)
        if before is not None and not before.passed:
            return Recovery(failed=f"interrupted and not repeated: {before.reason}")
        body = spec.run
        question = f"'{spec.title}' was interrupted and left no trace. Run it again?"
    confirmation = confirm(rc, spec, question)
    if not isinstance(confirmation, dict):
        return confirmation
    return Recovery(body=body, confirmation=confirmation, trace=trace)


def question(rc: RunContext, spec: Step) -> str:
    return spec.question(rc) if callable(spec.question) else spec.question


def precondition(rc: RunContext, spec: Step) -> Check | None:
    return spec.precondition(rc) if spec.precondition is not None else None


def confirm(rc: RunContext, spec: Step, question: str) -> dict[str, Any] | str:
    """Ask the question with the step waiting; the confirmation record, or WAIT / STOP."""
    move_step(rc, spec.name, StepState.WAITING, f"asks: {question}")
    answer = rc.confirmer.ask(question)
    if answer is None:
        move_run(rc, RunState.WAITING, f"step {spec.name} waits for confirmation: {question}")
        return WAIT
    if not answer:
        move_step(rc, spec.name, StepState.FAILED, f"confirmation refused by {rc.actor}: nothing was changed")
        move_run(rc, RunState.STOPPED, f"step {spec.name}: confirmation refused by {rc.actor}")
        return STOP
    return {"by": rc.actor, "at": clock.now().isoformat(), "question": question}


def manual(rc: RunContext, spec: Step) -> str:
    """A person's step: who confirmed it, when, and their note."""
    confirmation = confirm(rc, spec, question(rc, spec) or f"{spec.title}: done?")
    if not isinstance(confirmation, dict):
        return confirmation
    note = rc.confirmer.note(f"note for '{spec.title}'")
    confirmation["note"] = note
    move_step(
        rc,
        spec.name,
        StepState.SUCCESSFUL,
        f"confirmed by {rc.actor}" + (f": {note}" if note else ""),
        confirmation=confirmation,
    )
    return CONTINUE

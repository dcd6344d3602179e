"""The states of a runbook run and of its steps, and every move between them (the one place they live).

step:  pending ─► waiting (asks for confirmation) ─► running ─► successful | inconclusive | failed
          │          │  └─(refused)─► failed            ▲ │
          └─► skipped └─(manual: confirmed)─► successful │ └─(resumed after an interruption)─► running
                                               failed ──┘   (re-run when the run stopped on it)

run:   running ─► waiting (a step needs a person) ─► running
          │  └──► stopped (a step failed, raised or was refused) ─(resume)─► running
          └─────► finished (every step done, acceptance judged: `outcome` holds the verdict)
"""

from __future__ import annotations

import enum

from mloncall.core.outcome import Outcome
from mloncall.core.states import Moves


class StepState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCESSFUL = "successful"
    INCONCLUSIVE = "inconclusive"
    FAILED = "failed"
    SKIPPED = "skipped"


class RunState(enum.StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    STOPPED = "stopped"
    FINISHED = "finished"


class RunMode(enum.StrEnum):
    """What a run executes: every step, or only the read-only checks (`auto_run: checks` on an alert rule)."""

    FULL = "full"
    CHECKS = "checks"


class StepKind(enum.StrEnum):
    CHECK = "check"
    ACTION = "action"
    MANUAL = "manual"
    DECISION = "decision"


_S = StepState
STEP_TRANSITIONS = Moves(
    StepState,
    {
        _S.PENDING: frozenset({_S.RUNNING, _S.WAITING, _S.SKIPPED, _S.FAILED}),
        _S.WAITING: frozenset({_S.RUNNING, _S.SUCCESSFUL, _S.FAILED, _S.SKIPPED}),
        _S.RUNNING: frozenset({_S.SUCCESSFUL, _S.INCONCLUSIVE, _S.FAILED, _S.WAITING, _S.RUNNING}),
        _S.FAILED: frozenset({_S.RUNNING, _S.WAITING}),
        _S.INCONCLUSIVE: frozenset(),
        _S.SUCCESSFUL: frozenset(),
        _S.SKIPPED: frozenset(),
    },
)

RUN_TRANSITIONS = Moves(
    RunState,
    {
        RunState.RUNNING: frozenset(
            {RunState.RUNNING, RunState.WAITING, RunState.STOPPED, RunState.FINISHED}
        ),
        RunState.WAITING: frozenset({RunState.RUNNING}),
        RunState.STOPPED: frozenset({RunState.RUNNING}),
        RunState.FINISHED: frozenset(),
    },
)

#: Steps in these states are done: a resumed run goes past them.
DONE_STATES = frozenset({StepState.SUCCESSFUL, StepState.SKIPPED, StepState.INCONCLUSIVE})


def state_of(outcome: Outcome) -> StepState:
    """A step's state from its check's outcome (an error is a failure)."""
    return {
        Outcome.SUCCESSFUL: StepState.SUCCESSFUL,
        Outcome.INCONCLUSIVE: StepState.INCONCLUSIVE,
    }.get(outcome, StepState.FAILED)

"""The states of a pipeline run and of its stages, and every move between them (the one place they live).

stage: pending ─► running ─► succeeded | failed | interrupted (its process died mid-stage)
          │          └─(a transient error, retried)─► running
          └─► skipped (after a failure) | reused (a re-run from the failed stage kept its output)

run:   running ─► succeeded | failed | interrupted
"""

from __future__ import annotations

import enum

from mloncall.core.states import Moves


class StageState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"
    REUSED = "reused"


class RunState(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class RunMode(enum.StrEnum):
    """A run executes every stage, or resumes a failed run from its failed stage."""

    FULL = "full"
    FROM_FAILED = "from-failed"


class StageKind(enum.StrEnum):
    EXTRACT = "extract"
    VALIDATE = "validate"
    TRANSFORM = "transform"
    LOAD = "load"


_S = StageState
STAGE_TRANSITIONS = Moves(
    StageState,
    {
        None: frozenset({_S.PENDING}),
        _S.PENDING: frozenset({_S.RUNNING, _S.SKIPPED, _S.REUSED}),
        _S.RUNNING: frozenset({_S.RUNNING, _S.SUCCEEDED, _S.FAILED, _S.INTERRUPTED}),
        _S.SUCCEEDED: frozenset(),
        _S.FAILED: frozenset(),
        _S.INTERRUPTED: frozenset(),
        _S.SKIPPED: frozenset(),
        _S.REUSED: frozenset(),
    },
)
_R = RunState
RUN_TRANSITIONS = Moves(
    RunState,
    {
        None: frozenset({_R.RUNNING}),
        _R.RUNNING: frozenset({_R.SUCCEEDED, _R.FAILED, _R.INTERRUPTED}),
        _R.SUCCEEDED: frozenset(),
        _R.FAILED: frozenset(),
        _R.INTERRUPTED: frozenset(),
    },
)

"""One layer of `mloncall access diagnose`: a judged `Check`, the fix when it failed, and the exit code it
would give if it is the first to fail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mloncall.core.outcome import Check, Outcome

#: How a layer's outcome reads in the table: a layer that could not be judged was skipped, and says why.
STATES = {
    Outcome.SUCCESSFUL: "ok",
    Outcome.INCONCLUSIVE: "skipped",
    Outcome.ERROR: "error",
    Outcome.FAILED: "failed",
}


@dataclass
class Layer:
    """A layer's check; `fix` is what to do when it failed; `exit_code` when it is to blame."""

    check: Check
    fix: str | None = None
    exit_code: int = 0

    @property
    def name(self) -> str:
        return self.check.name

    @property
    def state(self) -> str:
        return STATES[self.check.outcome]

    def to_dict(self) -> dict[str, Any]:
        return {**self.check.to_dict(), "state": self.state, "fix": self.fix}


def passed(name: str, reason: str, **evidence: Any) -> Layer:
    return Layer(Check(name, Outcome.SUCCESSFUL, reason, evidence))


def skipped(name: str, reason: str, **evidence: Any) -> Layer:
    return Layer(Check(name, Outcome.INCONCLUSIVE, reason, evidence))


def failed(name: str, reason: str, fix: str, exit_code: int, **evidence: Any) -> Layer:
    return Layer(Check(name, Outcome.FAILED, reason, evidence), fix=fix, exit_code=exit_code)

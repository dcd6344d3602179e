"""One ordered outcome type for every check: rollout analysis, monitors, runbook steps, acceptance criteria.

Outcomes are ordered best to worst and several checks combine by taking the worst, so a report, an alert and
the dashboard all speak the same language.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class Outcome(enum.IntEnum):
    """Best first: a larger value is a worse outcome."""

    SUCCESSFUL = 0
    INCONCLUSIVE = 1
    ERROR = 2
    FAILED = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Outcome:
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError(f"unknown outcome {value!r}") from None


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    """The worst of several outcomes; no outcomes at all is inconclusive, never a silent success."""
    items = list(outcomes)
    return max(items) if items else Outcome.INCONCLUSIVE


@dataclass
class Check:
    """One judged criterion with the evidence behind its outcome."""

    name: str
    outcome: Outcome
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.SUCCESSFUL

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome.label,
            "reason": self.reason,
            "evidence": self.evidence,
        }


def overall(checks: Iterable[Check]) -> Outcome:
    """The worst outcome among checks."""
    return worst(c.outcome for c in checks)

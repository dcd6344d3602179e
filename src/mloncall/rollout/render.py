"""How a rollout reads in a terminal: the acceptance table that `deploy --wait`, `rollout acceptance` and the demo print."""

from __future__ import annotations

from typing import Any

from mloncall.core import console
from mloncall.core.outcome import Outcome


def print_acceptance(acceptance: dict[str, Any]) -> None:
    """The acceptance criteria with their outcome and evidence, then the overall outcome."""
    rows = [[c["name"], outcome_label(c["outcome"]), c["reason"]] for c in acceptance.get("checks", [])]
    console.out.print(console.table("runbook 1 acceptance", ["criterion", "result", "evidence"], rows))
    console.out.print(f"acceptance: {outcome_label(acceptance.get('outcome', 'inconclusive'))}")


def outcome_label(label: str) -> str:
    """An outcome's label, coloured."""
    return console.outcome_text(Outcome.parse(label))

"""A state machine's allowed moves in one table, and the one way to refuse a move that is not in it.

Every domain with states (rollouts, alerts, incidents, runbook runs and steps) keeps its states as a
`StrEnum` and its moves as a `Moves` table, so a refused move reads the same everywhere:
"rollout #3 is promoted: it cannot become running".
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

from mloncall.core.errors import Conflict

S = TypeVar("S", bound=enum.StrEnum)


class Moves(Generic[S]):
    """Where a thing may go from each of its states; the key `None` is a new thing's first state."""

    def __init__(self, states: type[S], moves: Mapping[S | None, Iterable[S]]) -> None:
        self.states = states
        self.moves: dict[S | None, frozenset[S]] = {k: frozenset(v) for k, v in moves.items()}
        missing = set(states) - {k for k in self.moves if k is not None}
        if missing:
            raise ValueError(f"no moves given from {sorted(missing)}")

    def allows(self, before: str | None, after: str) -> bool:
        """Whether the table has the move from `before` (None: new) to `after`."""
        origin = self.states(before) if before is not None else None
        return self.states(after) in self.moves.get(origin, frozenset())

    def check(self, subject: str, before: str | None, after: str) -> S:
        """The target state if `subject` may go from `before` to `after`; Conflict saying why otherwise."""
        if not self.allows(before, after):
            raise Conflict(f"{subject} is {before or 'new'}: it cannot become {after}")
        return self.states(after)

    @property
    def final(self) -> tuple[S, ...]:
        """The states nothing leaves."""
        return tuple(s for s in self.states if not self.moves[s])

    def __getitem__(self, state: S | None) -> frozenset[S]:
        return self.moves[state]

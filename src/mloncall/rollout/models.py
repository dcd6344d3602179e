"""Rollout tables: each deployment as a small state machine, and every transition it went through."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mloncall.core.states import Moves
from mloncall.stores.db import Base, TransitionEvent


class RolloutState(enum.StrEnum):
    """Where a rollout is; stored as its value. `running` and `paused` are active, the last three final."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"


#: Every move a rollout may make. `pending` is where a new row starts, before its pre-checks are judged;
#: running -> running is a canary step passed (the weight goes up); a final state goes nowhere.
TRANSITIONS = Moves(
    RolloutState,
    {
        RolloutState.PENDING: frozenset(
            {RolloutState.RUNNING, RolloutState.PROMOTED, RolloutState.ABORTED, RolloutState.ROLLED_BACK}
        ),
        RolloutState.RUNNING: frozenset(
            {RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.PROMOTED, RolloutState.ABORTED}
        ),
        RolloutState.PAUSED: frozenset({RolloutState.RUNNING, RolloutState.PROMOTED, RolloutState.ABORTED}),
        RolloutState.PROMOTED: frozenset(),
        RolloutState.ABORTED: frozenset(),
        RolloutState.ROLLED_BACK: frozenset(),
    },
)

ACTIVE_STATES = (RolloutState.RUNNING, RolloutState.PAUSED)
FINAL_STATES = TRANSITIONS.final


class Strategy(enum.StrEnum):
    """How a version is deployed: stepwise with analysis, all at once, or back to `previous`."""

    CANARY = "canary"
    DIRECT = "direct"
    ROLLBACK = "rollback"


class StepTaken(enum.StrEnum):
    """What one look at a running canary did (the scheduler logs it per rollout)."""

    ABORTED = "aborted"
    ADVANCED = "advanced"
    PROMOTED = "promoted"
    PAUSED = "paused"


class Rollout(Base):
    """One deployment of a version: direct, canary (stepwise, analysed) or a rollback."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_name: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("models.name", ondelete="CASCADE"), index=True
    )
    #: Equal to model_name while the rollout is active, NULL after: the unique constraint allows one active
    #: rollout per model on every backend (NULLs never collide), so a second deploy is a clean 409.
    active_model: Mapped[str | None] = mapped_column(sa.String(64), unique=True, nullable=True)
    #: A `Strategy` value.
    strategy: Mapped[str] = mapped_column(sa.String(16))
    from_version: Mapped[int | None]
    to_version: Mapped[int]
    #: A `RolloutState` value; it changes only through the service's transitions, each one an event.
    state: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    steps: Mapped[list[Any]] = mapped_column(default=list)
    step_index: Mapped[int] = mapped_column(default=0)
    step_duration_s: Mapped[float] = mapped_column(sa.Float, default=30.0)
    min_requests: Mapped[int] = mapped_column(default=50)
    thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prechecks: Mapped[list[Any]] = mapped_column(default=list)
    analyses: Mapped[list[Any]] = mapped_column(default=list)
    acceptance: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True, default=None)
    step_started_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(sa.String(128))
    updated_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    #: Optimistic lock: the server's scheduler and a CLI may both advance a rollout; only one wins a step.
    revision: Mapped[int] = mapped_column(default=1)

    events: Mapped[list[RolloutEvent]] = relationship(
        back_populates="rollout", order_by="RolloutEvent.id", cascade="all, delete-orphan"
    )

    __mapper_args__ = {"version_id_col": revision}

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def weight(self) -> float:
        """The canary's current share of traffic, 0..1."""
        return self.weight_in(self.state)

    def weight_in(self, state: str) -> float:
        """The canary's share of traffic, 0..1, at its current step in `state` (a move's weight is the one it
        moves to: a canary leaving pending for running is at its first step, not at 0)."""
        if self.strategy != Strategy.CANARY or state not in ACTIVE_STATES or not self.steps:
            return 0.0
        return float(self.steps[min(self.step_index, len(self.steps) - 1)]) / 100.0


class RolloutEvent(TransitionEvent, Base):
    """One transition: when, who, from which state to which, at what weight, why, and the evidence."""

    __tablename__ = "rollout_events"

    rollout_id: Mapped[int] = mapped_column(sa.ForeignKey("rollouts.id", ondelete="CASCADE"), index=True)
    step_index: Mapped[int]
    weight: Mapped[float] = mapped_column(sa.Float)

    rollout: Mapped[Rollout] = relationship(back_populates="events")

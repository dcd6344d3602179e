"""Rollouts as the API and `--json` show them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mloncall.core.names import IdField
from mloncall.core.outcome import Check
from mloncall.rollout.models import Rollout, RolloutState


class RolloutEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: dt.datetime
    actor: str
    from_state: str | None
    to_state: str
    step_index: int
    weight: float
    reason: str
    evidence: dict[str, Any]


class RolloutOut(BaseModel):
    """A rollout with its transitions, oldest first."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: int
    model: str = Field(validation_alias="model_name")
    strategy: str
    from_version: int | None
    to_version: int
    state: RolloutState
    reason: str
    steps: list[int]
    step_index: int
    weight: float
    step_duration_s: float
    min_requests: int
    thresholds: dict[str, Any]
    prechecks: list[dict[str, Any]]
    analyses: list[dict[str, Any]]
    acceptance: dict[str, Any] | None
    created_at: dt.datetime
    created_by: str
    finished_at: dt.datetime | None
    events: list[RolloutEventOut] = Field(default_factory=list)


class AcceptanceOut(BaseModel):
    rollout_id: int
    model: str
    version: int
    outcome: str
    checks: list[dict[str, Any]]
    checked_at: dt.datetime

    @classmethod
    def of(cls, r: Rollout, checks: list[Check], outcome: str, at: dt.datetime) -> AcceptanceOut:
        return cls(
            rollout_id=r.id,
            model=r.model_name,
            version=r.to_version,
            outcome=outcome,
            checks=[c.to_dict() for c in checks],
            checked_at=at,
        )


class DeployRequest(BaseModel):
    """What to deploy and how; durations like `30s`, steps like [10, 25, 50, 100]."""

    version: IdField
    strategy: str = Field("canary", pattern="^(canary|direct)$")
    steps: list[int] | None = Field(None, max_length=20)
    step_duration: str | float = "30s"
    min_requests: int = Field(50, ge=1, le=10_000_000)
    thresholds: dict[str, float] = Field(default_factory=dict)


class ReasonRequest(BaseModel):
    reason: str = Field("", max_length=10_000)

"""Rollouts as the API and `--json` show them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mloncall.core.outcome import Check
from mloncall.rollout.models import Rollout


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
    id: int
    model: str
    strategy: str
    from_version: int | None
    to_version: int
    state: str
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

    @classmethod
    def of(cls, r: Rollout, *, with_events: bool = True) -> RolloutOut:
        return cls(
            id=r.id,
            model=r.model_name,
            strategy=r.strategy,
            from_version=r.from_version,
            to_version=r.to_version,
            state=r.state,
            reason=r.reason,
            steps=list(r.steps),
            step_index=r.step_index,
            weight=r.weight,
            step_duration_s=r.step_duration_s,
            min_requests=r.min_requests,
            thresholds=r.thresholds,
            prechecks=r.prechecks,
            analyses=r.analyses,
            acceptance=r.acceptance,
            created_at=r.created_at,
            created_by=r.created_by,
            finished_at=r.finished_at,
            events=[RolloutEventOut.model_validate(e) for e in r.events] if with_events else [],
        )


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

    version: int = Field(..., ge=1, le=2**31 - 1)
    strategy: str = Field("canary", pattern="^(canary|direct)$")
    steps: list[int] | None = Field(None, max_length=20)
    step_duration: str | float = "30s"
    min_requests: int = Field(50, ge=1, le=10_000_000)
    thresholds: dict[str, float] = Field(default_factory=dict)


class ReasonRequest(BaseModel):
    reason: str = Field("", max_length=10_000)

"""Rollouts as the API and `--json` show them."""

from __future__ import annotations

import datetime as dt
from dataclasses import fields
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema

from mloncall.core.durations import duration_pattern
from mloncall.core.names import IdField
from mloncall.core.outcome import Check
from mloncall.rollout.analysis import Thresholds
from mloncall.rollout.models import Rollout, RolloutState

#: A step's length: at most a week (as `service.MAX_DURATION`).
_STEP_DURATION = duration_pattern(maximum=dt.timedelta(days=7))
_WEEK = 7 * 86400.0
#: The analysis thresholds a deployment may override, each a finite number >= 0.
_THRESHOLDS: list[JsonValue] = [*sorted(f.name for f in fields(Thresholds))]


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
    steps: list[int] | None = Field(
        None,
        max_length=20,
        description="canary weights in percent, each larger than the one before, the last 100",
        json_schema_extra={"items": {"type": "integer", "minimum": 1, "maximum": 100}, "minItems": 1},
    )
    step_duration: (
        Annotated[str, WithJsonSchema({"type": "string", "pattern": _STEP_DURATION})]
        | Annotated[float, WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": _WEEK})]
    ) = "30s"
    min_requests: int = Field(50, ge=1, le=10_000_000)
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        json_schema_extra={
            "propertyNames": {"enum": _THRESHOLDS},
            "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1e300},
        },
    )


class ReasonRequest(BaseModel):
    reason: str = Field("", max_length=10_000)

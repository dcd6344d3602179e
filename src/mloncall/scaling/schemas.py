"""Request and response bodies of the SLO routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mloncall.core.durations import Duration, duration_pattern
from mloncall.scaling.slo import Objectives


class SloRequest(BaseModel):
    """A model's objectives; each impossible one is refused by name."""

    model_config = ConfigDict(extra="forbid")

    latency_p99: str = Field(pattern=duration_pattern(), examples=["50ms"])
    error_rate: float = Field(default=0.001, gt=0, lt=1)
    availability: float = Field(default=0.999, gt=0, lt=1)
    window: str = Field(default="30d", pattern=duration_pattern(), examples=["30d"])


class SloOut(BaseModel):
    """A model's objectives and where they come from (`api` or `config`)."""

    model: str
    latency_p99_ms: float
    error_rate: float
    availability: float
    window: Duration
    source: str

    @classmethod
    def of(cls, o: Objectives) -> SloOut:
        return cls(
            model=o.model, latency_p99_ms=o.latency_p99_ms, error_rate=o.error_rate,
            availability=o.availability, window=o.window, source=o.source,
        )  # fmt: skip


class SloStatusOut(BaseModel):
    """Objective, measured, budget left and burn rates (as `mloncall slo status --json`)."""

    slo: dict[str, Any]
    at: str
    sources: list[dict[str, Any]]
    objectives: list[dict[str, Any]]

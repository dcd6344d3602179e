"""Request bodies of the runbook routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RunRequest(BaseModel):
    """Start a run: the runbook's arguments and parameters, the alert it answers, and whether its actions
    are confirmed (without `yes`, the run waits at its first action for `resume` with `yes`)."""

    model_config = ConfigDict(extra="forbid")

    args: list[str] = Field(default_factory=list, max_length=8)
    params: dict[str, Any] = Field(default_factory=dict)
    alert: int | None = Field(default=None, ge=1, le=2**31 - 1)
    yes: bool = False


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    yes: bool = False

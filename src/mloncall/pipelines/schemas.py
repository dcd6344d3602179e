"""Pydantic shapes of the pipelines domain: a run with its stages as the API and `--json` show them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    position: int
    name: str
    kind: str
    state: str
    attempts: int
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    seconds: float | None
    rows_in: int | None
    rows_out: int | None
    inputs: dict[str, Any]
    output_hash: str | None
    log: str
    failure_class: str | None
    error: str
    details: dict[str, Any]


class RunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    pipeline: str
    state: str
    mode: str
    parent_id: int | None
    from_stage: str | None
    spec_hash: str
    orchestrator: str
    orchestrator_run_id: str | None
    failed_stage: str | None
    failure_class: str | None
    error: str
    fix: str
    dataset_version_id: int | None
    started_by: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    stages: list[StageRead]


class PipelineSummary(BaseModel):
    name: str
    description: str
    dataset: str
    source: str
    stages: list[str]
    path: str
    latest_run: int | None = None
    latest_state: str | None = None


class StatusRead(BaseModel):
    """`pipeline status`: the latest run, the source's health, and who consumes the dataset."""

    pipeline: str
    dataset: str
    latest: RunRead | None
    #: the dataset's newest version (`NAME:VERSION`), what the next retraining would read
    newest_version: str | None = None
    health: dict[str, Any]
    consumers: list[dict[str, Any]] = Field(default_factory=list)
    blocked_models: list[str] = Field(default_factory=list)


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_failed: bool = Field(False, description="Re-run the latest failed run from its failed stage.")
    run_id: int | None = Field(None, ge=1, description="The failed run to re-run (default: the latest).")

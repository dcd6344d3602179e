"""Pipeline tables: each run with what it ran and how it ended, its stages with their evidence, and the
timeline of every state change."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mloncall.stores.db import Base, TransitionEvent


class PipelineRun(Base):
    """One run of a declared pipeline: its declaration (as run), the orchestrator's run, how it ended."""

    __tablename__ = "pipeline_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline: Mapped[str] = mapped_column(sa.String(64), index=True)
    state: Mapped[str] = mapped_column(sa.String(16))
    #: A `RunMode`: `full`, or `from-failed` (a re-run of `parent_id` from its failed stage)
    mode: Mapped[str] = mapped_column(sa.String(16), default="full")
    parent_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("pipeline_runs.id", ondelete="SET NULL"), nullable=True, index=True
    )
    from_stage: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    spec_hash: Mapped[str] = mapped_column(sa.String(64))
    orchestrator: Mapped[str] = mapped_column(sa.String(32))
    orchestrator_run_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    #: the process running it, so a run whose process died is recognised as interrupted
    host: Mapped[str] = mapped_column(sa.String(255), default="")
    pid: Mapped[int | None] = mapped_column(nullable=True)
    failed_stage: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    failure_class: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    error: Mapped[str] = mapped_column(sa.Text, default="")
    fix: Mapped[str] = mapped_column(sa.Text, default="")
    dataset_version_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("dataset_versions.id", ondelete="SET NULL"), nullable=True
    )
    started_by: Mapped[str] = mapped_column(sa.String(128))
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)

    stages: Mapped[list[PipelineStage]] = relationship(
        back_populates="run", order_by="PipelineStage.position", cascade="all, delete-orphan"
    )
    events: Mapped[list[PipelineEvent]] = relationship(
        back_populates="run", order_by="PipelineEvent.id", cascade="all, delete-orphan"
    )


class PipelineStage(Base):
    """One stage of a run: status, timings, rows in and out, input and output hashes, a log excerpt."""

    __tablename__ = "pipeline_stages"
    __table_args__ = (sa.UniqueConstraint("run_id", "name", name="uq_pipeline_stages_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]
    name: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(16))
    state: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    seconds: Mapped[float | None] = mapped_column(nullable=True)
    rows_in: Mapped[int | None] = mapped_column(nullable=True)
    rows_out: Mapped[int | None] = mapped_column(nullable=True)
    #: what the stage read, each by name with its sha256 (source files, or the previous stage's output)
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    output_hash: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    output_key: Mapped[str | None] = mapped_column(sa.String(512), nullable=True)
    log: Mapped[str] = mapped_column(sa.Text, default="")
    failure_class: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    error: Mapped[str] = mapped_column(sa.Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    run: Mapped[PipelineRun] = relationship(back_populates="stages")


class PipelineEvent(TransitionEvent, Base):
    """A state change of a run (`stage` None) or of one of its stages."""

    __tablename__ = "pipeline_events"

    run_id: Mapped[int] = mapped_column(sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)

    run: Mapped[PipelineRun] = relationship(back_populates="events")

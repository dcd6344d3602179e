"""Runbook tables: each run with its parameters and acceptance, its steps with their evidence, the
timeline of every transition, and the lease that lets one run at a time act on a target."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mloncall.stores.db import Base


class RunbookRun(Base):
    """One execution of a runbook: who started it, on what, for which alert or incident, and where it stands."""

    __tablename__ = "runbook_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    runbook: Mapped[str] = mapped_column(sa.String(64), index=True)
    target: Mapped[str] = mapped_column(sa.String(256))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(sa.String(16))
    #: A `RunMode`: `full` (every step), or `checks` (only the read-only checks, when an alert fired).
    mode: Mapped[str] = mapped_column(sa.String(16), default="full", server_default=sa.text("'full'"))
    outcome: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    started_by: Mapped[str] = mapped_column(sa.String(128))
    alert_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("alerts.id", ondelete="SET NULL"), nullable=True, index=True
    )
    #: the incident this run serves (runbook 8's, or the incident of the run's alert): it feeds its timeline
    incident_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("incidents.id", ondelete="SET NULL"), nullable=True, index=True
    )
    parent_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("runbook_runs.id", ondelete="SET NULL"), nullable=True, index=True
    )
    parent_step: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    acceptance: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True, default=None)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)

    steps: Mapped[list[RunbookStep]] = relationship(
        back_populates="run", order_by="RunbookStep.position", cascade="all, delete-orphan"
    )
    events: Mapped[list[RunbookEvent]] = relationship(
        back_populates="run", order_by="RunbookEvent.id", cascade="all, delete-orphan"
    )


class RunbookStep(Base):
    """One step of a run: its state, who acted, when, the evidence, the error and any attachments."""

    __tablename__ = "runbook_steps"
    __table_args__ = (sa.UniqueConstraint("run_id", "name", name="uq_runbook_steps_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runbook_runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]
    name: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(16))
    title: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    attachments: Mapped[list[Any]] = mapped_column(default=list)
    confirmation: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True, default=None)
    actor: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    attempts: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)

    run: Mapped[RunbookRun] = relationship(back_populates="steps")


class RunbookEvent(Base):
    """Every transition of a run or one of its steps, with who made it and why (the run's timeline)."""

    __tablename__ = "runbook_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runbook_runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    from_state: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(sa.String(16))
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(sa.String(128))
    reason: Mapped[str] = mapped_column(sa.Text, default="")

    run: Mapped[RunbookRun] = relationship(back_populates="events")


class RunbookLease(Base):
    """Who may act on a target now: one row per target, held by a run tree's root and a process until
    it expires (renewed while the run executes). A row, not a process lock, so it holds across hosts."""

    __tablename__ = "runbook_leases"

    target: Mapped[str] = mapped_column(sa.String(256), primary_key=True)
    run_id: Mapped[int]
    owner: Mapped[str] = mapped_column(sa.String(256))
    acquired_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]

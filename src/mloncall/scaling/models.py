"""The scaling domain's tables: SLOs set through the API, the client-side measurements load tests record,
and every scaling decision and change with the metric values behind it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mloncall.stores.db import Base


class SloRow(Base):
    """A model's objectives set through the API or the CLI (they take precedence over `[slo.MODEL]`)."""

    __tablename__ = "slos"

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(64), unique=True)
    latency_p99_ms: Mapped[float] = mapped_column(sa.Float)
    error_rate: Mapped[float] = mapped_column(sa.Float)
    availability: Mapped[float] = mapped_column(sa.Float)
    window_s: Mapped[float] = mapped_column(sa.Float)
    updated_at: Mapped[dt.datetime]
    updated_by: Mapped[str] = mapped_column(sa.String(128))


class SloProbe(Base):
    """One second of client-side measurements of a model (a load test): requests sent, answered slower than
    the latency objective, failed, timed out. Latency seen by a client includes the queue before a worker,
    which the server's own log cannot see."""

    __tablename__ = "slo_probes"

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    requests: Mapped[int]
    slow: Mapped[int]
    errors: Mapped[int]
    timeouts: Mapped[int]
    p99_ms: Mapped[float | None] = mapped_column(sa.Float, nullable=True)


class ScalingEvent(Base):
    """One scaling decision or change: from how many workers to how many, why, and the metric values."""

    __tablename__ = "scaling_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(sa.String(128))
    #: scale_out | scale_in | hold | scheduled | checked
    action: Mapped[str] = mapped_column(sa.String(16))
    from_workers: Mapped[int]
    to_workers: Mapped[int]
    applied: Mapped[bool]
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: For a scheduled scale-down: when it falls due; null otherwise.
    due_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)

"""The routing table: per served model, the stable version, the canary and the canary's weight."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mloncall.stores.db import Base

OUT_OF_RANGE_POLICIES = ("flag", "reject")
#: What serving does with one feature's missing or out-of-range value (runbook 6's workaround).
FEATURE_POLICIES = ("reject", "flag", "impute")
DEFAULT_MAX_ROWS = 1000


class Routing(Base):
    """One row per served model. Every change bumps `generation`, which each serving worker polls."""

    __tablename__ = "routing"
    __table_args__ = (
        sa.CheckConstraint("canary_weight >= 0 AND canary_weight <= 1", name="ck_routing_canary_weight"),
        sa.CheckConstraint(
            "out_of_range_policy IN ('flag', 'reject')", name="ck_routing_out_of_range_policy"
        ),
        sa.CheckConstraint("max_rows > 0", name="ck_routing_max_rows"),
        sa.CheckConstraint("stable_version > 0", name="ck_routing_stable_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_name: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("models.name", ondelete="CASCADE"), unique=True
    )
    stable_version: Mapped[int]
    canary_version: Mapped[int | None] = mapped_column(nullable=True, default=None)
    canary_weight: Mapped[float] = mapped_column(sa.Float, default=0.0)
    #: A request header (or a top-level body field) whose hash picks the version, so one caller sticks to one.
    sticky_key: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, default=None)
    out_of_range_policy: Mapped[str] = mapped_column(sa.String(16), default="flag")
    max_rows: Mapped[int] = mapped_column(default=DEFAULT_MAX_ROWS)
    #: Per feature, `reject`, `flag` or `impute` (the training median): overrides the out-of-range policy
    #: for that feature, and `impute` also fills the feature when a request leaves it out.
    feature_policies: Mapped[dict[str, Any]] = mapped_column(default=dict)
    generation: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[dt.datetime]
    updated_by: Mapped[str] = mapped_column(sa.String(128))

"""scaling: SLOs set through the API, load tests' client-side measurements, scaling decisions and changes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mloncall.stores.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_WHEN = mloncall.stores.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "slos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("latency_p99_ms", sa.Float(), nullable=False),
        sa.Column("error_rate", sa.Float(), nullable=False),
        sa.Column("availability", sa.Float(), nullable=False),
        sa.Column("window_s", sa.Float(), nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model"),
    )
    op.create_table(
        "slo_probes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("slow", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("timeouts", sa.Integer(), nullable=False),
        sa.Column("p99_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_slo_probes_model", "slo_probes", ["model"], unique=False)
    op.create_index("ix_slo_probes_at", "slo_probes", ["at"], unique=False)
    op.create_table(
        "scaling_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("from_workers", sa.Integer(), nullable=False),
        sa.Column("to_workers", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("due_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_scaling_events_model", "scaling_events", ["model"], unique=False)
    op.create_index("ix_scaling_events_at", "scaling_events", ["at"], unique=False)


def downgrade() -> None:
    op.drop_table("scaling_events")
    op.drop_table("slo_probes")
    op.drop_table("slos")

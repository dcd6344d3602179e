"""quarantine: batches of bad rows set aside by a validate stage (and their moves), corrupted source files
moved aside, and each upstream source's observed history (what the freshness monitor reads).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mloncall.stores.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_WHEN = mloncall.stores.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quarantine_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pipeline", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("source_file", sa.Text(), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("cells", sa.Integer(), nullable=False),
        sa.Column("source_rows", sa.Integer(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("rows_key", sa.String(length=512), nullable=False),
        sa.Column("rows_sha256", sa.String(length=64), nullable=False),
        sa.Column("failures_key", sa.String(length=512), nullable=False),
        sa.Column("failures_sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("released_rows", sa.Integer(), nullable=False),
        sa.Column("released_to", sa.String(length=128), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("pipeline", "run_id", "state"):
        op.create_index(f"ix_quarantine_batches_{column}", "quarantine_batches", [column], unique=False)
    op.create_table(
        "quarantine_events",
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["quarantine_batches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quarantine_events_batch_id", "quarantine_events", ["batch_id"], unique=False)
    op.create_table(
        "quarantined_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quarantined_files_source", "quarantined_files", ["source"], unique=False)
    op.create_table(
        "source_observations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("observed_at", _WHEN, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.Column("newest_at", _WHEN, nullable=True),
        sa.Column("sla_seconds", sa.Float(), nullable=True),
        sa.Column("feeds", sa.JSON(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("source", "observed_at"):
        op.create_index(f"ix_source_observations_{column}", "source_observations", [column], unique=False)


def downgrade() -> None:
    op.drop_index("ix_source_observations_observed_at", table_name="source_observations")
    op.drop_index("ix_source_observations_source", table_name="source_observations")
    op.drop_table("source_observations")
    op.drop_index("ix_quarantined_files_source", table_name="quarantined_files")
    op.drop_table("quarantined_files")
    op.drop_index("ix_quarantine_events_batch_id", table_name="quarantine_events")
    op.drop_table("quarantine_events")
    for column in ("state", "run_id", "pipeline"):
        op.drop_index(f"ix_quarantine_batches_{column}", table_name="quarantine_batches")
    op.drop_table("quarantine_batches")

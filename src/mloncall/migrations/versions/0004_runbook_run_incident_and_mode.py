"""runbook runs: linked to the incident they serve, and a mode (`full`, or `checks`: only the read-only checks,
run when an alert fires)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A run on an incident (runbook 8, or a run whose alert belongs to one) writes to its timeline.
    with op.batch_alter_table("runbook_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("incident_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_runbook_runs_incident_id"), ["incident_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_runbook_runs_incident_id_incidents", "incidents", ["incident_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.add_column(
            sa.Column("mode", sa.String(length=16), nullable=False, server_default=sa.text("'full'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("runbook_runs", schema=None) as batch_op:
        batch_op.drop_constraint("fk_runbook_runs_incident_id_incidents", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_runbook_runs_incident_id"))
        batch_op.drop_column("incident_id")
        batch_op.drop_column("mode")

"""runbook runs: a mode, `full` or `checks` (only the read-only checks, run when an alert fires)

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
    with op.batch_alter_table("runbook_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mode", sa.String(length=16), nullable=False, server_default=sa.text("'full'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("runbook_runs", schema=None) as batch_op:
        batch_op.drop_column("mode")

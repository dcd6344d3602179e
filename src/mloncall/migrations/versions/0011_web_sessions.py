"""web sessions: a dashboard login recorded on the server, so a logout ends it for every copy of its cookie.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mloncall.stores.db

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_WHEN = mloncall.stores.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.Column("ended_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(["principal_id"], ["principals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
    )
    op.create_index("ix_web_sessions_principal_id", "web_sessions", ["principal_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_web_sessions_principal_id", table_name="web_sessions")
    op.drop_table("web_sessions")

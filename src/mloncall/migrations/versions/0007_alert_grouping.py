"""alerts: notifications of one alert group queued together are told in one grouped message; the others
point to it (`grouped_into`) with the status `grouped`, so an alert storm sends a bounded number of messages.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_BEFORE = "status IN ('pending', 'sending', 'sent', 'failed', 'suppressed', 'unrouted')"
_AFTER = "status IN ('pending', 'sending', 'sent', 'failed', 'suppressed', 'unrouted', 'grouped')"


def upgrade() -> None:
    with op.batch_alter_table("alert_notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grouped_into", sa.Integer(), nullable=True))
        batch_op.drop_constraint("ck_alert_notifications_status", type_="check")
        batch_op.create_check_constraint("ck_alert_notifications_status", _AFTER)


def downgrade() -> None:
    op.execute("UPDATE alert_notifications SET status = 'sent' WHERE status = 'grouped'")
    with op.batch_alter_table("alert_notifications", schema=None) as batch_op:
        batch_op.drop_constraint("ck_alert_notifications_status", type_="check")
        batch_op.create_check_constraint("ck_alert_notifications_status", _BEFORE)
        batch_op.drop_column("grouped_into")

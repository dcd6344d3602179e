"""audit chain: each audit record gets a reason, a request id, a gap-free seq and a sha256 hash linking it to
the record before; one chain-head row names the last link. Records written before this revision are chained
here in id order, so `mloncall audit verify` passes on an upgraded database.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 04:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import mloncall.stores.db
from mloncall.access.audit import GENESIS, HEAD_ID, content_hash

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BATCH = 2000


def upgrade() -> None:
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    seq, last = _chain_existing_rows()
    op.get_bind().execute(
        sa.table("audit_chain_head", sa.column("id"), sa.column("seq"), sa.column("hash"))
        .insert()
        .values(id=HEAD_ID, seq=seq, hash=last)
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column("reason", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint("uq_audit_log_seq", ["seq"])
        batch_op.create_index(batch_op.f("ix_audit_log_request_id"), ["request_id"], unique=False)


def _chain_existing_rows() -> tuple[int, str]:
    """Give the rows already there seq 1, 2, ... in id order and their hashes; the last seq and hash."""
    conn = op.get_bind()
    log = sa.table(
        "audit_log",
        sa.column("id", sa.Integer()),
        sa.column("at", mloncall.stores.db.UTCDateTime()),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("target", sa.String()),
        sa.column("outcome", sa.String()),
        sa.column("detail", sa.JSON()),
        sa.column("reason", sa.Text()),
        sa.column("seq", sa.BigInteger()),
        sa.column("prev_hash", sa.String()),
        sa.column("hash", sa.String()),
    )
    fill = (
        log.update()
        .where(log.c.id == sa.bindparam("row_id"))
        .values(
            reason="",
            seq=sa.bindparam("new_seq"),
            prev_hash=sa.bindparam("new_prev"),
            hash=sa.bindparam("new_hash"),
        )
    )
    seq, prev, last_id = 0, GENESIS, 0
    while True:
        rows = conn.execute(
            sa.select(
                log.c.id, log.c.at, log.c.actor, log.c.action, log.c.target, log.c.outcome, log.c.detail
            )
            .where(log.c.id > last_id)
            .order_by(log.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return seq, prev
        updates: list[dict[str, Any]] = []
        for row in rows:
            seq += 1
            digest = content_hash(
                prev_hash=prev,
                seq=seq,
                at=row.at,
                actor=row.actor,
                action=row.action,
                target=row.target,
                outcome=row.outcome,
                reason="",
                request_id=None,
                detail=row.detail,
            )
            updates.append({"row_id": row.id, "new_seq": seq, "new_prev": prev, "new_hash": digest})
            prev, last_id = digest, row.id
        conn.execute(fill, updates)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_request_id"))
        batch_op.drop_constraint("uq_audit_log_seq", type_="unique")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
        batch_op.drop_column("request_id")
        batch_op.drop_column("reason")
    op.drop_table("audit_chain_head")

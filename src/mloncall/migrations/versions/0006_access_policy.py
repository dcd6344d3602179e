"""access: principals of three kinds (user, service, team), roles, the casbin policy in its own table,
break-glass requests, and tokens that can be narrower than their owner. A principal's old role becomes a
global role binding (`operator` became `oncall`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 05:00:00
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

import mloncall.stores.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_WHEN = mloncall.stores.db.UTCDateTime(timezone=True)

#: The built-in roles as this revision defines them: (name, description, included role, permissions).
_BUILTIN = (
    ("viewer", "reads everything but the access records", None,
     ("registry:read", "artifacts:read", "dashboard:view", "inference:call", "alerts:read", "incidents:read",
      "pipelines:read", "runbooks:read")),
    ("engineer", "builds models and data, runs runbooks and pipelines", "viewer",
     ("registry:write", "artifacts:write", "pipelines:run", "runbooks:run")),
    ("oncall", "deploys and rolls back, works alerts and incidents", "engineer",
     ("deploy:execute", "alerts:manage", "incidents:manage")),
    ("admin", "manages access and approves break-glass requests", "oncall", ("access:approve", "access:admin")),
)  # fmt: skip
_RENAMED = {"operator": "oncall"}


def _tables() -> None:
    op.create_table(
        "access_roles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        sa.Column("max_grant_seconds", sa.Integer(), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "access_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requester", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("answer_by", _WHEN, nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decided_at", _WHEN, nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=False),
        sa.Column("starts_at", _WHEN, nullable=True),
        sa.Column("expires_at", _WHEN, nullable=True),
        sa.Column("ended_at", _WHEN, nullable=True),
        sa.Column("ended_by", sa.String(length=128), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("last_used_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("requester", "incident_id", "state"):
        op.create_index(f"ix_access_requests_{column}", "access_requests", [column], unique=False)
    op.create_table(
        "access_policy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ptype", sa.String(length=8), nullable=False),
        sa.Column("v0", sa.String(length=160), nullable=False),
        sa.Column("v1", sa.String(length=160), nullable=False),
        sa.Column("v2", sa.String(length=160), nullable=False),
        sa.Column("v3", sa.String(length=160), nullable=False),
        sa.Column("expires_at", _WHEN, nullable=True),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["access_requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_access_policy_lookup", "access_policy", ["ptype", "v0"], unique=False)
    op.create_index("ix_access_policy_expires_at", "access_policy", ["expires_at"], unique=False)
    op.create_index("ix_access_policy_request_id", "access_policy", ["request_id"], unique=False)
    op.create_table(
        "access_policy_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def _seed(conn: sa.Connection) -> None:
    now = dt.datetime.now(dt.UTC)
    roles = sa.table(
        "access_roles", sa.column("name"), sa.column("description"), sa.column("builtin"),
        sa.column("max_grant_seconds"), sa.column("created_at", _WHEN),
    )  # fmt: skip
    policy = sa.table(
        "access_policy", sa.column("ptype"), sa.column("v0"), sa.column("v1"), sa.column("v2"),
        sa.column("v3"), sa.column("created_at", _WHEN), sa.column("created_by"),
    )  # fmt: skip
    lines: list[dict[str, object]] = []
    for name, description, includes, permissions in _BUILTIN:
        conn.execute(
            roles.insert().values(
                name=name, description=description, builtin=True, max_grant_seconds=None, created_at=now
            )
        )
        lines += [
            {"ptype": "p", "v0": f"role:{name}", "v1": "*", "v2": p, "v3": "allow"} for p in permissions
        ]
        if includes:
            lines.append({"ptype": "g", "v0": f"role:{name}", "v1": f"role:{includes}", "v2": "*", "v3": ""})
    for name, role in conn.execute(sa.text("SELECT name, role FROM principals ORDER BY id")).all():
        role = _RENAMED.get(role, role)
        lines.append({"ptype": "g", "v0": f"user:{name}", "v1": f"role:{role}", "v2": "*", "v3": ""})
    for line in lines:
        line.update(created_at=now, created_by="migration 0006")
    conn.execute(policy.insert(), lines)
    conn.execute(sa.text("INSERT INTO access_policy_version (id, version) VALUES (1, 1)"))


def upgrade() -> None:
    _tables()
    with op.batch_alter_table("principals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default=sa.text("'user'"))
        )
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=False, server_default=sa.text("''")))
        batch_op.add_column(sa.Column("password_hash", sa.String(length=256), nullable=True))
    _seed(op.get_bind())
    with op.batch_alter_table("principals", schema=None) as batch_op:
        batch_op.drop_column("role")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope_permissions", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("scope_model", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("rotated_from", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_api_tokens_prefix"), ["prefix"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_prefix"))
        batch_op.drop_column("rotated_from")
        batch_op.drop_column("scope_model")
        batch_op.drop_column("scope_permissions")
    with op.batch_alter_table("principals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=32), nullable=False, server_default=sa.text("'viewer'"))
        )
        batch_op.drop_column("password_hash")
        batch_op.drop_column("description")
        batch_op.drop_column("kind")
    for table in ("access_policy_version", "access_policy", "access_requests", "access_roles"):
        op.drop_table(table)

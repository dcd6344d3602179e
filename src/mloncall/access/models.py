"""Access tables: principals, API tokens (digests only), dashboard sessions (digests only), roles, the casbin
policy, break-glass requests, the audit log."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mloncall.core import clock
from mloncall.stores.db import Base

TokenStatus = Literal["active", "revoked", "expired"]


class Principal(Base):
    """A person (`user`), a service account (`service`) or a `team` that users belong to.

    What a principal may do is not a column: it is the policy (`PolicyLine`), read by `access.policy`.
    """

    __tablename__ = "principals"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(16), default="user")
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[dt.datetime]
    disabled: Mapped[bool] = mapped_column(default=False)
    #: argon2id hash of the dashboard password, if the user set one; never a default.
    password_hash: Mapped[str | None] = mapped_column(sa.String(256), nullable=True, default=None)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="principal", cascade="all, delete-orphan")

    @property
    def subject(self) -> str:
        """The principal as the policy names it: `user:alice`, `service:svc-retrain`, `team:ml`."""
        return f"{self.kind}:{self.name}"


class ApiToken(Base):
    """A bearer token, stored only as its sha256 digest; the secret is shown once, at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    principal_id: Mapped[int] = mapped_column(sa.ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: The secret's first characters: shown in lists and used to look the token up before the digest is
    #: compared in constant time.
    prefix: Mapped[str] = mapped_column(sa.String(16), index=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    #: A narrower scope than the owner's: only these permissions (None: all the owner's) ...
    scope_permissions: Mapped[list[Any] | None] = mapped_column(
        sa.JSON(none_as_null=True), nullable=True, default=None
    )
    #: ... and only on this model (None: wherever the owner may).
    scope_model: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, default=None)
    #: The token this one replaced (`tokens rotate`).
    rotated_from: Mapped[int | None] = mapped_column(nullable=True, default=None)

    principal: Mapped[Principal] = relationship(back_populates="tokens")

    def status_at(self, at: dt.datetime) -> TokenStatus:
        """`active`, `revoked` or `expired` at a moment."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= at:
            return "expired"
        return "active"

    @property
    def status(self) -> TokenStatus:
        """The token's status now (by the injectable clock)."""
        return self.status_at(clock.now())


class WebSession(Base):
    """A dashboard login, stored only as the sha256 digest of the id its signed cookie carries: the cookie is
    honoured while its row is there, unexpired and not ended, so a logout ends it on the server."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    principal_id: Mapped[int] = mapped_column(sa.ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)


class Role(Base):
    """A named set of permissions: the four built-in roles and the roles an admin defines."""

    __tablename__ = "access_roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    builtin: Mapped[bool] = mapped_column(default=False)
    #: The longest break-glass grant of this role; None: the installation's `access.max_grant`.
    max_grant_seconds: Mapped[int | None] = mapped_column(nullable=True, default=None)
    created_at: Mapped[dt.datetime]


class PolicyLine(Base):
    """One line of the casbin policy, in casbin's own columns (`ptype`, `v0`..`v3`).

    - `p, role:engineer, *, registry:write, allow`: a role's permission, in every scope;
    - `p, user:bob, model:iris, deploy:execute, deny`: an explicit deny, which wins over any allow;
    - `g, user:alice, team:ml, *`: membership of a team;
    - `g, team:ml, role:oncall, model:iris`: a role binding, here scoped to one model (`*`: global);
    - `g, role:oncall, role:engineer, *`: a role that includes another.

    A line of a break-glass grant carries its expiry and its request, and is never read once expired.
    """

    __tablename__ = "access_policy"
    __table_args__ = (sa.Index("ix_access_policy_lookup", "ptype", "v0"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ptype: Mapped[str] = mapped_column(sa.String(8))
    v0: Mapped[str] = mapped_column(sa.String(160))
    v1: Mapped[str] = mapped_column(sa.String(160))
    v2: Mapped[str] = mapped_column(sa.String(160), default="")
    v3: Mapped[str] = mapped_column(sa.String(160), default="")
    expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None, index=True)
    request_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("access_requests.id", ondelete="CASCADE"), nullable=True, default=None, index=True
    )
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(sa.String(128), default="")

    @property
    def values(self) -> list[str]:
        """The line as casbin reads it, without its empty trailing fields."""
        fields = [self.v0, self.v1, self.v2, self.v3]
        while fields and fields[-1] == "":
            fields.pop()
        return fields


class PolicyVersion(Base):
    """One row: bumped in the transaction of every policy change, so every process knows to reload."""

    __tablename__ = "access_policy_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(default=0)


class AccessRequest(Base):
    """A break-glass request: a role for a while, on one model or everywhere, answered by someone else.

    The granted time counts from the approval, not from the request, and the row stays after expiry.
    """

    __tablename__ = "access_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    requester: Mapped[str] = mapped_column(sa.String(128), index=True)
    role: Mapped[str] = mapped_column(sa.String(64))
    scope: Mapped[str] = mapped_column(sa.String(80), default="*")
    duration_seconds: Mapped[int]
    reason: Mapped[str] = mapped_column(sa.Text)
    incident_id: Mapped[int | None] = mapped_column(nullable=True, default=None, index=True)
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    created_at: Mapped[dt.datetime]
    #: A pending request not answered by then can no longer be approved.
    answer_by: Mapped[dt.datetime]
    decided_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, default=None)
    decided_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    decision_note: Mapped[str] = mapped_column(sa.Text, default="")
    starts_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    ended_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, default=None)
    uses: Mapped[int] = mapped_column(default=0)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)


class AuditRecord(Base):
    """Who did what to which target, when, how it ended and why; one link of the audit hash chain.

    `hash` is sha256 over `prev_hash` and the record's canonical content (`access.audit.content_hash`), and
    `seq` counts the chain from 1 without gaps, so an altered or removed row shows in `mloncall audit verify`.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(sa.String(128), index=True)
    action: Mapped[str] = mapped_column(sa.String(128))
    target: Mapped[str] = mapped_column(sa.String(512), default="")
    outcome: Mapped[str] = mapped_column(sa.String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    request_id: Mapped[str | None] = mapped_column(sa.String(64), index=True, nullable=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger, unique=True)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))


class AuditChainHead(Base):
    """The one row naming the audit chain's last link: appends lock it, and verify compares the tail with it."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    hash: Mapped[str] = mapped_column(sa.String(64))

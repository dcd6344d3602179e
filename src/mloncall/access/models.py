"""Access tables: principals, their API tokens (digests only) and the audit log."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mloncall.core import clock
from mloncall.stores.db import Base

TokenStatus = Literal["active", "revoked", "expired"]


class Principal(Base):
    """A person or a service that acts on mloncall."""

    __tablename__ = "principals"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    role: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[dt.datetime]
    disabled: Mapped[bool] = mapped_column(default=False)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="principal", cascade="all, delete-orphan")


class ApiToken(Base):
    """A bearer token, stored only as its sha256 digest; the secret is shown once, at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    principal_id: Mapped[int] = mapped_column(sa.ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)

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

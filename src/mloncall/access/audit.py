"""The audit log: who did what to which target, when, and how it ended."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.access.models import AuditRecord
from mloncall.core import clock
from mloncall.core.errors import InvalidInput


def _clip(value: str, size: int) -> str:
    value = value.replace("\x00", "\\x00")  # PostgreSQL text cannot hold NUL; a hostile path may contain one
    return value if len(value) <= size else value[: size - 1] + "…"


def record(
    *,
    session: Session,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    detail: dict[str, Any] | None = None,
) -> AuditRecord:
    """Append one audit record: who did what to which target, and how it ended."""
    entry = AuditRecord(
        at=clock.now(),
        actor=_clip(actor, 128),
        action=_clip(action, 128),
        target=_clip(target, 512),
        outcome=_clip(outcome, 32),
        detail=detail or {},
    )
    session.add(entry)
    session.flush()
    return entry


def list_audit(
    *, session: Session, actor: str | None = None, action: str | None = None, limit: int = 100
) -> Sequence[AuditRecord]:
    """Audit records, newest first; `actor` matches exactly, `action` matches any part of the action."""
    if limit < 1:
        raise InvalidInput(f"limit must be at least 1, not {limit}")
    stmt = sa.select(AuditRecord)
    if actor is not None:
        stmt = stmt.where(AuditRecord.actor == actor)
    if action is not None:
        stmt = stmt.where(AuditRecord.action.contains(action, autoescape=True))
    return session.scalars(stmt.order_by(AuditRecord.id.desc()).limit(limit)).all()

"""Dashboard sessions on the server: a login starts one, every request finds it, a logout ends it.

The signed cookie carries a random session id; the table keeps only its sha256 digest. A cookie whose
session was ended (or has expired, or belongs to a removed principal) no longer logs anyone in, however many
copies of it exist.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.access.models import Principal, WebSession
from mloncall.core import clock


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start(*, session: Session, principal: Principal, lifetime: dt.timedelta) -> str:
    """A new session of principal for `lifetime`; returns its id (shown once: only its digest is kept). The
    principal's expired and ended sessions are removed on the way, so the table holds live ones."""
    now = clock.now()
    session.execute(
        sa.delete(WebSession).where(
            WebSession.principal_id == principal.id,
            sa.or_(WebSession.expires_at <= now, WebSession.ended_at.is_not(None)),
        )
    )
    session_id = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            digest=_digest(session_id), principal_id=principal.id, created_at=now, expires_at=now + lifetime
        )
    )
    session.flush()
    return session_id


def get_active(*, session: Session, session_id: str) -> WebSession | None:
    """The session an id names while it is live (not ended, not expired); None otherwise."""
    row = session.scalars(sa.select(WebSession).where(WebSession.digest == _digest(session_id))).first()
    if row is None or row.ended_at is not None or row.expires_at <= clock.now():
        return None
    return row


def end(*, session: Session, session_id: str) -> bool:
    """End the session an id names (a logout); False when it was not live."""
    row = get_active(session=session, session_id=session_id)
    if row is None:
        return False
    row.ended_at = clock.now()
    session.flush()
    return True

"""Break-glass grants: a role for a while, requested with a reason, approved by someone else.

- The granted time counts from the approval and is capped by the role's (or the installation's) longest
  grant; a request not answered in time can no longer be approved.
- On approval the grant becomes a policy line that carries its expiry, so no decision ever honours it
  after that moment, whether or not the expiry job has run yet. `expire_due` (the server's scheduler) then
  marks it expired and removes the line; the request row stays, with its history, for good.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.access import roles
from mloncall.access.models import AccessRequest, PolicyLine, Principal
from mloncall.access.permissions import check_scope, scope_label
from mloncall.access.policy import bump_version
from mloncall.core import clock
from mloncall.core.config import Settings, positive_numbers
from mloncall.core.errors import Conflict, InvalidInput, PermissionDenied
from mloncall.core.states import Moves
from mloncall.stores.db import get_or_raise


class RequestState(StrEnum):
    """`lapsed`: nobody answered in time; `expired`: an approved grant ran its time; `revoked`: ended early."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    LAPSED = "lapsed"
    EXPIRED = "expired"
    REVOKED = "revoked"


PENDING, APPROVED, DENIED, LAPSED, EXPIRED, REVOKED = RequestState
MOVES = Moves(
    RequestState,
    {
        None: {PENDING},
        PENDING: {APPROVED, DENIED, LAPSED},
        APPROVED: {EXPIRED, REVOKED},
        **{ended: set() for ended in (DENIED, LAPSED, EXPIRED, REVOKED)},
    },
)
ENDED = (DENIED, EXPIRED, REVOKED, LAPSED)


@dataclass(frozen=True)
class GrantLimits:
    """`[access]`: the longest grant (seconds) a role without its own cap may have, and how long a request
    waits for an answer."""

    max_grant_seconds: int = 8 * 3600
    answer_within_seconds: int = 24 * 3600

    @classmethod
    def load(cls, settings: Settings | None = None) -> GrantLimits:
        return positive_numbers(
            cls, "access", settings or Settings.load(), read_elsewhere={"security_channel", "expiry_interval"}
        )


def get_request_or_raise(*, session: Session, request_id: int) -> AccessRequest:
    """The request with this id; NotFound otherwise."""
    return get_or_raise(session, AccessRequest, request_id, what="access request")


def request(
    *,
    session: Session,
    requester: Principal,
    role: str,
    scope: str | None,
    duration: dt.timedelta,
    reason: str,
    incident_id: int | None = None,
    limits: GrantLimits | None = None,
) -> AccessRequest:
    """File a request for role in scope for duration (capped when approved), with a reason."""
    limits = limits or GrantLimits()
    found = roles.get_role_or_raise(session=session, name=role)
    if not reason.strip():
        raise InvalidInput("a break-glass request needs a reason: say what you need it for")
    if duration <= dt.timedelta(0):
        raise InvalidInput(f"a grant must last a positive time, not {duration}")
    cap = dt.timedelta(seconds=found.max_grant_seconds or limits.max_grant_seconds)
    if duration > cap:
        raise PermissionDenied(f"the {found.name} role is granted for at most {cap}: ask for that or less")
    if requester.kind == "team":
        raise InvalidInput(f"{requester.name!r} is a team: a person or a service account files a request")
    now = clock.now()
    row = AccessRequest(
        requester=requester.name,
        role=found.name,
        scope=check_scope(scope),
        duration_seconds=int(duration.total_seconds()),
        reason=reason.strip(),
        incident_id=incident_id,
        state=PENDING,
        created_at=now,
        answer_by=now + dt.timedelta(seconds=limits.answer_within_seconds),
    )
    session.add(row)
    session.flush()
    return row


def _pending(row: AccessRequest, now: dt.datetime) -> None:
    if row.state == PENDING and row.answer_by <= now:
        _end(row, LAPSED, now, "mloncall")
    if row.state != PENDING:
        raise Conflict(
            f"access request #{row.id} is {row.state}, not pending: file a new one if still needed"
        )


def _answer(
    session: Session, request_id: int, approver: Principal, note: str, to: RequestState, others: str
) -> tuple[AccessRequest, dt.datetime]:
    """The pending request, answered `to` by approver, and when; never by its requester (`others` says who
    answers instead)."""
    row = get_request_or_raise(session=session, request_id=request_id)
    now = clock.now()
    _pending(row, now)
    if approver.name == row.requester:
        raise PermissionDenied(f"{approver.name} filed access request #{row.id}: {others}")
    MOVES.check(f"access request #{row.id}", row.state, to)
    row.state, row.decided_by, row.decided_at, row.decision_note = to, approver.name, now, note
    return row, now


def approve(*, session: Session, request_id: int, approver: Principal, note: str = "") -> AccessRequest:
    """Approve a pending request: the grant starts now and lasts the time asked for."""
    row, now = _answer(session, request_id, approver, note, APPROVED, "someone else must approve it")
    row.starts_at = now
    row.expires_at = now + dt.timedelta(seconds=row.duration_seconds)
    requester = session.scalars(sa.select(Principal).where(Principal.name == row.requester)).one()
    roles.add_line(
        session=session,
        ptype="g",
        values=(requester.subject, f"role:{row.role}", row.scope),
        actor=approver.name,
        expires_at=row.expires_at,
        request_id=row.id,
    )
    session.flush()
    return row


def deny(*, session: Session, request_id: int, approver: Principal, note: str = "") -> AccessRequest:
    """Deny a pending request."""
    row, now = _answer(session, request_id, approver, note, DENIED, "someone else answers it")
    row.ended_at = now
    session.flush()
    return row


def _end(row: AccessRequest, state: RequestState, now: dt.datetime, actor: str) -> None:
    MOVES.check(f"access request #{row.id}", row.state, state)
    row.state, row.ended_at, row.ended_by = state, now, actor


def revoke(*, session: Session, request_id: int, actor: str) -> AccessRequest:
    """End an approved grant now (the root cause is fixed, or it was a mistake)."""
    row = get_request_or_raise(session=session, request_id=request_id)
    now = clock.now()
    if row.state == APPROVED and row.expires_at is not None and row.expires_at <= now:
        _end(row, EXPIRED, now, "mloncall")
    if row.state != APPROVED:
        raise Conflict(f"access request #{row.id} is {row.state}: only an approved grant is revoked")
    _end(row, REVOKED, now, actor)
    _drop_lines(session, row.id)
    return row


def _drop_lines(session: Session, request_id: int) -> None:
    session.execute(sa.delete(PolicyLine).where(PolicyLine.request_id == request_id))
    bump_version(session)


def expire_due(*, session: Session) -> list[AccessRequest]:
    """Mark every grant past its time expired and every unanswered request lapsed; the grants' lines go."""
    now = clock.now()
    ended: list[AccessRequest] = []
    due = session.scalars(
        sa.select(AccessRequest).where(
            sa.or_(
                sa.and_(AccessRequest.state == APPROVED, AccessRequest.expires_at <= now),
                sa.and_(AccessRequest.state == PENDING, AccessRequest.answer_by <= now),
            )
        )
    ).all()
    for row in due:
        if row.state == APPROVED:
            _end(row, EXPIRED, row.expires_at or now, "mloncall")
            _drop_lines(session, row.id)
        else:
            _end(row, LAPSED, row.answer_by, "mloncall")
        ended.append(row)
    session.flush()
    return ended


def record_use(*, session: Session, request_id: int) -> None:
    """Count one use of a grant (each is also in the audit log, with the grant's id)."""
    session.execute(
        sa.update(AccessRequest)
        .where(AccessRequest.id == request_id)
        .values(uses=AccessRequest.uses + 1, last_used_at=clock.now())
    )


def list_requests(
    *,
    session: Session,
    requester: str | None = None,
    state: str | None = None,
    incident_id: int | None = None,
    limit: int = 100,
) -> Sequence[AccessRequest]:
    """Requests and grants, newest first: expired and revoked ones stay in this history."""
    stmt = sa.select(AccessRequest).order_by(AccessRequest.id.desc()).limit(limit)
    if requester is not None:
        stmt = stmt.where(AccessRequest.requester == requester)
    if state is not None:
        if state not in (PENDING, APPROVED, *ENDED):
            raise InvalidInput(
                f"unknown request state {state!r}: use one of pending, approved, {', '.join(ENDED)}"
            )
        stmt = stmt.where(AccessRequest.state == state)
    if incident_id is not None:
        stmt = stmt.where(AccessRequest.incident_id == incident_id)
    return session.scalars(stmt).all()


def describe(row: AccessRequest) -> str:
    """`#3 oncall on model iris for 2:00:00, approved by bob`: one line of a request."""
    what = f"#{row.id} {row.role} {scope_label(row.scope)} for {dt.timedelta(seconds=row.duration_seconds)}"
    return f"{what}, {row.state}" + (f" by {row.decided_by}" if row.decided_by else "")

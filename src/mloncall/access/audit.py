"""The audit log: who did what to which target, when, how it ended and why, under which request id.

Records form a hash chain: each has a gap-free `seq` and `hash = sha256(prev_hash || canonical content)`, and
the one row of `audit_chain_head` names the last link. An append locks that row (an UPDATE first: a row lock
on PostgreSQL, the write lock on SQLite) inside the writer's own transaction, so concurrent writers take
turns, and a unit of work that rolls back takes its link with it: no record, no gap. `verify` walks the chain
in `seq` order, a batch at a time, and names the first broken link.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.access.models import AuditChainHead, AuditRecord
from mloncall.core import clock
from mloncall.core.durations import parse_duration
from mloncall.core.errors import InvalidInput

logger = logging.getLogger("mloncall.audit")

#: The `prev_hash` of the first record.
GENESIS = "0" * 64
HEAD_ID = 1
_HEAD = cast(sa.Table, AuditChainHead.__table__)
#: What a client may send as its `X-Request-ID`; anything else is replaced by a generated id.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Outcomes a filter names; `error` matches every `error:<code>` too.
OUTCOMES = ("success", "denied", "unauthenticated", "error")

# --- request ids ------------------------------------------------------------------------------------------

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("mloncall_request_id", default=None)


def new_request_id() -> str:
    """A fresh request id (32 hex digits)."""
    return uuid.uuid4().hex


def accept_request_id(claimed: str | None) -> str:
    """The client's request id if it is a safe one, else a fresh one."""
    if claimed is not None and REQUEST_ID_PATTERN.fullmatch(claimed):
        return claimed
    return new_request_id()


def current_request_id() -> str | None:
    """The request id records written now are filed under (an HTTP request, a CLI command), if any."""
    return _request_id.get()


@contextmanager
def bind_request_id(request_id: str | None = None) -> Iterator[str]:
    """File the records written inside the block under one request id (a new one unless given)."""
    rid = request_id or new_request_id()
    token = _request_id.set(rid)
    try:
        yield rid
    finally:
        _request_id.reset(token)


# --- the chain --------------------------------------------------------------------------------------------


def _clip(value: str, size: int) -> str:
    value = value.replace("\x00", "\\x00")  # PostgreSQL text cannot hold NUL; a hostile path may contain one
    return value if len(value) <= size else value[: size - 1] + "…"


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def content_hash(
    *,
    prev_hash: str,
    seq: int,
    at: dt.datetime,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    reason: str,
    request_id: str | None,
    detail: dict[str, Any],
) -> str:
    """sha256 hex of `prev_hash` followed by the canonical JSON of the record's content."""
    content = [
        seq,
        at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        actor,
        action,
        target,
        outcome,
        reason,
        request_id,
        detail,
    ]
    return hashlib.sha256((prev_hash + _canonical_json(content)).encode("ascii")).hexdigest()


def _next_link(session: Session) -> tuple[int, str]:
    """Take the next seq and the last hash, holding the chain head until the transaction ends."""
    head = _HEAD
    # An UPDATE before any read: it waits for (and then locks) the head on PostgreSQL and takes SQLite's write
    # lock, so the seq and hash it returns are the newest and nobody else takes them before this commits.
    taken = session.execute(
        sa.update(head)
        .where(head.c.id == HEAD_ID)
        .values(seq=head.c.seq + 1)
        .returning(head.c.seq, head.c.hash)
    ).first()
    if taken is not None:
        return int(taken.seq), str(taken.hash)
    last = session.execute(
        sa.select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
    ).first()
    if last is not None:
        logger.warning("the audit chain head was missing; it is rebuilt from seq %s", last.seq)
    seq, prev = (int(last.seq) + 1, str(last.hash)) if last is not None else (1, GENESIS)
    session.execute(sa.insert(head).values(id=HEAD_ID, seq=seq, hash=prev))
    return seq, prev


def record(
    *,
    session: Session,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    reason: str = "",
    detail: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> AuditRecord:
    """Append one audit record to the chain in the session's transaction: who did what to which target, how it
    ended and why; `request_id` defaults to the one bound now (`bind_request_id`)."""
    seq, prev_hash = _next_link(session)
    rid = request_id if request_id is not None else current_request_id()
    entry = AuditRecord(
        at=clock.now(),  # after the head is taken: `at` follows `seq`
        actor=_clip(actor, 128),
        action=_clip(action, 128),
        target=_clip(target, 512),
        outcome=_clip(outcome, 32),
        reason=_clip(reason, 2000),
        request_id=None if rid is None else _clip(rid, 64),
        # As the database gives it back (string keys, JSON types), so the hash verify recomputes is this one.
        detail=json.loads(_canonical_json(detail or {})),
        seq=seq,
        prev_hash=prev_hash,
    )
    entry.hash = _hash_of(entry)
    session.add(entry)
    session.execute(sa.update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(hash=entry.hash))
    session.flush()
    return entry


def _hash_of(row: Any) -> str:
    return content_hash(
        prev_hash=row.prev_hash,
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        outcome=row.outcome,
        reason=row.reason,
        request_id=row.request_id,
        detail=row.detail,
    )


# --- reading ----------------------------------------------------------------------------------------------


def parse_moment(value: str, *, what: str) -> dt.datetime:
    """A moment: an ISO time (UTC unless it has an offset) or a duration ago (`2h`, `1d`, core.durations)."""
    text = value.strip()
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            return clock.now() - parse_duration(text, what=what)
        except InvalidInput:
            raise InvalidInput(
                f"bad {what} {value!r}: use an ISO time (2026-01-05T09:00, UTC unless it has an offset) "
                "or a duration ago (30m, 2h, 7d)"
            ) from None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


@dataclass(frozen=True)
class AuditFilter:
    """Which records `list_audit` returns; every field left None matches everything.

    `actor`, `outcome` and `request_id` match exactly (outcome `error` matches every `error:<code>` too),
    `action` and `resource` (the record's target) any part of it, `since`/`until` bound `at` inclusively.
    """

    actor: str | None = None
    action: str | None = None
    resource: str | None = None
    outcome: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    request_id: str | None = None

    @classmethod
    def from_text(
        cls, *, since: str | None = None, until: str | None = None, **exact: str | None
    ) -> AuditFilter:
        """The filter as a command or a query gives it: `since`/`until` as text for `parse_moment`."""
        return cls(
            since=None if since is None else parse_moment(since, what="since"),
            until=None if until is None else parse_moment(until, what="until"),
            **exact,
        )

    def where(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        """The statement narrowed to these records."""
        if self.since is not None and self.until is not None and self.since > self.until:
            raise InvalidInput(f"since ({self.since.isoformat()}) is after until ({self.until.isoformat()})")
        if self.actor is not None:
            stmt = stmt.where(AuditRecord.actor == self.actor)
        if self.action is not None:
            stmt = stmt.where(AuditRecord.action.contains(self.action, autoescape=True))
        if self.resource is not None:
            stmt = stmt.where(AuditRecord.target.contains(self.resource, autoescape=True))
        if self.outcome == "error":
            errors = AuditRecord.outcome.startswith("error:", autoescape=True)
            stmt = stmt.where(sa.or_(AuditRecord.outcome == "error", errors))
        elif self.outcome is not None:
            stmt = stmt.where(AuditRecord.outcome == self.outcome)
        if self.since is not None:
            stmt = stmt.where(AuditRecord.at >= self.since)
        if self.until is not None:
            stmt = stmt.where(AuditRecord.at <= self.until)
        if self.request_id is not None:
            stmt = stmt.where(AuditRecord.request_id == self.request_id)
        return stmt


def list_matching(*, session: Session, where: AuditFilter, limit: int = 100) -> Sequence[AuditRecord]:
    """The records `where` matches, newest (highest seq) first, at most `limit`."""
    if limit < 1:
        raise InvalidInput(f"limit must be at least 1, not {limit}")
    stmt = where.where(sa.select(AuditRecord))
    return session.scalars(stmt.order_by(AuditRecord.seq.desc()).limit(limit)).all()


def list_audit(*, session: Session, limit: int = 100, **filters: Any) -> Sequence[AuditRecord]:
    """Audit records, newest first, narrowed by `AuditFilter`'s fields given as keywords."""
    return list_matching(session=session, where=AuditFilter(**filters), limit=limit)


# --- verify -----------------------------------------------------------------------------------------------

BreakKind = Literal["altered", "missing", "unlinked", "truncated"]
_VERIFY_COLUMNS = (
    AuditRecord.id,
    AuditRecord.seq,
    AuditRecord.at,
    AuditRecord.actor,
    AuditRecord.action,
    AuditRecord.target,
    AuditRecord.outcome,
    AuditRecord.reason,
    AuditRecord.request_id,
    AuditRecord.detail,
    AuditRecord.prev_hash,
    AuditRecord.hash,
)


@dataclass(frozen=True)
class ChainBreak:
    """The first broken link: what kind, where, and a sentence naming it."""

    kind: BreakKind
    seq: int | None
    record_id: int | None
    message: str


@dataclass(frozen=True)
class ChainReport:
    """What `verify` found: how many records it checked, the head it checked them against, the first break."""

    intact: bool
    checked: int
    head_seq: int
    head_hash: str
    broken: ChainBreak | None

    @property
    def message(self) -> str:
        if self.broken is not None:
            return self.broken.message
        records = "1 record" if self.checked == 1 else f"{self.checked} records"
        return f"the audit chain is intact: {records}, head seq {self.head_seq}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "message": self.message}


def _check_link(row: Any, prev_seq: int, prev_hash: str) -> ChainBreak | None:
    """The break at `row`, given the link before it (seq 0 and GENESIS before the first), or None."""
    if _hash_of(row) != row.hash:
        message = f"record {row.id} (seq {row.seq}) was altered: its hash does not match its content"
        return ChainBreak("altered", row.seq, row.id, message)
    if row.seq != prev_seq + 1:
        gone = "record" if row.seq == prev_seq + 2 else f"{row.seq - prev_seq - 1} records"
        where = f"after seq {prev_seq}" if prev_seq else f"before seq {row.seq}"
        verb = "is" if gone == "record" else "are"
        message = f"{gone} {where} {verb} missing: seq {row.seq} links to a hash no record has"
        return ChainBreak("missing", prev_seq + 1, row.id, message)
    if row.prev_hash != prev_hash:
        message = (
            f"record {row.id} (seq {row.seq}) does not link to seq {prev_seq}: the record before it was "
            "replaced or its hash rewritten"
        )
        return ChainBreak("unlinked", row.seq, row.id, message)
    return None


def _check_tail(
    head_seq: int, head_hash: str, last_seq: int, last_hash: str, last_id: int | None
) -> ChainBreak | None:
    if head_seq > last_seq:
        gone = head_seq - last_seq
        message = (
            f"the last {gone} record{'s' if gone > 1 else ''} of the chain {'are' if gone > 1 else 'is'} missing: "
            f"the chain head is at seq {head_seq}, the last record is seq {last_seq}"
        )
        return ChainBreak("truncated", last_seq + 1, None, message)
    if head_hash != last_hash:
        message = (
            f"record {last_id} (seq {last_seq}) is not the one the chain head names: the tail was replaced"
        )
        return ChainBreak("unlinked", last_seq, last_id, message)
    return None


def _head(session: Session) -> tuple[int, str] | None:
    # A query, not `session.get`: appends update the head with Core statements the identity map never sees.
    head = session.execute(sa.select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == HEAD_ID)).first()
    return None if head is None else (int(head.seq), str(head.hash))


def verify(
    *, session: Session, batch: int = 5000, on_progress: Callable[[int, int], None] | None = None
) -> ChainReport:
    """Walk the chain in seq order, `batch` rows at a time, up to the head as it is now; the first break.

    Records appended while it runs (past the head it read first) are not checked. `on_progress(done, total)`
    is called after each batch.
    """
    found = _head(session)
    if found is None:
        any_row = session.scalar(sa.select(AuditRecord.id).limit(1))
        if any_row is None:
            return ChainReport(True, 0, 0, GENESIS, None)
        broken = ChainBreak(
            "truncated", None, None, "the audit chain head is missing: the log was tampered with"
        )
        return ChainReport(False, 0, 0, GENESIS, broken)
    head_seq, head_hash = found
    prev_seq, prev_hash, prev_id, checked = 0, GENESIS, None, 0
    while True:
        stmt = (
            sa.select(*_VERIFY_COLUMNS)
            .where(AuditRecord.seq > prev_seq, AuditRecord.seq <= head_seq)
            .order_by(AuditRecord.seq)
            .limit(batch)
        )
        rows = session.execute(stmt).all()
        for row in rows:
            link = _check_link(row, prev_seq, prev_hash)
            if link is not None:
                return ChainReport(False, checked, head_seq, head_hash, link)
            prev_seq, prev_hash, prev_id, checked = row.seq, row.hash, row.id, checked + 1
        if on_progress is not None:
            on_progress(checked, head_seq)
        if len(rows) < batch:
            break
    tail = _check_tail(head_seq, head_hash, prev_seq, prev_hash, prev_id)
    return ChainReport(tail is None, checked, head_seq, head_hash, tail)

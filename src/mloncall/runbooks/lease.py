"""One run tree at a time acts on a target: a lease row in the metadata database (owner and expiry),
renewed while the run executes, so it holds across processes and hosts on SQLite and PostgreSQL alike.

A lease whose holder died (kill -9, a lost host) is taken over once it expires, or at once when its owner
was a process on this host that no longer exists. Taking over is a compare-and-swap on the owner, so two
processes racing for a stale lease cannot both win.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from mloncall.core import clock
from mloncall.core.errors import Conflict
from mloncall.core.processes import pid_alive
from mloncall.runbooks.models import RunbookLease
from mloncall.stores.db import Database

TTL = dt.timedelta(seconds=60)
HOST = socket.gethostname()


def new_owner() -> str:
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _gone(owner: str) -> bool:
    """Whether the owner was a process on this host that has exited."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != HOST or not pid_text.isdigit():
        return False
    return not pid_alive(int(pid_text))


def acquire(*, db: Database, target: str, run_id: int, owner: str, ttl: dt.timedelta = TTL) -> bool:
    """Take the target's lease for run `run_id`; True if taken now, False if this owner already held it.

    Conflict if another live owner holds it (another run, or another process executing this one).
    """
    now = clock.now()
    with db.session() as s:
        row = s.get(RunbookLease, target)
        if row is not None and row.owner == owner:
            return False
        if row is not None and row.expires_at > now and not _gone(row.owner):
            what = "this run" if row.run_id == run_id else f"run #{row.run_id}"
            raise Conflict(
                f"{target} is being acted on by {what} ({row.owner.rsplit(':', 1)[0]}, lease until "
                f"{row.expires_at:%H:%M:%S} UTC): wait for it to finish or stop"
            )
    values = {"run_id": run_id, "owner": owner, "acquired_at": now, "expires_at": now + ttl}
    try:
        with db.session() as s:
            if row is None:
                s.add(RunbookLease(target=target, **values))
                s.flush()
                return True
            taken = s.execute(
                sa.update(RunbookLease)
                .where(RunbookLease.target == target, RunbookLease.owner == row.owner)
                .values(**values)
            )
            if getattr(taken, "rowcount", 0) != 1:
                raise Conflict(f"{target} was taken by another run a moment ago")
    except SAIntegrityError:
        raise Conflict(f"{target} was taken by another run a moment ago") from None
    return True


def renew(*, db: Database, target: str, owner: str, ttl: dt.timedelta = TTL) -> bool:
    with db.session() as s:
        res = s.execute(
            sa.update(RunbookLease)
            .where(RunbookLease.target == target, RunbookLease.owner == owner)
            .values(expires_at=clock.now() + ttl)
        )
        return getattr(res, "rowcount", 0) == 1


def release(*, db: Database, target: str, owner: str) -> None:
    with db.session() as s:
        s.execute(sa.delete(RunbookLease).where(RunbookLease.target == target, RunbookLease.owner == owner))


def holder(*, db: Database, target: str) -> RunbookLease | None:
    with db.session() as s:
        row = s.get(RunbookLease, target)
        if row is not None:
            s.expunge(row)
        return row


@dataclass
class Heartbeat:
    """Renews a held lease every third of its time to live until stopped."""

    db: Database
    target: str
    owner: str
    ttl: dt.timedelta = TTL
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._loop, name="mloncall-runbook-lease", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl.total_seconds() / 3):
            try:
                renew(db=self.db, target=self.target, owner=self.owner, ttl=self.ttl)
            except Exception:  # a missed renewal is retried; the lease only lapses after the full TTL
                continue

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

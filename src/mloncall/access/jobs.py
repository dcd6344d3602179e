"""The server's grant expiry: every grant past its time is marked expired and its policy line removed, every
unanswered request lapses, and each is audited. Decisions never wait for this job (a grant's line carries its
own expiry); the job keeps the history and the policy table true."""

from __future__ import annotations

import datetime as dt

from mloncall.access import audit, grants
from mloncall.stores.context import Context
from mloncall.stores.jobs import LockedLoop

DEFAULT_INTERVAL = dt.timedelta(seconds=30)


def expire_once(ctx: Context) -> list[int]:
    """One pass: the ids of the requests that ended in it."""
    with ctx.db.session() as session:
        ended = grants.expire_due(session=session)
        for row in ended:
            audit.record(
                session=session,
                actor="mloncall",
                action=f"access.request.{row.state}",
                target=f"access-request:{row.id}",
                outcome="success",
                detail={"requester": row.requester, "role": row.role, "scope": row.scope, "uses": row.uses},
            )
        return [row.id for row in ended]


class Scheduler(LockedLoop):
    """Runs `expire_once` every `[access] expiry_interval` (30s) in one process per installation."""

    name = "access"
    lock_file = "access-scheduler.lock"
    setting = ("access", "expiry_interval", DEFAULT_INTERVAL)

    def run_pass(self) -> None:
        expire_once(self.ctx)

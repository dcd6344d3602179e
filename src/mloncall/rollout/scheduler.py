"""Background work for rollouts: look at every running canary about once a second.

Each look is its own unit of work under the rollout's optimistic lock, so the server's scheduler and a
`deploy --wait` in a terminal can both drive the same rollout: one wins a transition, the other skips it.
Only one process per installation runs the loop (a file lock under the home folder), so several server
workers do not all analyse the same logs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm.exc import StaleDataError

from mloncall.core import clock
from mloncall.core.outcome import Outcome
from mloncall.rollout import service
from mloncall.rollout.acceptance import check_acceptance
from mloncall.rollout.models import Rollout, RolloutState
from mloncall.stores.context import Context
from mloncall.stores.jobs import LockedLoop

log = logging.getLogger("mloncall.rollout")


def evaluate_once(ctx: Context, rollout_id: int, actor: str = "analysis") -> str | None:
    """Evaluate one rollout now; None if nothing changed or another process took the step first."""
    try:
        with ctx.db.session() as session:
            r = session.get(Rollout, rollout_id)
            if r is None:
                return None
            return service.evaluate(session=session, store=ctx.store, rollout=r, now=clock.now(), actor=actor)
    except StaleDataError:
        return None


def run_due(ctx: Context) -> dict[int, str]:
    """Evaluate every running rollout once; returns the transitions taken by rollout id."""
    with ctx.db.session() as session:
        ids = [r.id for r in service.list_active(session=session) if r.state == RolloutState.RUNNING]
    taken = {}
    for rid in ids:
        try:
            outcome = evaluate_once(ctx, rid)
        except Exception:  # one broken rollout must not stop the others; the next look retries
            log.exception("evaluating rollout #%s failed", rid)
            continue
        if outcome:
            taken[rid] = outcome
            log.info("rollout #%s %s", rid, outcome)
    return taken


class Scheduler(LockedLoop):
    """Looks at every running rollout every `interval` seconds, in one process per installation."""

    name = "rollouts"
    lock_file = "scheduler.lock"

    def __init__(self, ctx: Context, interval: float = 1.0) -> None:
        super().__init__(ctx, interval)

    def run_pass(self) -> None:
        run_due(self.ctx)


def acceptance_when_ready(
    ctx: Context, rollout_id: int, *, timeout: float, on_wait: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Check a promoted rollout's acceptance, waiting (up to `timeout` s) for traffic on the new version.

    The verdict is kept with the rollout; returns it as stored.
    """
    deadline = time.monotonic() + timeout
    while True:
        with ctx.db.session() as session:
            r = session.get(Rollout, rollout_id)
            if r is None:
                return {}
            checks, _ = check_acceptance(session=session, store=ctx.store, rollout=r, now=clock.now())
            acceptance = dict(r.acceptance or {})
        traffic = next((c for c in checks if c.name == "traffic on new version"), None)
        if traffic is None or traffic.outcome is not Outcome.INCONCLUSIVE or time.monotonic() > deadline:
            return acceptance
        if on_wait is not None:
            on_wait(f"waiting for traffic on the new version: {traffic.reason}")
        time.sleep(1.0)

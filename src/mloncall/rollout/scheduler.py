"""Background work for rollouts: look at every running canary about once a second.

Each look is its own unit of work under the rollout's optimistic lock, so the server's scheduler and a
`deploy --wait` in a terminal can both drive the same rollout: one wins a transition, the other skips it.
Only one process per installation runs the loop (a file lock under the home folder), so several server
workers do not all analyse the same logs.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm.exc import StaleDataError

from mloncall import clock
from mloncall.context import Context
from mloncall.rollout import service
from mloncall.rollout.models import Rollout

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
        ids = [r.id for r in service.list_active(session=session) if r.state == "running"]
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


class Scheduler:
    """A daemon thread calling `run_due` every `interval` seconds while it holds the installation's lock."""

    def __init__(self, ctx: Context, interval: float = 1.0) -> None:
        self.ctx = ctx
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_file: IO[Any] | None = None

    def start(self) -> bool:
        """Start if no other process of this installation runs the scheduler; True if started."""
        path = Path(self.ctx.settings.home) / "scheduler.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = path.open("a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._lock_file = fh
        self._thread = threading.Thread(target=self._loop, name="mloncall-scheduler", daemon=True)
        self._thread.start()
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                run_due(self.ctx)
            except Exception:
                log.exception("scheduler pass failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

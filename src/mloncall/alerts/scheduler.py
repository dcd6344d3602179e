"""Background work for alerts: evaluate the rules every `[alerts] evaluation_interval` (default 60s) and send
queued notifications.

Only one process per installation evaluates (a file lock under the home folder, apart from the rollout
scheduler's), so several server workers do not all run the monitors. Every pass is safe to run twice: the
lifecycle is driven by the stored state and the clock, and each notification is claimed by one sender.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import threading
import time
from pathlib import Path
from typing import IO, Any

from mloncall.alerts import notify, service
from mloncall.alerts.rules import parse_duration
from mloncall.context import Context
from mloncall.errors import InvalidInput

log = logging.getLogger("mloncall.alerts")

DEFAULT_INTERVAL = dt.timedelta(seconds=60)
LOCK_FILE = "alerts-scheduler.lock"


def configured_interval(ctx: Context) -> float:
    """`[alerts] evaluation_interval` in seconds (a duration such as `30s` or a number of seconds)."""
    raw = ctx.settings.section("alerts").get("evaluation_interval")
    if raw is None:
        return DEFAULT_INTERVAL.total_seconds()
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = float(raw)
    else:
        seconds = parse_duration(raw, allow_zero=False).total_seconds()
    if seconds <= 0:
        raise InvalidInput("[alerts] evaluation_interval must be longer than 0")
    return seconds


def run_once(
    ctx: Context,
    *,
    monitor: service.MonitorFn | None = None,
    sender: notify.Sender = notify.send,
    sleep: notify.Sleep = time.sleep,
) -> tuple[service.Evaluation, list[notify.DispatchResult]]:
    """Evaluate every rule once, then send what the pass (or anything earlier) queued."""
    evaluation = service.evaluate(ctx=ctx, monitor=monitor)
    for t in evaluation.transitions:
        log.info("alert #%s %s -> %s: %s", t.alert_id, t.from_state, t.to_state, t.reason)
    sent = notify.send_pending(ctx, sender=sender, sleep=sleep)
    return evaluation, sent


class Scheduler:
    """A daemon thread calling `run_once` every `interval` seconds while it holds the installation's lock."""

    def __init__(
        self, ctx: Context, interval: float | None = None, *, monitor: service.MonitorFn | None = None
    ) -> None:
        self.ctx = ctx
        self.interval = interval if interval is not None else configured_interval(ctx)
        self.monitor = monitor
        self.passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_file: IO[Any] | None = None

    def start(self) -> bool:
        """Start if no other process of this installation evaluates alerts; True if started."""
        path = Path(self.ctx.settings.home) / LOCK_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = path.open("a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._lock_file = fh
        self._thread = threading.Thread(target=self._loop, name="mloncall-alerts", daemon=True)
        self._thread.start()
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                run_once(self.ctx, monitor=self.monitor, sleep=self._stop.wait)
            except Exception:  # the next pass retries; one failure must not end the loop
                log.exception("alert evaluation pass failed")
            self.passes += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

"""Background work for alerts: evaluate the rules every `[alerts] evaluation_interval` (default 60s) and send
queued notifications.

Only one process per installation evaluates (a file lock under the home folder, apart from the rollout
scheduler's), so several server workers do not all run the monitors. Every pass is safe to run twice: the
lifecycle is driven by the stored state and the clock, and each notification is claimed by one sender.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from mloncall.alerts import evaluation, notify
from mloncall.stores.context import Context
from mloncall.stores.jobs import LockedLoop

log = logging.getLogger("mloncall.alerts")

DEFAULT_INTERVAL = dt.timedelta(seconds=60)
LOCK_FILE = "alerts-scheduler.lock"


def run_once(
    ctx: Context,
    *,
    monitor: evaluation.MonitorFn | None = None,
    sender: notify.Sender = notify.send,
    sleep: notify.Sleep = time.sleep,
) -> tuple[evaluation.Evaluation, list[notify.DispatchResult]]:
    """Evaluate every rule once, then send what the pass (or anything earlier) queued."""
    result = evaluation.evaluate(ctx=ctx, monitor=monitor)
    for t in result.transitions:
        log.info("alert #%s %s -> %s: %s", t.alert_id, t.from_state, t.to_state, t.reason)
    sent = notify.send_pending(ctx, sender=sender, sleep=sleep)
    return result, sent


class Scheduler(LockedLoop):
    """Evaluates the rules and sends notifications every `[alerts] evaluation_interval` (default 60s), in one
    process per installation."""

    name = "alerts"
    lock_file = LOCK_FILE
    setting = ("alerts", "evaluation_interval", DEFAULT_INTERVAL)

    def __init__(
        self, ctx: Context, interval: float | None = None, *, monitor: evaluation.MonitorFn | None = None
    ) -> None:
        super().__init__(ctx, interval)
        self.monitor = monitor

    def run_pass(self) -> None:
        run_once(self.ctx, monitor=self.monitor, sleep=self.wait)

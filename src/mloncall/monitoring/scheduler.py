"""Background work for monitoring in the server: every `[logs] summary_interval` (default 60s), write the
summaries of the minutes and hours that closed, compact the closed hours of the prediction log and expire
what is older than `[logs] retention` (`monitoring.jobs.run_pass`). One process per installation runs it."""

from __future__ import annotations

import datetime as dt
import logging

from mloncall.core import clock
from mloncall.monitoring import jobs
from mloncall.stores.jobs import LockedLoop

log = logging.getLogger("mloncall.monitoring")

DEFAULT_INTERVAL = dt.timedelta(seconds=60)
LOCK_FILE = "log-compaction.lock"


class Scheduler(LockedLoop):
    """Summaries, compaction and retention of the prediction log every `[logs] summary_interval` (default
    60s), in one process per installation."""

    name = "logs"
    lock_file = LOCK_FILE
    setting = ("logs", "summary_interval", DEFAULT_INTERVAL)

    def run_pass(self) -> None:
        report = jobs.run_pass(self.ctx, now=clock.now())
        if report.summaries_written or report.compaction.get("hours_compacted"):
            log.info("logs: %d summaries written, %s", report.summaries_written, report.compaction)

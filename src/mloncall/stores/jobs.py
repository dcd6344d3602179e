"""Background jobs: a daemon thread doing one pass every `interval` seconds while it holds a file lock.

The lock (under the installation's home) makes one process per installation run each job, so several
server workers do not duplicate the work; every pass is idempotent, so a second runner would be harmless.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import threading
from pathlib import Path
from typing import IO, Any, ClassVar

from mloncall.core.durations import parse_duration
from mloncall.stores.context import Context

log = logging.getLogger("mloncall.stores.jobs")


def interval_setting(ctx: Context, table: str, key: str, default: dt.timedelta) -> float:
    """A job's interval in seconds from `[table] key` (a duration such as `30s`, or a number of seconds),
    `default` when absent; zero, negative and malformed values are refused naming the setting."""
    raw = ctx.settings.section(table).get(key)
    return parse_duration(default if raw is None else raw, what=f"[{table}] {key}").total_seconds()


class LockedLoop:
    """Subclasses set `name`, `lock_file` and `setting`, and implement `run_pass`."""

    name = "job"
    lock_file = "job.lock"
    #: `(table, key, default)`: the setting the interval is read from when none is given.
    setting: ClassVar[tuple[str, str, dt.timedelta] | None] = None

    def __init__(self, ctx: Context, interval: float | None = None) -> None:
        self.ctx = ctx
        self.interval = interval if interval is not None else self.configured_interval(ctx)
        self.passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock: IO[Any] | None = None

    @classmethod
    def configured_interval(cls, ctx: Context) -> float:
        """The interval in seconds from `setting` (`[table] key`, else its default)."""
        if cls.setting is None:
            raise TypeError(f"{cls.__name__} reads no interval setting: give it an interval")
        table, key, default = cls.setting
        return interval_setting(ctx, table, key, default)

    def run_pass(self) -> None:
        raise NotImplementedError

    def start(self) -> bool:
        """Start unless another process of this installation runs the job; True if started."""
        path = Path(self.ctx.settings.home) / self.lock_file
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = path.open("a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._lock = fh
        self._thread = threading.Thread(target=self._loop, name=f"mloncall-{self.name}", daemon=True)
        self._thread.start()
        return True

    def wait(self, seconds: float) -> bool:
        """Sleep that ends early when the job stops (True then)."""
        return self._stop.wait(seconds)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_pass()
            except Exception:  # the next pass retries; one failure must not end the loop
                log.exception("%s pass failed", self.name)
            self.passes += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

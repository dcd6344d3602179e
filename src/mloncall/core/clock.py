"""The one clock: every timestamp and every duration check asks it, so tests move time without sleeping."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

UTC = dt.UTC

_now: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC)  # noqa: E731
_wall = True  # the wall clock is in use: `timestamp()` need not build a datetime


def now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return _now()


def timestamp() -> float:
    """The current time as seconds since the epoch (what `now().timestamp()` gives, without the datetime)."""
    return time.time() if _wall else _now().timestamp()


def set_clock(fn: Callable[[], dt.datetime] | None) -> None:
    """Replace the clock (tests); None restores the wall clock."""
    global _now, _wall
    _now = fn if fn is not None else (lambda: dt.datetime.now(UTC))
    _wall = fn is None


class FrozenClock:
    """A clock that only moves when told to."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.current = start or dt.datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> dt.datetime:
        return self.current

    def advance(self, **kwargs: float) -> dt.datetime:
        self.current = self.current + dt.timedelta(**kwargs)
        return self.current

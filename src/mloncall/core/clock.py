"""The one clock: every timestamp and every duration check asks it, so tests move time without sleeping."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

UTC = dt.UTC

_now: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC)  # noqa: E731


def now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return _now()


def set_clock(fn: Callable[[], dt.datetime] | None) -> None:
    """Replace the clock (tests); None restores the wall clock."""
    global _now
    _now = fn if fn is not None else (lambda: dt.datetime.now(UTC))


class FrozenClock:
    """A clock that only moves when told to."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.current = start or dt.datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> dt.datetime:
        return self.current

    def advance(self, **kwargs: float) -> dt.datetime:
        self.current = self.current + dt.timedelta(**kwargs)
        return self.current

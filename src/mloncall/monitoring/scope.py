"""What a monitor reads: one model's logs over a window, the versions registered for it, the merged summaries
(built once per evaluation), and the evidence of the log files read or skipped."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from mloncall.core import clock
from mloncall.core.errors import InvalidInput
from mloncall.monitoring.incremental import WindowSummary, window_summary
from mloncall.monitoring.reference import VersionInfo, versions_of
from mloncall.monitoring.summary import Grid, grids_for
from mloncall.stores import predlog as logs
from mloncall.stores.context import Context
from mloncall.stores.predlog import LogWindow, read_window

MODES = ("auto", "exact", "incremental")
#: Under "auto", windows at least this long are evaluated from summaries.
INCREMENTAL_MIN_WINDOW = dt.timedelta(minutes=2)
#: ... and hold at least this many rows.
INCREMENTAL_MIN_ROWS = 50_000


@dataclass(frozen=True)
class Scope:
    """What a monitor reads: one model's logs over [since, until), and the versions registered for it."""

    ctx: Context
    model: str
    since: dt.datetime
    until: dt.datetime
    versions: dict[int, VersionInfo]
    mode: str = "auto"
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def incremental(self) -> bool:
        if self.mode not in MODES:
            raise InvalidInput(f"unknown evaluation mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.mode != "auto":
            return self.mode == "incremental"
        if "incremental" not in self.cache:
            # small windows stay exact: short ones, and those with few rows (counted from footers)
            self.cache["incremental"] = (
                self.until - self.since >= INCREMENTAL_MIN_WINDOW
                and self.served(self.since, self.until).rows >= INCREMENTAL_MIN_ROWS
            )
        return bool(self.cache["incremental"])

    def grids(self) -> dict[int | None, Grid]:
        if "grids" not in self.cache:
            self.cache["grids"] = grids_for(self.ctx.store, self.versions)
        grids: dict[int | None, Grid] = self.cache["grids"]
        return grids

    def summary(self) -> WindowSummary:
        """The merged summary of the scope's window (built once per scope)."""
        if "summary" not in self.cache:
            self.cache["summary"] = window_summary(
                self.ctx.store, self.model, self.since, self.until, self.grids(), now=self.until
            )
        found: WindowSummary = self.cache["summary"]
        return found

    def predictions(
        self,
        columns: list[str],
        *,
        features: bool = False,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        synthetic: bool = True,
    ) -> LogWindow:
        """The prediction log over the scope (or [since, until)), with the feature columns if asked; without
        `synthetic`, the rows of synthetic requests (a load test's) left out."""
        return read_window(
            self.ctx.store, kind=logs.PREDICTIONS, model=self.model,
            since=self.since if since is None else since, until=self.until if until is None else until,
            columns=columns, prefixes=("f_",) if features else (), synthetic=synthetic,
        )  # fmt: skip

    def rejections(self) -> LogWindow:
        return read_window(
            self.ctx.store, kind=logs.REJECTIONS, model=self.model, since=self.since, until=self.until,
            columns=["reason", "field"],
        )  # fmt: skip

    def served(self, since: dt.datetime, until: dt.datetime, *, synthetic: bool = True) -> logs.RowCount:
        """How many predictions were logged in [since, until), without reading them (without `synthetic`,
        those of real requests: the files that may hold synthetic rows have their marks read)."""
        return logs.count_rows(
            self.ctx.store, kind=logs.PREDICTIONS, model=self.model, since=since, until=until,
            synthetic=synthetic,
        )  # fmt: skip


def scope_of(ctx: Context, model: str, window: Any, now: dt.datetime | None, mode: str = "auto") -> Scope:
    until = utc_until(now)
    since = until - check_window(window)
    return Scope(ctx, model, since, until, versions_of(ctx=ctx, model=model), mode)


def utc_until(now: dt.datetime | None) -> dt.datetime:
    when = now if now is not None else clock.now()
    if when.tzinfo is None:
        raise InvalidInput("now must be a timezone-aware datetime")
    return when.astimezone(dt.UTC)


def check_window(window: Any) -> dt.timedelta:
    if not isinstance(window, dt.timedelta) or window <= dt.timedelta(0):
        raise InvalidInput(f"the monitor window must be a positive duration, got {window!r}")
    return window


def logs_evidence(*windows: LogWindow | logs.RowCount) -> dict[str, Any]:
    files: dict[str, int] = {}
    skipped: list[dict[str, str]] = []
    for w in windows:
        kind = w.kind if isinstance(w, LogWindow) else "predictions"
        files[kind] = files.get(kind, 0) + w.files_read
        for s in w.skipped:
            entry = {"kind": kind, **s}
            if entry not in skipped:  # one file can straddle two windows a monitor reads
                skipped.append(entry)
    return {"files_read": files, "skipped_files": skipped}

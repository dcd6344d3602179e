"""Background work of monitoring: compact the closed hours of the log, expire old ones, and write the summaries
of every closed minute and hour (`monitoring.summary`) so monitors merge them instead of rereading rows.

Each step is idempotent: a summary is written only where none exists (a deleted one is written again from
the log, compacted or raw), and compaction commits through its manifest. The scheduler
(`monitoring.scheduler`) runs `run_pass` in the server.
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mloncall.core.durations import parse_duration
from mloncall.monitoring import labels
from mloncall.monitoring.incremental import MINUTE_US, closed_minute
from mloncall.monitoring.reference import versions_of
from mloncall.monitoring.summary import (
    COLUMNS,
    SUMMARIES,
    Grid,
    Summary,
    from_bytes,
    grids_for,
    hour_key,
    merge,
    minute_key,
    summarise,
    to_bytes,
)
from mloncall.stores import predlog as logs
from mloncall.stores.context import Context
from mloncall.stores.predlog import compact as compaction

log = logging.getLogger("mloncall.monitoring")

#: How far back a pass looks for closed minutes without a summary.
LOOKBACK = dt.timedelta(hours=48)
DEFAULT_RETENTION = dt.timedelta(days=30)
#: How far back labels are matched to predictions (accuracy windows longer than this read the log).
LABEL_LOOKBACK = dt.timedelta(hours=48)


@dataclass
class PassReport:
    compaction: dict[str, Any] = field(default_factory=dict)
    summaries_written: int = 0
    label_indexes: int = 0
    models: list[str] = field(default_factory=list)


def retention(ctx: Context) -> dt.timedelta:
    """`[logs] retention` (a duration, default 30d)."""
    raw = ctx.settings.section("logs").get("retention")
    return DEFAULT_RETENTION if raw is None else parse_duration(raw, what="[logs] retention")


def models_logged(ctx: Context) -> list[str]:
    """Every model with a prediction log."""
    names = set()
    for folder in compaction.hour_folders(ctx.store, logs.PREDICTIONS):
        names.add(folder.split("/")[1].removeprefix("model="))
    return sorted(names)


def run_pass(ctx: Context, *, now: dt.datetime, compact: bool = True) -> PassReport:
    """One background pass: compaction of the closed hours, summaries and label indexes, then retention."""
    report = PassReport(models=models_logged(ctx))
    if compact:  # first, so the summaries of closed hours read one sorted file instead of thousands
        done = compaction.compact(ctx.store, now=now)
        report.compaction = done.to_dict()
    closed_us = closed_minute(now) * MINUTE_US
    for model in report.models:
        try:
            report.summaries_written += summarise_model(ctx, model, now=now)
            report.label_indexes += labels.update_model(
                ctx.store, model, now=now, closed_us=closed_us, lookback=LABEL_LOOKBACK
            )
        except Exception:  # one model's failure must not stop the others
            log.exception("summaries of %s failed", model)
    if compact:
        done.expired = compaction.expire(ctx.store, now=now, keep=retention(ctx))
        done.expired += compaction.expire(
            ctx.store, now=now, keep=retention(ctx), kinds=[SUMMARIES, labels.LABELS]
        )
        report.compaction = done.to_dict()
    return report


def summarise_model(ctx: Context, model: str, *, now: dt.datetime, lookback: dt.timedelta = LOOKBACK) -> int:
    """Write every missing summary of a closed minute (and of a closed hour) within `lookback`."""
    closed = closed_minute(now)
    first_hour = logs.to_us(now - lookback) // logs.HOUR_US
    hours = sorted(
        h
        for h in (compaction.hour_of(f) for f in compaction.hour_folders(ctx.store, logs.PREDICTIONS, model))
        if first_hour <= h and h * 60 < closed
    )
    if not hours:
        return 0
    grids = grids_for(ctx.store, versions_of(ctx=ctx, model=model))
    written = 0
    for hour in hours:
        written += _summarise_hour(ctx, model, hour, closed, grids)
    return written


def _summarise_hour(ctx: Context, model: str, hour: int, closed: int, grids: dict[int | None, Grid]) -> int:
    folder = posixpath.dirname(hour_key(model, hour))
    existing = {posixpath.basename(k) for k in ctx.store.list(folder)}
    if posixpath.basename(hour_key(model, hour)) in existing:
        return 0
    end = min((hour + 1) * 60, closed)
    missing = [m for m in range(hour * 60, end) if posixpath.basename(minute_key(model, m)) not in existing]
    minutes: dict[int, Summary] = {}
    if missing:
        minutes = _fold_minutes(ctx, model, missing[0], missing[-1] + 1, grids)
        for m in missing:
            ctx.store.put_bytes(minute_key(model, m), to_bytes(minutes.get(m, {})))
    written = len(missing)
    if end == (hour + 1) * 60:  # the hour is closed: its summary merges its minutes'
        total: Summary = {}
        for m in range(hour * 60, end):
            part = minutes.get(m) if m in missing else from_bytes(ctx.store.get_bytes(minute_key(model, m)))
            merge(total, part or {})
        ctx.store.put_bytes(hour_key(model, hour), to_bytes(total))
        written += 1
    return written


def _fold_minutes(
    ctx: Context, model: str, first: int, last: int, grids: dict[int | None, Grid]
) -> dict[int, Summary]:
    """Summaries of the minutes [first, last), folded from the log one file (or row group) at a time."""
    out: dict[int, Summary] = {}
    for table in logs.iter_window(
        ctx.store, kind=logs.PREDICTIONS, model=model, since=logs.from_us(first * MINUTE_US),
        until=logs.from_us(last * MINUTE_US), columns=COLUMNS, prefixes=("f_",),
    ):  # fmt: skip
        minute = logs.ts_us(table) // MINUTE_US
        values = np.unique(minute)
        if values.size == 1:
            summarise(table, grids, out.setdefault(int(values[0]), {}))
            continue
        order = np.argsort(minute, kind="stable")
        sorted_minutes = minute[order]
        cuts = [*np.searchsorted(sorted_minutes, values, side="left").tolist(), len(order)]
        for i, m in enumerate(values.tolist()):
            rows = table.take(order[cuts[i] : cuts[i + 1]])
            summarise(rows, grids, out.setdefault(int(m), {}))
    return out

"""Reading a time window of the append-only Parquet logs (predictions, feedback, rejections) for monitors.

Reads the files `serving.logger` writes (`<kind>/model=<m>/date=YYYY-MM-DD/hour=HH/*.parquet`), but only
what a window needs: the hour partitions it overlaps, the files whose footer `ts` range overlaps it (footers
are cached by key: files are immutable once written), and only the requested columns. A file that cannot be
read (truncated, corrupt, vanished) is skipped, listed with the reason in the result, and counted in
`mloncall_monitor_log_files_skipped_total`; it never stops the evaluation.
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prometheus_client import CollectorRegistry, Counter

from mloncall.core.errors import StoreUnavailable
from mloncall.stores.artifacts import ArtifactStore

log = logging.getLogger("mloncall.monitoring.logs")

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
REJECTIONS = "rejections"
KINDS = (PREDICTIONS, FEEDBACK, REJECTIONS)
HOUR_US = 3_600_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_FOOTER_CACHE_SIZE = 200_000

#: Metrics of the monitors themselves; the server merges this registry into `/metrics`.
METRICS = CollectorRegistry(auto_describe=True)
FILES_SKIPPED = Counter(
    "mloncall_monitor_log_files_skipped",
    "Log files skipped by monitors because they could not be read (truncated or corrupt)",
    ["kind"],
    registry=METRICS,
)


def to_us(when: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact, no float rounding)."""
    if when.tzinfo is None:
        raise ValueError("naive datetime given where UTC is required")
    return (when - _EPOCH) // dt.timedelta(microseconds=1)


def from_us(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=int(us))


@dataclass(frozen=True)
class _Footer:
    num_rows: int
    names: tuple[str, ...]
    ts_min: int | None
    ts_max: int | None


@dataclass
class LogWindow:
    """The rows of one log with since <= ts < until, and what was read or skipped to get them."""

    kind: str
    since: dt.datetime
    until: dt.datetime
    table: pa.Table | None
    files_read: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return 0 if self.table is None else self.table.num_rows

    def has(self, column: str) -> bool:
        return self.table is not None and column in self.table.column_names

    def evidence(self) -> dict[str, Any]:
        return {"files_read": self.files_read, "skipped_files": list(self.skipped)}


@dataclass
class RowCount:
    """How many rows one log holds in a window, counted from footers where a file lies wholly inside it."""

    rows: int
    first_us: int | None
    files_read: int
    skipped: list[dict[str, str]]


_footers: OrderedDict[tuple[str, str, str], _Footer] = OrderedDict()
_footers_lock = threading.Lock()
_seen_bad: set[tuple[str, str]] = set()


def hour_prefixes(kind: str, model: str, since_us: int, until_us: int) -> list[str]:
    """The partition folders of every hour overlapping [since, until)."""
    first = since_us // HOUR_US
    last = (until_us - 1) // HOUR_US
    out = []
    for hour in range(first, last + 1):
        t = from_us(hour * HOUR_US)
        out.append(f"{kind}/model={model}/date={t:%Y-%m-%d}/hour={t:%H}")
    return out


def _listing(store: ArtifactStore, prefix: str) -> list[tuple[str, str]]:
    """(key, version) of the Parquet files under a prefix; the version (size and modification time) keys the
    footer cache, so a file replaced under the same name is read afresh."""
    base = posixpath.join(store.base, prefix)
    try:
        found = store.fs.find(base, detail=True)
    except FileNotFoundError:
        return []
    except Exception as exc:
        raise StoreUnavailable(f"could not list {store.url(prefix)}: {_reason(exc)}") from None
    start = len(store.base.rstrip("/")) + 1
    out = []
    for path, info in found.items():
        key = path[start:] if path.startswith(store.base) else path
        if not key.endswith(".parquet") or posixpath.basename(key).startswith(".tmp-"):
            continue
        stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or ""
        out.append((key, f"{info.get('size')}:{stamp}"))
    return sorted(out)


def _keys(store: ArtifactStore, kind: str, model: str, since_us: int, until_us: int) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    for prefix in hour_prefixes(kind, model, since_us, until_us):
        keys.extend(_listing(store, prefix))
    return keys


def _read(store: ArtifactStore, key: str, columns: list[str]) -> pa.Table:
    """Only the named columns of one file (a local path is memory-friendly; a remote file is streamed)."""
    path = posixpath.join(store.base, key)
    if store.is_local:
        return pq.ParquetFile(path).read(columns=columns)
    with store.fs.open(path, "rb") as fh:
        return pq.ParquetFile(fh).read(columns=columns)


def _metadata(store: ArtifactStore, key: str) -> Any:
    path = posixpath.join(store.base, key)
    if store.is_local:
        return pq.read_metadata(path)
    with store.fs.open(path, "rb") as fh:
        return pq.read_metadata(fh)


def _reason(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _skip(
    store: ArtifactStore, kind: str, key: str, exc: BaseException, skipped: list[dict[str, str]]
) -> None:
    """Report an unreadable file; it is logged and counted once, and listed on every read that meets it."""
    reason = _reason(exc)
    ident = (store.root, key)
    with _footers_lock:
        first_time = ident not in _seen_bad
        _seen_bad.add(ident)
    if first_time:
        log.warning("skipping unreadable %s log file %s: %s", kind, key, reason)
        FILES_SKIPPED.labels(kind=kind).inc()
    skipped.append({"file": key, "reason": reason})


def _footer(store: ArtifactStore, key: str, stamp: str) -> _Footer:
    cache_key = (store.root, key, stamp)
    with _footers_lock:
        hit = _footers.get(cache_key)
        if hit is not None:
            _footers.move_to_end(cache_key)
            return hit
    meta = _metadata(store, key)
    names = tuple(meta.schema.to_arrow_schema().names)
    ts_min: int | None = None
    ts_max: int | None = None
    if "ts" in names and meta.num_row_groups:
        j = names.index("ts")
        lows: list[int] = []
        highs: list[int] = []
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(j).statistics
            if stats is None or not stats.has_min_max or not isinstance(stats.min_raw, int):
                lows = highs = []
                break
            lows.append(stats.min_raw)
            highs.append(stats.max_raw)
        if lows:
            ts_min, ts_max = min(lows), max(highs)
    footer = _Footer(num_rows=meta.num_rows, names=names, ts_min=ts_min, ts_max=ts_max)
    with _footers_lock:
        _footers[cache_key] = footer
        if len(_footers) > _FOOTER_CACHE_SIZE:
            _footers.popitem(last=False)
    return footer


def _overlap(footer: _Footer, since_us: int, until_us: int) -> str:
    """'none', 'all' or 'some' of the file's rows fall in [since, until) (unknown stats: 'some')."""
    if footer.num_rows == 0:
        return "none"
    if footer.ts_min is None or footer.ts_max is None:
        return "some"
    if footer.ts_max < since_us or footer.ts_min >= until_us:
        return "none"
    if footer.ts_min >= since_us and footer.ts_max < until_us:
        return "all"
    return "some"


def ts_us(table: pa.Table) -> np.ndarray:
    """The ts column as int64 microseconds since the epoch."""
    col = table.column("ts")
    if pa.types.is_timestamp(col.type) and col.type.unit != "us":
        col = pc.cast(col, pa.timestamp("us", tz="UTC"))
    return np.asarray(pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _in_window(table: pa.Table, since_us: int, until_us: int) -> pa.Table:
    t = ts_us(table)
    return table.filter(pa.array((t >= since_us) & (t < until_us)))


def read_window(
    store: ArtifactStore,
    *,
    kind: str,
    model: str,
    since: dt.datetime,
    until: dt.datetime,
    columns: Sequence[str] | None = None,
    prefixes: Sequence[str] = (),
) -> LogWindow:
    """Rows of `kind` for `model` with since <= ts < until: the named columns plus every column starting with
    one of `prefixes` (all columns when both are empty). Unreadable files are skipped and listed."""
    since_us, until_us = to_us(since), to_us(until)
    result = LogWindow(kind=kind, since=since, until=until, table=None)
    if until_us <= since_us:
        return result
    wanted = set(columns or ())
    parts: list[pa.Table] = []
    for key, stamp in _keys(store, kind, model, since_us, until_us):
        try:
            footer = _footer(store, key, stamp)
            overlap = _overlap(footer, since_us, until_us)
            if overlap == "none":
                continue
            if wanted or prefixes:
                cols = [c for c in footer.names if c in wanted or c.startswith(tuple(prefixes))]
                if "ts" in footer.names and "ts" not in cols:
                    cols.append("ts")
            else:
                cols = list(footer.names)
            table = _read(store, key, cols)
        except Exception as exc:  # a bad file is reported, never fatal
            _skip(store, kind, key, exc, result.skipped)
            continue
        result.files_read += 1
        if "ts" not in table.column_names:
            _skip(store, kind, key, ValueError("the file has no ts column"), result.skipped)
            continue
        if overlap == "some":
            table = _in_window(table, since_us, until_us)
        if table.num_rows:
            parts.append(table)
    result.table = _concat(parts)
    return result


def _concat(parts: list[pa.Table]) -> pa.Table | None:
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    try:
        return pa.concat_tables(parts, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.concat_tables(parts, promote_options="permissive")


def count_rows(
    store: ArtifactStore, *, kind: str, model: str, since: dt.datetime, until: dt.datetime
) -> RowCount:
    """Rows with since <= ts < until, and the earliest ts among them: files wholly inside the window are
    counted from their footer alone, only files straddling an edge have their ts column read."""
    since_us, until_us = to_us(since), to_us(until)
    rows, files = 0, 0
    first: int | None = None
    skipped: list[dict[str, str]] = []
    if until_us <= since_us:
        return RowCount(0, None, 0, skipped)
    for key, stamp in _keys(store, kind, model, since_us, until_us):
        try:
            footer = _footer(store, key, stamp)
            overlap = _overlap(footer, since_us, until_us)
            if overlap == "none":
                continue
            low: int | None
            if overlap == "all" and footer.ts_min is not None:
                n, low = footer.num_rows, footer.ts_min
            else:
                t = ts_us(_read(store, key, ["ts"]))
                inside = t[(t >= since_us) & (t < until_us)]
                n, low = int(inside.size), (int(inside.min()) if inside.size else None)
        except Exception as exc:
            _skip(store, kind, key, exc, skipped)
            continue
        files += 1
        rows += n
        if low is not None:
            first = low if first is None else min(first, low)
    return RowCount(rows, first, files, skipped)


def clear_cache() -> None:
    """Forget cached footers (tests)."""
    with _footers_lock:
        _footers.clear()
        _seen_bad.clear()


def float_column(table: pa.Table, name: str) -> np.ndarray:
    """A column as float64 with NaN for nulls; all NaN when the table lacks it."""
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    column = table.column(name)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        column = pc.cast(column, pa.float64(), safe=False)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def error_mask(table: pa.Table) -> np.ndarray:
    """True for rows of failed requests (a non-null `error`); all False when the log has no error column."""
    if "error" not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    return np.asarray(pc.is_valid(table.column("error")).to_numpy(zero_copy_only=False), dtype=bool)


def string_counts(table: pa.Table | None, name: str, *, where: np.ndarray | None = None) -> dict[str, int]:
    """How often each value of a string column occurs (nulls as '(none)'), optionally among masked rows."""
    if table is None or name not in table.column_names or table.num_rows == 0:
        return {}
    column = table.column(name)
    if where is not None:
        column = column.filter(pa.array(where))
    counts = pc.value_counts(pc.fill_null(pc.cast(column, pa.string()), "(none)"))
    return {
        str(v): int(c) for v, c in zip(counts.field(0).to_pylist(), counts.field(1).to_pylist(), strict=True)
    }

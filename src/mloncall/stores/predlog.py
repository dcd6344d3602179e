"""The prediction log: its kinds, the writer serving uses and the one reader everyone else uses.

**Kinds.** Three append-only logs share one layout, `<kind>/model=<m>/date=YYYY-MM-DD/hour=HH/*.parquet`:
`predictions` (id, ts, model, version, route, f_<feature>... (float64), label, probabilities
(list<float32>, the version's class order), latency_ms, flags (list<string>), shadow_version, shadow_label,
request_id, status (200), error (null)), `feedback` (prediction_id, label, ts, model) and `rejections`
(ts, model, reason, field). A request that reached a version and then failed (its input did not fit that
version's signature, or the model raised) is one prediction row with its status and error, no features and
no label, so error rates compare per version.

**Writer.** `PredictionLog` buffers rows in memory; each flush writes one file per (model, hour) to
`<kind>/model=<m>/<partition>/<writer-id>-<seq>.parquet` through the artifact store, so a file appears whole
or not at all. Each worker is its own writer, so no lock is shared between processes. A background thread
flushes every `flush_seconds` or as soon as `flush_rows` rows wait; `close()` flushes the rest, so a
graceful shutdown loses nothing that was served.

**Reader.** `read_window` (and `read_log`, `count_rows` over the same scan) reads only what a window needs:
the hour partitions it overlaps, the files whose footer `ts` range overlaps it (footers are cached by key:
files are immutable once written), and only the requested columns. A file that cannot be read (truncated,
corrupt, vanished) is skipped, listed with the reason in the result, and counted in
`mloncall_monitor_log_files_skipped_total`; it never stops a reader.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import posixpath
import re
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prometheus_client import CollectorRegistry, Counter

from mloncall.core.errors import StoreUnavailable
from mloncall.stores.artifacts import ArtifactStore

log = logging.getLogger("mloncall.stores.predlog")

# --- kinds -----------------------------------------------------------------------------------------------

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
#: Requests refused by input validation (missing or unknown feature, out of range under "reject", ...):
#: ts, model, reason, field. The data-quality monitors read them (runbook 6).
REJECTIONS = "rejections"
KINDS = (PREDICTIONS, FEEDBACK, REJECTIONS)

HOUR_US = 3_600_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
_TS = pa.timestamp("us", tz="UTC")
_PARTITION = re.compile(r"date=\d{4}-\d{2}-\d{2}/hour=\d{2}")
_FOOTER_CACHE_SIZE = 200_000
#: The bounds of a read with no window (`read_log`): before and after any logged row.
_OPEN_SINCE = -(1 << 62)
_OPEN_UNTIL = 1 << 62

#: Metrics of the log readers; the server merges this registry into `/metrics`.
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


def partition(hour: int) -> str:
    """`date=YYYY-MM-DD/hour=HH` of an hour counted from the epoch."""
    t = time.gmtime(hour * 3600)
    return f"date={t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}/hour={t.tm_hour:02d}"


# --- writer ----------------------------------------------------------------------------------------------


#: What a request shares by all its rows: (rows, ts, version, route, latency_ms, shadow_version, request_id,
#: status, error); buffered once a request, spread over its rows when the group is written.
_Request = tuple[int, float, int, str, float, int | None, str | None, int, str | None]


class _Rows:
    """Buffered rows of one (model, hour, feature list): cheap to append and to flush.

    Per-row values are kept column by column; what a request shares by all its rows is one `_Request` tuple,
    so the hot path appends one tuple, not ten columns.
    """

    __slots__ = ("X", "flags", "ids", "labels", "probabilities", "requests", "shadow_label")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.X: list[list[float]] = []
        self.labels: list[str | None] = []
        self.probabilities: list[list[float] | None] = []
        self.flags: list[list[str]] = []
        self.shadow_label: list[str | None] = []
        self.requests: list[_Request] = []


_NO_FLAGS: list[str] = []  # shared and never mutated


@dataclass(slots=True)
class FeedbackBatch:
    ts: float
    model: str
    ids: list[str]
    labels: list[str]


def new_writer_id() -> str:
    """Host, process and a random suffix: unique per worker, readable in a file listing."""
    host = _UNSAFE.sub("-", socket.gethostname())[:40].strip("-") or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


_GroupKey = tuple[str, int, tuple[str, ...]]


class PredictionLog:
    """One writer's buffer and its flusher thread."""

    def __init__(
        self,
        store: ArtifactStore,
        *,
        writer_id: str | None = None,
        flush_seconds: float = 1.0,
        flush_rows: int = 20_000,
    ) -> None:
        self.store = store
        self.writer_id = writer_id or new_writer_id()
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._groups: dict[_GroupKey, _Rows] = {}
        self._feedback: list[FeedbackBatch] = []
        self._rejections: list[tuple[float, str, str, str | None]] = []
        self._unwritten: list[tuple[str, pa.Table]] = []
        self._rows = 0
        self._seq = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.rows_written = 0
        self.files_written = 0
        self.last_error: str | None = None

    # --- hot path ---

    def record(
        self,
        *,
        ts: float,
        model: str,
        version: int,
        route: str,
        features: tuple[str, ...],
        X: np.ndarray,
        ids: list[str],
        labels: list[str],
        probabilities: np.ndarray,
        latency_ms: float,
        flags: list[list[str]] | None,
        shadow_version: int | None,
        shadow_labels: list[str] | None,
        request_id: str | None,
    ) -> None:
        """Buffer one request's rows (called before the response is sent)."""
        n = len(ids)
        rows_x = X.tolist()
        rows_p = probabilities.tolist()
        key = (model, int(ts // 3600), features)
        with self._lock:
            g = self._groups.get(key)
            if g is None:
                g = self._groups[key] = _Rows()
            g.ids.extend(ids)
            g.X.extend(rows_x)
            g.labels.extend(labels)
            g.probabilities.extend(rows_p)
            if n == 1:
                g.flags.append(flags[0] if flags is not None else _NO_FLAGS)
                g.shadow_label.append(shadow_labels[0] if shadow_labels is not None else None)
            else:
                g.flags.extend(flags if flags is not None else repeat(_NO_FLAGS, n))
                g.shadow_label.extend(shadow_labels if shadow_labels is not None else repeat(None, n))
            g.requests.append((n, ts, version, route, latency_ms, shadow_version, request_id, 200, None))
            self._rows += n
            full = self._rows >= self.flush_rows
        if full:
            self._wake.set()

    def record_error(
        self,
        *,
        ts: float,
        model: str,
        version: int,
        route: str,
        status: int,
        error: str,
        latency_ms: float,
        request_id: str | None,
    ) -> None:
        """Buffer one failed request that had been routed to a version: a row with no features or label."""
        key = (model, int(ts // 3600), ())
        with self._lock:
            g = self._groups.get(key)
            if g is None:
                g = self._groups[key] = _Rows()
            g.ids.append(str(uuid.uuid4()))
            g.labels.append(None)
            g.probabilities.append(None)
            g.flags.append(_NO_FLAGS)
            g.shadow_label.append(None)
            g.requests.append((1, ts, version, route, latency_ms, None, request_id, status, error))
            self._rows += 1

    def record_feedback(self, batch: FeedbackBatch) -> None:
        with self._lock:
            self._feedback.append(batch)

    def record_rejection(self, *, ts: float, model: str, reason: str, field: str | None) -> None:
        """A request for `model` that validation refused, with the reason and the field it named."""
        with self._lock:
            self._rejections.append((ts, model, reason, field))

    @property
    def pending_rows(self) -> int:
        """Prediction rows served but not yet written."""
        return self._rows + sum(t.num_rows for key, t in self._unwritten if key.startswith(PREDICTIONS))

    # --- background ---

    def start(self) -> None:
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="mloncall-prediction-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stop:
                break
            try:
                self.flush()
            except Exception:  # what was not written is kept; the next flush tries again
                log.exception("prediction log flush failed")

    def close(self, attempts: int = 3) -> None:
        """Stop the flusher and write everything still buffered."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for attempt in range(attempts):
            try:
                self.flush()
                return
            except Exception:
                log.exception("final prediction log flush failed (attempt %d of %d)", attempt + 1, attempts)
                time.sleep(0.2 * (attempt + 1))
        log.error("prediction log: %d rows could not be written to %s", self.pending_rows, self.store.root)

    def flush(self) -> int:
        """Write every buffered row now, one file per (model, hour); returns the prediction rows written."""
        with self._flush_lock:
            with self._lock:
                groups, self._groups = self._groups, {}
                feedback, self._feedback = self._feedback, []
                rejections, self._rejections = self._rejections, []
                self._rows = 0
            tables: dict[str, list[pa.Table]] = {}
            for (model, hour, features), rows in groups.items():
                prefix = f"{PREDICTIONS}/model={model}/{partition(hour)}"
                tables.setdefault(prefix, []).append(prediction_table(model, features, rows))
            fgroups: dict[str, list[FeedbackBatch]] = {}
            for f in feedback:
                fgroups.setdefault(f"{FEEDBACK}/model={f.model}/{partition(int(f.ts // 3600))}", []).append(f)
            todo = self._unwritten + [
                (prefix, parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="default"))
                for prefix, parts in tables.items()
            ]
            todo += [(prefix, feedback_table(batches)) for prefix, batches in fgroups.items()]
            rgroups: dict[str, list[tuple[float, str, str, str | None]]] = {}
            for r in rejections:
                rgroups.setdefault(f"{REJECTIONS}/model={r[1]}/{partition(int(r[0] // 3600))}", []).append(r)
            todo += [(prefix, rejection_table(rows)) for prefix, rows in rgroups.items()]
            self._unwritten = []
            written = 0
            for i, (prefix, table) in enumerate(todo):
                try:
                    self._write(prefix, table)
                except BaseException as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._unwritten = todo[i:]
                    raise
                if prefix.startswith(PREDICTIONS):
                    written += table.num_rows
            self.rows_written += written
            return written

    def _write(self, prefix: str, table: pa.Table) -> None:
        self._seq += 1
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        self.store.put_bytes(f"{prefix}/{self.writer_id}-{self._seq:08d}.parquet", buf.getvalue())
        self.files_written += 1


def rejection_table(rows: list[tuple[float, str, str, str | None]]) -> pa.Table:
    """The Arrow table of refused requests."""
    ts = np.asarray([r[0] for r in rows], dtype=np.float64)
    return pa.table(
        {
            "ts": pa.array(np.round(ts * 1e6).astype(np.int64), pa.int64()).cast(_TS),
            "model": pa.array([r[1] for r in rows], pa.string()),
            "reason": pa.array([r[2] for r in rows], pa.string()),
            "field": pa.array([r[3] for r in rows], pa.string()),
        }
    )


def prediction_table(model: str, features: tuple[str, ...], rows: _Rows) -> pa.Table:
    """The Arrow table of one group's buffered rows."""
    n = len(rows.ids)
    X = np.asarray(rows.X, dtype=np.float64).reshape(len(rows.X), len(features))
    counts, ts, version, route, latency_ms, shadow_version, request_id, status, error = (
        zip(*rows.requests, strict=True) if rows.requests else ((),) * 9
    )
    # each request's values, repeated over its rows (requests of one row, the usual case, need no take)
    spread = None if counts.count(1) == len(counts) else pa.array(np.repeat(np.arange(len(counts)), counts))

    def per_row(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
        array = pa.array(values, kind)
        return array if spread is None else array.take(spread)

    ts_s = np.asarray(ts) if spread is None else np.repeat(np.asarray(ts), counts)
    cols: dict[str, pa.Array] = {
        "id": pa.array(rows.ids, pa.string()),
        "ts": pa.array(np.round(ts_s * 1e6).astype(np.int64), pa.int64()).cast(_TS),
        "model": pa.array([model] * n, pa.string()),
        "version": per_row(version, pa.int32()),
        "route": per_row(route, pa.string()),
    }
    for j, f in enumerate(features):
        cols[f"f_{f}"] = pa.array(np.ascontiguousarray(X[:, j]), pa.float64())
    cols["label"] = pa.array(rows.labels, pa.string())
    cols["probabilities"] = pa.array(rows.probabilities, pa.list_(pa.float32()))
    cols["latency_ms"] = per_row(latency_ms, pa.float64())
    cols["flags"] = pa.array(rows.flags, pa.list_(pa.string()))
    cols["shadow_version"] = per_row(shadow_version, pa.int32())
    cols["shadow_label"] = pa.array(rows.shadow_label, pa.string())
    cols["request_id"] = per_row(request_id, pa.string())
    cols["status"] = per_row(status, pa.int16())
    cols["error"] = per_row(error, pa.string())
    return pa.table(cols)


def feedback_table(batches: list[FeedbackBatch]) -> pa.Table:
    counts = [len(b.ids) for b in batches]
    ts = np.repeat(np.asarray([b.ts for b in batches], dtype=np.float64), counts)
    return pa.table(
        {
            "prediction_id": pa.array(list(chain.from_iterable(b.ids for b in batches)), pa.string()),
            "label": pa.array(list(chain.from_iterable(b.labels for b in batches)), pa.string()),
            "ts": pa.array(np.round(ts * 1e6).astype(np.int64), pa.int64()).cast(_TS),
            "model": pa.array(
                list(chain.from_iterable(repeat(b.model, n) for b, n in zip(batches, counts, strict=True))),
                pa.string(),
            ),
        }
    )


# --- reader ----------------------------------------------------------------------------------------------


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
    """(key, version) of the files that may hold rows in [since, until): a bounded window lists only its hour
    partitions; an open one lists the model's folder and keeps the partitions from `since`'s hour on."""
    if until_us != _OPEN_UNTIL:
        keys: list[tuple[str, str]] = []
        for prefix in hour_prefixes(kind, model, since_us, until_us):
            keys.extend(_listing(store, prefix))
        return keys
    keys = _listing(store, f"{kind}/model={model}")
    if since_us != _OPEN_SINCE:
        first = partition(since_us // HOUR_US)
        keys = [(k, stamp) for k, stamp in keys if _partition_of(k) >= first]
    return keys


def _partition_of(key: str) -> str:
    match = _PARTITION.search(key)
    return match.group(0) if match else ""


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


def _overlapping(
    store: ArtifactStore,
    kind: str,
    model: str,
    since_us: int,
    until_us: int,
    skipped: list[dict[str, str]],
) -> Iterator[tuple[str, _Footer, str]]:
    """(key, footer, overlap) of every file with rows in the window; a file whose footer cannot be read is
    skipped and listed."""
    for key, stamp in _keys(store, kind, model, since_us, until_us):
        try:
            footer = _footer(store, key, stamp)
        except Exception as exc:  # a bad file is reported, never fatal
            _skip(store, kind, key, exc, skipped)
            continue
        overlap = _overlap(footer, since_us, until_us)
        if overlap != "none":
            yield key, footer, overlap


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
    result = LogWindow(kind=kind, since=since, until=until, table=None)
    since_us, until_us = to_us(since), to_us(until)
    if until_us > since_us:
        result.table, result.files_read = _scan(
            store, kind, model, since_us, until_us, columns=columns, prefixes=prefixes, skipped=result.skipped
        )
    return result


def read_log(
    store: ArtifactStore, kind: str, model: str, *, since: dt.datetime | None = None
) -> pa.Table | None:
    """Every row logged for a model, or None if there is none; with `since`, only the hour partitions from
    its hour on are read, and only rows at or after it kept. Unreadable files are skipped as by
    `read_window` (the same scan)."""
    since_us = _OPEN_SINCE if since is None else to_us(since)
    table, _ = _scan(store, kind, model, since_us, _OPEN_UNTIL, columns=None, prefixes=(), skipped=[])
    return table


def _scan(
    store: ArtifactStore,
    kind: str,
    model: str,
    since_us: int,
    until_us: int,
    *,
    columns: Sequence[str] | None,
    prefixes: Sequence[str],
    skipped: list[dict[str, str]],
) -> tuple[pa.Table | None, int]:
    """The rows of one log in [since, until) and how many files were read: the one code path that reads log
    files, skipping, listing and counting the unreadable ones."""
    wanted = set(columns or ())
    parts: list[pa.Table] = []
    files_read = 0
    for key, footer, overlap in _overlapping(store, kind, model, since_us, until_us, skipped):
        if wanted or prefixes:
            cols = [c for c in footer.names if c in wanted or c.startswith(tuple(prefixes))]
            if "ts" in footer.names and "ts" not in cols:
                cols.append("ts")
        else:
            cols = list(footer.names)
        try:
            table = _read(store, key, cols)
        except Exception as exc:  # a bad file is reported, never fatal
            _skip(store, kind, key, exc, skipped)
            continue
        files_read += 1
        if "ts" not in table.column_names:
            _skip(store, kind, key, ValueError("the file has no ts column"), skipped)
            continue
        if overlap == "some":
            table = _in_window(table, since_us, until_us)
        if table.num_rows:
            parts.append(table)
    return _concat(parts), files_read


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
    count = RowCount(0, None, 0, [])
    if until_us <= since_us:
        return count
    for key, footer, overlap in _overlapping(store, kind, model, since_us, until_us, count.skipped):
        low: int | None
        if overlap == "all" and footer.ts_min is not None:
            n, low = footer.num_rows, footer.ts_min
        else:
            try:
                t = ts_us(_read(store, key, ["ts"]))
            except Exception as exc:
                _skip(store, kind, key, exc, count.skipped)
                continue
            inside = t[(t >= since_us) & (t < until_us)]
            n, low = int(inside.size), (int(inside.min()) if inside.size else None)
        count.files_read += 1
        count.rows += n
        if low is not None:
            count.first_us = low if count.first_us is None else min(count.first_us, low)
    return count


def clear_cache() -> None:
    """Forget cached footers (tests)."""
    with _footers_lock:
        _footers.clear()
        _seen_bad.clear()

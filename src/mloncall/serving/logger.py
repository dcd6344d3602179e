"""The prediction and feedback logs: buffered in memory, written as append-only Parquet files.

Each flush writes one file per (model, hour) to
`predictions/model=<m>/date=YYYY-MM-DD/hour=HH/<writer-id>-<seq>.parquet` (and `feedback/...` alike)
through the artifact store, so a file appears whole or not at all. Each worker is its own writer, so no
lock is shared between processes. A background thread flushes every `flush_seconds` or as soon as
`flush_rows` rows wait; `close()` flushes the rest, so a graceful shutdown loses nothing that was served.

Prediction columns: id, ts, model, version, route, f_<feature>... (float64), label, probabilities
(list<float32>, the version's class order), latency_ms, flags (list<string>), shadow_version, shadow_label,
request_id, status (200), error (null). A request that reached a version and then failed (its input did not
fit that version's signature, or the model raised) is one row with its status and error, no features and
no label, so error rates compare per version. Feedback columns: prediction_id, label, ts, model.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from itertools import chain, repeat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mloncall.stores.artifacts import ArtifactStore

log = logging.getLogger("mloncall.serving.logger")

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
#: Requests refused by input validation (missing or unknown feature, out of range under "reject", ...):
#: ts, model, reason, field. The data-quality monitors read them (runbook 6).
REJECTIONS = "rejections"
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
_TS = pa.timestamp("us", tz="UTC")
_PARTITION = re.compile(r"date=\d{4}-\d{2}-\d{2}/hour=\d{2}")


class _Rows:
    """Buffered rows of one (model, hour, feature list), column by column: cheap to append and to flush."""

    __slots__ = (
        "X", "error", "flags", "ids", "labels", "latency_ms", "probabilities", "request_id", "route",
        "shadow_label", "shadow_version", "status", "ts", "version",
    )  # fmt: skip

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.ts: list[float] = []
        self.version: list[int] = []
        self.route: list[str] = []
        self.X: list[list[float]] = []
        self.labels: list[str | None] = []
        self.probabilities: list[list[float] | None] = []
        self.latency_ms: list[float] = []
        self.flags: list[list[str]] = []
        self.shadow_version: list[int | None] = []
        self.shadow_label: list[str | None] = []
        self.request_id: list[str | None] = []
        self.status: list[int] = []
        self.error: list[str | None] = []


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


def partition(hour: int) -> str:
    """`date=YYYY-MM-DD/hour=HH` of an hour counted from the epoch."""
    t = time.gmtime(hour * 3600)
    return f"date={t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}/hour={t.tm_hour:02d}"


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
                g.ts.append(ts)
                g.version.append(version)
                g.route.append(route)
                g.latency_ms.append(latency_ms)
                g.flags.append(flags[0] if flags is not None else _NO_FLAGS)
                g.shadow_version.append(shadow_version)
                g.shadow_label.append(shadow_labels[0] if shadow_labels is not None else None)
                g.request_id.append(request_id)
                g.status.append(200)
                g.error.append(None)
            else:
                g.ts.extend(repeat(ts, n))
                g.version.extend(repeat(version, n))
                g.route.extend(repeat(route, n))
                g.latency_ms.extend(repeat(latency_ms, n))
                g.flags.extend(flags if flags is not None else repeat(_NO_FLAGS, n))
                g.shadow_version.extend(repeat(shadow_version, n))
                g.shadow_label.extend(shadow_labels if shadow_labels is not None else repeat(None, n))
                g.request_id.extend(repeat(request_id, n))
                g.status.extend(repeat(200, n))
                g.error.extend(repeat(None, n))
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
            g.ts.append(ts)
            g.version.append(version)
            g.route.append(route)
            g.labels.append(None)
            g.probabilities.append(None)
            g.latency_ms.append(latency_ms)
            g.flags.append(_NO_FLAGS)
            g.shadow_version.append(None)
            g.shadow_label.append(None)
            g.request_id.append(request_id)
            g.status.append(status)
            g.error.append(error)
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
    cols: dict[str, pa.Array] = {
        "id": pa.array(rows.ids, pa.string()),
        "ts": pa.array(np.round(np.asarray(rows.ts) * 1e6).astype(np.int64), pa.int64()).cast(_TS),
        "model": pa.array([model] * n, pa.string()),
        "version": pa.array(rows.version, pa.int32()),
        "route": pa.array(rows.route, pa.string()),
    }
    for j, f in enumerate(features):
        cols[f"f_{f}"] = pa.array(np.ascontiguousarray(X[:, j]), pa.float64())
    cols["label"] = pa.array(rows.labels, pa.string())
    cols["probabilities"] = pa.array(rows.probabilities, pa.list_(pa.float32()))
    cols["latency_ms"] = pa.array(rows.latency_ms, pa.float64())
    cols["flags"] = pa.array(rows.flags, pa.list_(pa.string()))
    cols["shadow_version"] = pa.array(rows.shadow_version, pa.int32())
    cols["shadow_label"] = pa.array(rows.shadow_label, pa.string())
    cols["request_id"] = pa.array(rows.request_id, pa.string())
    cols["status"] = pa.array(rows.status, pa.int16())
    cols["error"] = pa.array(rows.error, pa.string())
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


def read_log(
    store: ArtifactStore, kind: str, model: str, *, since: dt.datetime | None = None
) -> pa.Table | None:
    """Every row logged for a model (`kind` is 'predictions' or 'feedback'), or None if there is none.

    With `since`, only the hour partitions from its hour on are read, and only rows at or after it kept.
    """
    keys = [k for k in store.list(f"{kind}/model={model}") if k.endswith(".parquet")]
    if since is not None:
        first = partition(int(since.timestamp() // 3600))
        keys = [k for k in keys if _partition_of(k) >= first]
    if not keys:
        return None
    tables = [pq.read_table(io.BytesIO(store.get_bytes(k))) for k in keys]
    table = pa.concat_tables(tables, promote_options="default")
    if since is not None:
        table = table.filter(pc.greater_equal(table.column("ts"), pa.scalar(since, _TS)))
    return table if table.num_rows else None


def _partition_of(key: str) -> str:
    match = _PARTITION.search(key)
    return match.group(0) if match else ""

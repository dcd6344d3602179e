"""The prediction log's writer: `PredictionLog` buffers what serving answers and flushes it whole (see `mloncall.stores.predlog`)."""

from __future__ import annotations

import io
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.predlog.kinds import (
    FEEDBACK,
    PREDICTIONS,
    REJECTIONS,
    SYNTHETIC,
    TS_TYPE,
    UNSAFE_NAME,
    log,
    partition,
)

# --- writer ----------------------------------------------------------------------------------------------


#: What a request shares by all its rows: (rows, ts, version, route, latency_ms, shadow_version, request_id,
#: status, error, synthetic); buffered once a request, spread over its rows when the group is written.
_Request = tuple[int, float, int, str, float, int | None, str | None, int, str | None, bool]


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

    def chunks(self, most: int) -> Iterator[_Rows]:
        """These rows as consecutive groups of whole requests, each of about `most` rows at the most (a
        request of more rows is a group of its own)."""
        if len(self.ids) <= most:
            yield self
            return
        first_request = first_row = rows = 0
        for i, request in enumerate(self.requests):
            if rows and rows + request[0] > most:
                yield self._slice(first_request, i, first_row, first_row + rows)
                first_request, first_row, rows = i, first_row + rows, 0
            rows += request[0]
        yield self._slice(first_request, len(self.requests), first_row, first_row + rows)

    def _slice(self, q0: int, q1: int, r0: int, r1: int) -> _Rows:
        part = _Rows()
        part.ids, part.X, part.labels = self.ids[r0:r1], self.X[r0:r1], self.labels[r0:r1]
        part.probabilities, part.flags = self.probabilities[r0:r1], self.flags[r0:r1]
        part.shadow_label, part.requests = self.shadow_label[r0:r1], self.requests[q0:q1]
        return part


#: Rows turned into Arrow at once by the flush (see `PredictionLog.flush`).
CHUNK_ROWS = 1024

_NO_FLAGS: list[str] = []  # shared and never mutated


@dataclass(slots=True)
class FeedbackBatch:
    ts: float
    model: str
    ids: list[str]
    labels: list[str]


def new_writer_id() -> str:
    """Host, process and a random suffix: unique per worker, readable in a file listing."""
    host = UNSAFE_NAME.sub("-", socket.gethostname())[:40].strip("-") or "host"
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
        synthetic: bool = False,
    ) -> None:
        """Buffer one request's rows (called before the response is sent); `synthetic` marks a request sent
        by a load test, which the monitors of the inputs leave out."""
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
            g.requests.append(
                (n, ts, version, route, latency_ms, shadow_version, request_id, 200, None, synthetic)
            )
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
        synthetic: bool = False,
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
            g.requests.append((1, ts, version, route, latency_ms, None, request_id, status, error, synthetic))
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
                for part in rows.chunks(CHUNK_ROWS):
                    tables.setdefault(prefix, []).append(prediction_table(model, features, part))
                    # Let the serving thread in between chunks: turning a second's rows from Python objects
                    # into Arrow holds the interpreter lock in calls of several milliseconds, which the event
                    # loop waited out (the worker's p99).
                    time.sleep(0)
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
            "ts": pa.array(np.round(ts * 1e6).astype(np.int64), pa.int64()).cast(TS_TYPE),
            "model": pa.array([r[1] for r in rows], pa.string()),
            "reason": pa.array([r[2] for r in rows], pa.string()),
            "field": pa.array([r[3] for r in rows], pa.string()),
        }
    )


def prediction_table(model: str, features: tuple[str, ...], rows: _Rows) -> pa.Table:
    """The Arrow table of one group's buffered rows."""
    n = len(rows.ids)
    X = np.asarray(rows.X, dtype=np.float64).reshape(len(rows.X), len(features))
    counts, ts, version, route, latency_ms, shadow_version, request_id, status, error, synthetic = (
        zip(*rows.requests, strict=True) if rows.requests else ((),) * 10
    )
    # each request's values, repeated over its rows (requests of one row, the usual case, need no take)
    spread = None if counts.count(1) == len(counts) else pa.array(np.repeat(np.arange(len(counts)), counts))

    def per_row(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
        array = pa.array(values, kind)
        return array if spread is None else array.take(spread)

    ts_s = np.asarray(ts) if spread is None else np.repeat(np.asarray(ts), counts)
    cols: dict[str, pa.Array] = {
        "id": pa.array(rows.ids, pa.string()),
        "ts": pa.array(np.round(ts_s * 1e6).astype(np.int64), pa.int64()).cast(TS_TYPE),
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
    cols[SYNTHETIC] = per_row(synthetic, pa.bool_())
    return pa.table(cols)


def feedback_table(batches: list[FeedbackBatch]) -> pa.Table:
    counts = [len(b.ids) for b in batches]
    ts = np.repeat(np.asarray([b.ts for b in batches], dtype=np.float64), counts)
    return pa.table(
        {
            "prediction_id": pa.array(list(chain.from_iterable(b.ids for b in batches)), pa.string()),
            "label": pa.array(list(chain.from_iterable(b.labels for b in batches)), pa.string()),
            "ts": pa.array(np.round(ts * 1e6).astype(np.int64), pa.int64()).cast(TS_TYPE),
            "model": pa.array(
                list(chain.from_iterable(repeat(b.model, n) for b, n in zip(batches, counts, strict=True))),
                pa.string(),
            ),
        }
    )

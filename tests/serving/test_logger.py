"""The prediction log: partitioned append-only Parquet, one file per writer per flush, nothing lost."""

from __future__ import annotations

import time
from typing import Any

import duckdb
import numpy as np
import pytest

from mloncall.core.errors import StoreUnavailable
from mloncall.stores.context import Context
from mloncall.stores.predlog import FeedbackBatch, PredictionLog, read_log, writer

HOUR = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def batch(
    ts: float, n: int = 2, model: str = "iris", features: tuple[str, ...] = ("a", "b"), **kw: Any
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "ts": ts, "model": model, "version": 1, "route": "stable", "features": features,
        "X": np.arange(n * len(features), dtype=np.float64).reshape(n, len(features)),
        "ids": [f"id-{ts}-{i}" for i in range(n)], "labels": ["x"] * n,
        "probabilities": np.full((n, 2), 0.5, np.float32), "latency_ms": 0.5, "flags": None,
        "shadow_version": None, "shadow_labels": None, "request_id": None,
    }  # fmt: skip
    values.update(kw)
    return values


def test_one_file_per_model_and_hour_per_flush(ctx: Context) -> None:
    log = PredictionLog(ctx.store, writer_id="w1")
    log.record(**batch(HOUR + 10))
    log.record(**batch(HOUR + 20, flags=[["out_of_range:a"], []], shadow_version=2, shadow_labels=["y", "x"]))
    log.record(**batch(HOUR + 3600 + 5, n=1))
    log.record(**batch(HOUR + 30, model="other"))
    log.record_feedback(FeedbackBatch(ts=HOUR, model="iris", ids=["id-1"], labels=["x"]))
    assert log.flush() == 7
    keys = ctx.store.list("predictions") + ctx.store.list("feedback")
    assert keys == [
        "predictions/model=iris/date=2026-01-01/hour=00/w1-00000001.parquet",
        "predictions/model=iris/date=2026-01-01/hour=01/w1-00000002.parquet",
        "predictions/model=other/date=2026-01-01/hour=00/w1-00000003.parquet",
        "feedback/model=iris/date=2026-01-01/hour=00/w1-00000004.parquet",
    ]
    table = read_log(ctx.store, "predictions", "iris")
    assert table is not None and table.num_rows == 5
    rows = table.to_pylist()
    assert (
        rows[2]["flags"] == ["out_of_range:a"]
        and rows[2]["shadow_label"] == "y"
        and rows[2]["shadow_version"] == 2
    )
    assert rows[0]["probabilities"] == [0.5, 0.5] and rows[0]["f_b"] == 1.0
    assert log.flush() == 0 and len(ctx.store.list("predictions")) == 3  # an empty flush writes nothing


def test_a_busy_second_is_written_in_chunks_of_whole_requests_with_every_row_kept(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flush turns rows into Arrow a chunk of requests at a time (the serving thread gets the interpreter
    between chunks); the file holds every row once, in order, each with its own request's values."""
    monkeypatch.setattr(writer, "CHUNK_ROWS", 5)
    log = PredictionLog(ctx.store, writer_id="w1")
    sizes = [1, 3, 2, 7, 1, 1, 4]  # a request of 7 rows is over the chunk: a chunk of its own
    for i, n in enumerate(sizes):
        log.record(**batch(HOUR + i, n=n, latency_ms=float(i), request_id=f"r{i}"))
    log.record_error(
        ts=HOUR + 9, model="iris", version=1, route="stable", status=500, error="boom", latency_ms=9.0,
        request_id="r9",
    )  # fmt: skip
    rows = log._groups[("iris", int(HOUR // 3600), ("a", "b"))]
    assert [len(part.ids) for part in rows.chunks(5)] == [4, 2, 7, 2, 4]  # whole requests, in order
    assert log.flush() == sum(sizes) + 1 and len(ctx.store.list("predictions")) == 1
    table = read_log(ctx.store, "predictions", "iris")
    assert table is not None
    got = table.to_pylist()
    want = [(f"id-{HOUR + i}-{r}", f"r{i}", float(i)) for i, n in enumerate(sizes) for r in range(n)]
    assert [(row["id"], row["request_id"], row["latency_ms"]) for row in got[:-1]] == want
    assert got[-1]["status"] == 500 and got[-1]["error"] == "boom" and got[-1]["request_id"] == "r9"
    assert [row["f_b"] for row in got[:4]] == [1.0, 1.0, 3.0, 5.0]


def test_versions_with_different_features_share_a_file(ctx: Context) -> None:
    log = PredictionLog(ctx.store, writer_id="w1")
    log.record(**batch(HOUR, n=1, features=("a", "b")))
    log.record(**batch(HOUR, n=1, features=("b", "c")))
    log.flush()
    table = read_log(ctx.store, "predictions", "iris")
    assert table is not None
    assert table.column("f_a").to_pylist() == [0.0, None] and table.column("f_c").to_pylist() == [None, 1.0]


def test_failed_write_keeps_rows_for_the_next_flush(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    log = PredictionLog(ctx.store, writer_id="w1")
    log.record(**batch(HOUR))
    original = ctx.store.put_bytes

    def down(key: str, data: bytes) -> Any:
        raise StoreUnavailable("store down")

    monkeypatch.setattr(ctx.store, "put_bytes", down)
    with pytest.raises(StoreUnavailable):
        log.flush()
    log.record(**batch(HOUR + 1))
    assert log.pending_rows == 4
    monkeypatch.setattr(ctx.store, "put_bytes", original)
    log.close()
    table = read_log(ctx.store, "predictions", "iris")
    assert table is not None and table.num_rows == 4


def test_background_flush_and_duckdb_over_the_partitions(ctx: Context) -> None:
    writers = [PredictionLog(ctx.store, flush_seconds=0.05) for _ in range(2)]
    for w in writers:
        w.start()
        w.record(**batch(time.time()))
    deadline = time.monotonic() + 10
    while sum(w.rows_written for w in writers) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for w in writers:
        w.close()
    root = ctx.store.base
    count = duckdb.sql(
        f"SELECT count(*), count(DISTINCT filename) FROM read_parquet('{root}/predictions/**/*.parquet', "
        "hive_partitioning=true, filename=true) WHERE model = 'iris'"
    ).fetchall()
    assert count == [(4, 2)]


def test_read_since_skips_older_hours_and_rows(ctx: Context) -> None:
    import datetime as dt

    log = PredictionLog(ctx.store, writer_id="w1")
    log.record(**batch(HOUR + 10))
    log.record(**batch(HOUR + 3600 + 10))
    log.record(**batch(HOUR + 3600 + 30))
    log.record_error(
        ts=HOUR + 3600 + 40, model="iris", version=2, route="canary", status=400, error="bad", latency_ms=0.1,
        request_id=None,
    )  # fmt: skip
    log.flush()
    since = dt.datetime.fromtimestamp(HOUR + 3600 + 20, dt.UTC)
    table = read_log(ctx.store, "predictions", "iris", since=since)
    assert table is not None and table.column("status").to_pylist() == [200, 200, 400]
    assert table.column("error").to_pylist() == [None, None, "bad"]
    assert read_log(ctx.store, "predictions", "iris", since=since + dt.timedelta(hours=5)) is None
    full = read_log(ctx.store, "predictions", "iris")
    assert full is not None and full.num_rows == 7

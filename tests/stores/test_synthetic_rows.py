"""The prediction log's `synthetic` column: written for every row, absent from files written before it
(their rows read as not synthetic, with no migration), and left out by a reader asked for real rows only,
before and after compaction."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mloncall.stores.context import Context
from mloncall.stores.predlog import (
    PREDICTIONS,
    SYNTHETIC,
    PredictionLog,
    clear_cache,
    count_rows,
    iter_window,
    read_log,
    read_window,
    synthetic_mask,
)
from mloncall.stores.predlog import compact as compaction

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
END = START + dt.timedelta(hours=1)
FEATURES = ("a", "b")


def log_requests(ctx: Context, writer: str, prefix: str, n: int, *, synthetic: bool, at: float = 0.0) -> None:
    log = PredictionLog(ctx.store, writer_id=writer)
    for i in range(n):
        log.record(
            ts=START.timestamp() + at + i, model="m", version=1, route="stable", features=FEATURES,
            X=np.ones((1, 2)), ids=[f"{prefix}-{i}"], labels=["x"], probabilities=np.ones((1, 1), np.float32),
            latency_ms=1.0, flags=None, shadow_version=None, shadow_labels=None, request_id=None,
            synthetic=synthetic,
        )  # fmt: skip
    log.record_error(
        ts=START.timestamp() + at + n, model="m", version=1, route="stable", status=500, error="boom",
        latency_ms=1.0, request_id=f"{prefix}-error", synthetic=synthetic,
    )  # fmt: skip
    log.flush()


def as_before_the_column(ctx: Context, writer: str) -> None:
    """Rewrite a writer's files as a release before the `synthetic` column wrote them."""
    for key in ctx.store.list(PREDICTIONS):
        if f"/{writer}-" in key:
            table = pq.read_table(io.BytesIO(ctx.store.get_bytes(key)))
            buf = io.BytesIO()
            pq.write_table(table.drop_columns([SYNTHETIC]), buf)
            ctx.store.put_bytes(key, buf.getvalue())


def ids(table: pa.Table | None) -> list[str]:
    assert table is not None
    return sorted(table.column("id").to_pylist())


def test_every_row_and_error_is_written_with_its_mark(ctx: Context) -> None:
    log_requests(ctx, "real", "r", 2, synthetic=False)
    log_requests(ctx, "load", "s", 2, synthetic=True, at=10)
    table = read_log(ctx.store, PREDICTIONS, "m")
    assert table is not None and str(table.schema.field(SYNTHETIC).type) == "bool"
    marks = dict(
        zip(table.column("request_id").to_pylist(), table.column(SYNTHETIC).to_pylist(), strict=True)
    )
    assert marks["r-error"] is False and marks["s-error"] is True
    by_id = dict(zip(table.column("id").to_pylist(), synthetic_mask(table).tolist(), strict=True))
    assert [by_id[i] for i in ("r-0", "r-1", "s-0", "s-1")] == [False, False, True, True]
    real = read_window(ctx.store, kind=PREDICTIONS, model="m", since=START, until=END, synthetic=False)
    assert (
        real.rows == 3 and real.table is not None and real.table.column(SYNTHETIC).to_pylist() == [False] * 3
    )
    counted = count_rows(ctx.store, kind=PREDICTIONS, model="m", since=START, until=END, synthetic=False)
    assert counted.rows == 3
    assert count_rows(ctx.store, kind=PREDICTIONS, model="m", since=START, until=END).rows == 6


def test_a_file_written_before_the_column_reads_as_not_synthetic(ctx: Context) -> None:
    log_requests(ctx, "old", "o", 3, synthetic=False)
    as_before_the_column(ctx, "old")
    clear_cache()
    table = read_log(ctx.store, PREDICTIONS, "m")
    assert table is not None and SYNTHETIC not in table.column_names
    assert synthetic_mask(table).tolist() == [False] * 4
    for synthetic in (True, False):
        asked = read_window(
            ctx.store, kind=PREDICTIONS, model="m", since=START, until=END,
            columns=["id", SYNTHETIC], synthetic=synthetic,
        )  # fmt: skip
        assert asked.rows == 4 and not asked.skipped and not asked.has(SYNTHETIC)
        counted = count_rows(
            ctx.store, kind=PREDICTIONS, model="m", since=START, until=END, synthetic=synthetic
        )
        assert counted.rows == 4
    folded = list(
        iter_window(
            ctx.store, kind=PREDICTIONS, model="m", since=START, until=END, columns=["id"], synthetic=False
        )
    )
    assert sum(t.num_rows for t in folded) == 4


def test_a_compacted_hour_of_old_and_new_files_keeps_the_old_rows_real(ctx: Context) -> None:
    log_requests(ctx, "old", "o", 3, synthetic=False)
    as_before_the_column(ctx, "old")
    log_requests(ctx, "real", "r", 2, synthetic=False, at=100)
    log_requests(ctx, "load", "s", 4, synthetic=True, at=200)
    report = compaction.compact(ctx.store, now=END + dt.timedelta(minutes=10), kinds=[PREDICTIONS])
    assert report.compacted == 1
    clear_cache()
    whole = read_log(ctx.store, PREDICTIONS, "m")
    assert whole is not None and whole.num_rows == 4 + 3 + 5
    assert whole.column(SYNTHETIC).null_count == 4  # the old file's rows: no mark, so not synthetic
    real = read_window(
        ctx.store, kind=PREDICTIONS, model="m", since=START, until=END, columns=["id"], synthetic=False
    )
    kept = ids(real.table)
    assert [i for i in kept if i[:2] in ("o-", "r-")] == ["o-0", "o-1", "o-2", "r-0", "r-1"]
    assert real.rows == 4 + 3 and not real.has(SYNTHETIC)  # and the two errors, whose ids are random
    counted = count_rows(ctx.store, kind=PREDICTIONS, model="m", since=START, until=END, synthetic=False)
    assert counted.rows == 7

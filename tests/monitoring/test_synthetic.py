"""A load test's synthetic rows: the monitors of the inputs and the answers (drift, data quality, accuracy)
judge a window of real rows plus synthetic constant rows exactly as the real rows alone, from the log and
from the summaries; latency and request counts count both."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mloncall.data import iris
from mloncall.monitoring import jobs, service
from mloncall.monitoring.incremental import window_summary
from mloncall.monitoring.reference import versions_of
from mloncall.monitoring.summary import VersionSummary, grids_for
from mloncall.stores.context import Context
from mloncall.stores.predlog import clear_cache, partition
from tests.monitoring.conftest import FEATURES, ts_spread, write_feedback, write_predictions

#: Two windows a day apart, with the same real rows; the second also holds a load test's constant rows.
REAL_ONLY = dt.datetime(2026, 3, 9, 6, 0, tzinfo=dt.UTC)
WITH_LOAD = REAL_ONLY + dt.timedelta(days=1)
SPAN = dt.timedelta(minutes=20)
REAL, SYNTHETIC = 400, 600
NOW_AFTER = WITH_LOAD + SPAN + dt.timedelta(hours=2)


def constant_rows(n: int) -> pd.DataFrame:
    """What `mloncall loadtest` sends by default: one row of 1.0 per feature."""
    return pd.DataFrame({f: np.ones(n) for f in FEATURES} | {iris.TARGET: ["setosa"] * n})


def write_window(ctx: Context, model: str, start: dt.datetime, *, load: bool) -> None:
    end = start + SPAN
    real = iris.iris_like_samples(REAL, seed=21)
    ids = write_predictions(
        ctx, model=model, frame=real, ts=ts_spread(REAL, end=end, span=SPAN), latency_ms=2.0,
        id_prefix=f"real-{start:%d}",
    )  # fmt: skip
    # the true labels of the real rows: the model's answers were right
    write_feedback(
        ctx, model=model, ids=ids, labels=real[iris.TARGET].astype(str).tolist(), ts=end.timestamp()
    )
    if load:
        synthetic = write_predictions(
            ctx, model=model, frame=constant_rows(SYNTHETIC), ts=ts_spread(SYNTHETIC, end=end, span=SPAN),
            latency_ms=40.0, id_prefix=f"load-{start:%d}", synthetic=True,
        )  # fmt: skip
        # a load test's "labels" are meaningless: were they counted, the accuracy would fall
        write_feedback(ctx, model=model, ids=synthetic, labels=["virginica"] * SYNTHETIC, ts=end.timestamp())


@pytest.fixture(scope="module")
def windows(mctx: Context, small_model: str) -> str:
    for start, load in ((REAL_ONLY, False), (WITH_LOAD, True)):
        write_window(mctx, small_model, start, load=load)
    jobs.run_pass(mctx, now=NOW_AFTER)  # the minutes' and hours' summaries, compaction, label indexes
    return small_model


def run(ctx: Context, model: str, kind: str, start: dt.datetime, mode: str, **params: Any) -> Any:
    clear_cache()
    return service.run_monitor(
        ctx=ctx, kind=kind, model=model, window=SPAN, params=params, now=start + SPAN, mode=mode
    )


def judged(check: Any) -> Any:
    """What a verdict rests on, without the log files read to reach it."""
    evidence = {k: v for k, v in check.evidence.items() if k not in {"since", "until", "window", "logs"}}
    read = ("files_read", "skipped_files", "summaries_read", "raw_minutes", "path", "feedback_rows")
    for key in (*read, "labels_until", "indexed_hours", "raw_hours"):
        evidence.pop(key, None)
    for part in evidence.get("parts", {}).values():
        for bucket in part.get("buckets") or []:
            bucket.pop("start")  # the windows are a day apart
    return check.outcome, check.reason, evidence


INPUTS: dict[str, dict[str, Any]] = {
    "drift": {},
    "missing_features": {},
    "out_of_range": {},
    "accuracy": {"min_labels": 30},
}


@pytest.mark.parametrize("mode", ["exact", "incremental"])
@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_synthetic_rows_change_no_verdict_on_the_inputs(
    mctx: Context, windows: str, kind: str, mode: str
) -> None:
    alone = run(mctx, windows, kind, REAL_ONLY, mode, **INPUTS[kind])
    with_load = run(mctx, windows, kind, WITH_LOAD, mode, **INPUTS[kind])
    assert judged(with_load) == judged(alone)
    assert alone.outcome.label in {"successful", "inconclusive"}, alone.reason


@pytest.mark.parametrize("mode", ["exact", "incremental"])
def test_latency_and_request_counts_keep_the_synthetic_rows(mctx: Context, windows: str, mode: str) -> None:
    alone = run(mctx, windows, "latency", REAL_ONLY, mode, max_p99_ms=10.0)
    with_load = run(mctx, windows, "latency", WITH_LOAD, mode, max_p99_ms=10.0)
    rows = [c.evidence["parts"]["v1"]["rows"] for c in (alone, with_load)]
    assert rows == [REAL, REAL + SYNTHETIC]
    assert alone.outcome.label == "successful" and with_load.outcome.label == "failed"  # the load was slow
    volume = run(mctx, windows, "volume", WITH_LOAD, mode, lookback="1h", min_history="1s")
    assert volume.evidence["parts"]["all versions"]["rows"] == REAL + SYNTHETIC


def _features(s: VersionSummary) -> dict[str, Any]:
    return {
        f: (k.at.tolist(), k.between.tolist(), k.offsets.tolist(), k.missing, k.present)
        for f, k in s.features.items()
    }


def test_a_summary_of_real_and_synthetic_rows_is_the_real_rows_summary_but_for_the_service(
    mctx: Context, windows: str
) -> None:
    grids = grids_for(mctx.store, versions_of(ctx=mctx, model=windows))
    alone, with_load = (
        window_summary(mctx.store, windows, start, start + SPAN, grids, now=NOW_AFTER).summary[1]
        for start in (REAL_ONLY, WITH_LOAD)
    )
    for name in ("served", "predicted", "missing", "any_missing", "flagged", "recomputed", "out_of_range"):
        assert getattr(with_load, name) == getattr(alone, name), name
    assert _features(with_load) == _features(alone)
    assert with_load.routed.predicted == alone.routed.predicted
    assert (alone.rows, alone.synthetic, alone.latency.n) == (REAL, 0, REAL)
    assert (with_load.rows, with_load.synthetic, with_load.latency.n) == (
        REAL + SYNTHETIC,
        SYNTHETIC,
        REAL + SYNTHETIC,
    )
    assert with_load.routed.rows == REAL + SYNTHETIC and with_load.real_rows == REAL


def test_a_log_written_before_the_synthetic_column_is_judged_as_real_traffic(
    mctx: Context, windows: str
) -> None:
    """The same real rows in files without the column (an older release's): read, summarised and judged as
    the real rows they are, with no migration."""
    before = REAL_ONLY - dt.timedelta(days=1)
    real = iris.iris_like_samples(REAL, seed=21)
    write_predictions(
        mctx, model=windows, frame=real, ts=ts_spread(REAL, end=before + SPAN, span=SPAN), id_prefix="old",
    )  # fmt: skip
    for key in mctx.store.list(f"predictions/model={windows}/{partition(int(before.timestamp()) // 3600)}"):
        table = pq.read_table(io.BytesIO(mctx.store.get_bytes(key)))
        buf = io.BytesIO()
        pq.write_table(table.drop_columns(["synthetic"]), buf)
        mctx.store.put_bytes(key, buf.getvalue())
    clear_cache()
    grids = grids_for(mctx.store, versions_of(ctx=mctx, model=windows))
    old = window_summary(mctx.store, windows, before, before + SPAN, grids, now=NOW_AFTER).summary[1]
    assert (old.rows, old.synthetic, old.served) == (REAL, 0, REAL)
    for mode in ("exact", "incremental"):
        for kind in ("drift", "out_of_range"):
            assert judged(run(mctx, windows, kind, before, mode)) == judged(
                run(mctx, windows, kind, REAL_ONLY, mode)
            )

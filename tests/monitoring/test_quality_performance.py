"""Data quality, accuracy with late labels, error rate and latency monitors over real Parquet logs."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np

from mloncall.core.outcome import Outcome
from mloncall.data import iris
from mloncall.monitoring import service
from mloncall.stores.context import Context
from tests.helpers import train_iris
from tests.monitoring.conftest import (
    NOW,
    set_errors,
    ts_spread,
    write_feedback,
    write_predictions,
    write_rejections,
)

HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)


def at(day: int) -> dt.datetime:
    return NOW + dt.timedelta(days=day)


def run(
    ctx: Context, kind: str, model: str, end: dt.datetime, window: dt.timedelta = HOUR, **params: object
) -> service.Check:
    check = service.run_monitor(ctx=ctx, kind=kind, model=model, window=window, params=dict(params), now=end)
    json.dumps(check.to_dict(), allow_nan=False)
    return check


def test_out_of_range_rate_from_flags_and_recomputed_from_the_signature(
    mctx: Context, small_model: str
) -> None:
    end = at(20)
    frame = iris.iris_like_samples(200, seed=20)
    flags = [["out_of_range:petal_width"] if i < 30 else [] for i in range(200)]
    write_predictions(
        mctx,
        model=small_model,
        frame=frame,
        ts=ts_spread(200, end=end, span=HOUR),
        flags=flags,
        id_prefix="oor",
    )
    check = run(mctx, "out_of_range", small_model, end)
    part = check.evidence["parts"]["v1"]
    assert part["flagged_rows"] == 30 and part["flagged_rate"] == 0.15
    assert part["flagged_per_feature"] == {"petal_width": 30}
    assert part["rate"] >= 0.15 and check.outcome is Outcome.FAILED
    assert "out-of-range rate" in check.reason
    assert run(mctx, "out_of_range", small_model, end, max_rate=0.5).outcome is Outcome.SUCCESSFUL


def test_out_of_range_is_recomputed_when_not_flagged(mctx: Context, small_model: str) -> None:
    end = at(21)
    frame = iris.iris_like_samples(200, seed=21)
    frame.loc[:49, "sepal_length"] = 42.0  # far outside the training range, but the log carries no flag
    write_predictions(
        mctx, model=small_model, frame=frame, ts=ts_spread(200, end=end, span=HOUR), id_prefix="rc"
    )
    check = run(mctx, "out_of_range", small_model, end)
    part = check.evidence["parts"]["v1"]
    assert part["flagged_rows"] == 0 and part["recomputed_per_feature"]["sepal_length"] >= 50
    assert part["training_range"]["sepal_length"][1] < 42.0
    assert check.outcome is Outcome.FAILED


def test_volume_drop_is_detected(mctx: Context) -> None:
    train_iris(mctx, name="vol")
    model = "vol"
    end = at(22)
    # two hours at 1 request/s, then a window of ten minutes at 0.1 request/s: a source gone quiet
    history = iris.iris_like_samples(7200, seed=22)
    write_predictions(
        mctx,
        model=model,
        frame=history,
        ts=ts_spread(7200, end=end - 10 * MINUTE, span=2 * HOUR),
        id_prefix="h",
    )
    quiet = iris.iris_like_samples(60, seed=23)
    write_predictions(
        mctx, model=model, frame=quiet, ts=ts_spread(60, end=end, span=10 * MINUTE), id_prefix="q"
    )
    check = run(mctx, "volume", model, end, window=10 * MINUTE)
    ev = check.evidence["parts"]["all versions"]
    assert (
        check.outcome is Outcome.FAILED
        and "volume dropped" in check.reason
        and check.evidence["value"] == 0.1
    )
    assert ev["usual_rate_per_s"] == 1.0 and ev["ratio"] == 0.1 and ev["history_s"] == 7200.0
    steady = run(mctx, "volume", model, end - 10 * MINUTE, window=10 * MINUTE)
    assert steady.outcome is Outcome.SUCCESSFUL, steady.reason
    gone = run(mctx, "volume", model, end + HOUR, window=10 * MINUTE)
    assert gone.outcome is Outcome.FAILED and gone.evidence["parts"]["all versions"]["rows"] == 0
    first = run(mctx, "volume", model, end - 2 * HOUR, window=10 * MINUTE)
    assert first.outcome is Outcome.INCONCLUSIVE and "history" in first.reason


def test_missing_features_and_validation_failures_from_the_rejections_log(
    mctx: Context, small_model: str
) -> None:
    end = at(23)
    frame = iris.iris_like_samples(150, seed=24)
    write_predictions(
        mctx, model=small_model, frame=frame, ts=ts_spread(150, end=end, span=HOUR), id_prefix="mf"
    )
    no_log = run(mctx, "validation_failures", small_model, end)
    assert no_log.outcome is Outcome.SUCCESSFUL and no_log.evidence["rejections_log"] == "absent"
    t0 = (end - 30 * MINUTE).timestamp()
    rows = [{"ts": t0 + i, "reason": "missing_feature", "field": "petal_width"} for i in range(40)]
    rows += [{"ts": t0 + 100 + i, "reason": "bad_request", "field": None} for i in range(10)]
    write_rejections(mctx, model=small_model, rows=rows)
    missing = run(mctx, "missing_features", small_model, end)
    assert missing.outcome is Outcome.FAILED and missing.evidence["deciding"] == ["refused requests"]
    refused = missing.evidence["parts"]["refused requests"]
    assert (
        refused["count"] == 40 and refused["total"] == 200 and refused["per_feature"] == {"petal_width": 40}
    )
    assert missing.evidence["parts"]["v1"]["count"] == 0
    failures = run(mctx, "validation_failures", small_model, end)
    part = failures.evidence["parts"]["all requests"]
    assert failures.outcome is Outcome.FAILED and part["rate"] == 0.25
    assert part["by_reason"] == {"missing_feature": 40, "bad_request": 10}


def test_accuracy_waits_for_labels_then_judges(mctx: Context) -> None:
    run_ = train_iris(mctx, name="acc")
    recorded = run_.model_version.metrics["accuracy"]
    end = at(24)
    frame = iris.iris_like_samples(200, seed=25)
    truth = frame[iris.TARGET].astype(str).to_numpy()
    ids = write_predictions(
        mctx, model="acc", frame=frame, ts=ts_spread(200, end=end, span=HOUR), id_prefix="acc"
    )
    waiting = run(mctx, "accuracy", "acc", end)
    assert waiting.outcome is Outcome.INCONCLUSIVE and "waiting for labels: 0 of 200" in waiting.reason
    # a few labels arrive: still too few (coverage 40% < 50%)
    write_feedback(mctx, model="acc", ids=ids[:80], labels=truth[:80].tolist(), ts=(end + MINUTE).timestamp())
    later = end + 2 * MINUTE
    few = run(mctx, "accuracy", "acc", later, window=HOUR + 2 * MINUTE)
    assert few.outcome is Outcome.INCONCLUSIVE and "80 of 200" in few.reason
    # the rest arrive, and 20% of all predictions were wrong
    wrong = truth.copy()
    wrong[160:] = np.where(truth[160:] == "setosa", "virginica", "setosa")
    write_feedback(
        mctx, model="acc", ids=ids[80:], labels=wrong[80:].tolist(), ts=(end + 3 * MINUTE).timestamp()
    )
    judged = run(mctx, "accuracy", "acc", end + 4 * MINUTE, window=HOUR + 4 * MINUTE)
    part = judged.evidence["parts"]["v1"]
    assert part["labelled"] == 200 and part["accuracy"] == 0.8
    assert part["baseline_accuracy"] == recorded
    assert judged.outcome is Outcome.FAILED and "accuracy 0.800 <" in judged.reason
    assert judged.evidence["value"] == 0.8
    assert sum(b["predictions"] for b in part["buckets"]) == 200
    assert set(part["per_class"]) == {"setosa", "versicolor", "virginica"}
    lenient = run(mctx, "accuracy", "acc", end + 4 * MINUTE, window=HOUR + 4 * MINUTE, tolerance=0.3)
    assert lenient.outcome is Outcome.SUCCESSFUL
    # a window judged later with an offset still looks at when the predictions were made
    offset = run(mctx, "accuracy", "acc", end + HOUR, window=HOUR + 4 * MINUTE, offset="1h")
    assert offset.evidence["parts"]["v1"]["predictions"] == 200


def test_error_rate_and_latency(mctx: Context) -> None:
    train_iris(mctx, name="svc")
    end = at(25)
    frame = iris.iris_like_samples(300, seed=26)
    latency = np.where(np.arange(300) < 285, 3.0, 400.0)
    ids = write_predictions(
        mctx,
        model="svc",
        frame=frame,
        ts=ts_spread(300, end=end, span=HOUR),
        latency_ms=latency,
        id_prefix="svc",
    )
    set_errors(mctx, model="svc", failing=None)
    no_column = run(mctx, "error_rate", "svc", end)
    assert (
        no_column.outcome is Outcome.SUCCESSFUL
        and no_column.evidence["parts"]["v1"]["error_column"] == "absent"
    )
    lat = run(mctx, "latency", "svc", end)
    part = lat.evidence["parts"]["v1"]
    assert part["p50_ms"] == 3.0 and part["p99_ms"] == 400.0
    assert lat.outcome is Outcome.FAILED and "p99 400.0 ms > 100 ms" in lat.reason
    assert lat.evidence["value"] == 400.0
    assert run(mctx, "latency", "svc", end, max_p99_ms=None, max_p50_ms=10).outcome is Outcome.SUCCESSFUL
    set_errors(mctx, model="svc", failing=set(ids[:9]))
    errors = run(mctx, "error_rate", "svc", end)
    assert errors.outcome is Outcome.FAILED and errors.evidence["parts"]["v1"]["errors"] == 9
    assert run(mctx, "error_rate", "svc", end, max_error_rate=0.05).outcome is Outcome.SUCCESSFUL
    assert run(mctx, "error_rate", "svc", end, min_rows=1000).outcome is Outcome.INCONCLUSIVE


def test_failed_requests_are_not_missing_features(mctx: Context) -> None:
    from mloncall.stores.predlog import PredictionLog

    train_iris(mctx, name="failing")
    end = at(26)
    frame = iris.iris_like_samples(150, seed=27)
    write_predictions(
        mctx, model="failing", frame=frame, ts=ts_spread(150, end=end, span=HOUR), id_prefix="ok"
    )
    log = PredictionLog(mctx.store, writer_id="errors")
    if not hasattr(
        log, "record_error"
    ):  # pragma: no cover - the serving plane records failures since issue 4
        return
    for i in range(50):
        log.record_error(
            ts=(end - 30 * MINUTE).timestamp() + i, model="failing", version=1, route="stable", status=500,
            error="model raised", latency_ms=1.0, request_id=None,
        )  # fmt: skip
    log.flush()
    missing = run(mctx, "missing_features", "failing", end)
    assert missing.outcome is Outcome.SUCCESSFUL
    assert missing.evidence["parts"]["v1"]["failed_requests_excluded"] == 50
    assert run(mctx, "out_of_range", "failing", end).outcome is Outcome.SUCCESSFUL
    drift = run(mctx, "drift", "failing", end)
    assert drift.evidence["rows"] == 150
    errors = run(mctx, "error_rate", "failing", end)
    assert errors.outcome is Outcome.FAILED and errors.evidence["parts"]["v1"]["errors"] == 50

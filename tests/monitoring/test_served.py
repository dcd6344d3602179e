"""What each version served, read from the summaries (`monitoring.served`): the figures canary analysis,
acceptance and the charts read equal those counted row by row from the log, whatever mix of stored summaries,
label indexes, compacted hours, raw files and the open minute a window spans."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mloncall.core.errors import InvalidInput
from mloncall.data import iris
from mloncall.monitoring import jobs, service
from mloncall.monitoring.incremental import SUMMARY_GRACE
from mloncall.monitoring.reference import versions_of
from mloncall.monitoring.served import ServedWindow, served_window
from mloncall.monitoring.summary import clear_cache as summary_cache_clear
from mloncall.monitoring.summary import minute_key
from mloncall.stores.context import Context
from mloncall.stores.predlog import FEEDBACK, PREDICTIONS, FeedbackBatch, PredictionLog, read_log
from tests.monitoring.conftest import FEATURES

START = dt.datetime(2026, 4, 7, 9, 0, tzinfo=dt.UTC)
CLASSES = ("setosa", "versicolor", "virginica")
MINUTE = dt.timedelta(minutes=1)


def write_file(
    ctx: Context, model: str, since: dt.datetime, *, seconds: float = 60.0, n: int = 60, seed: int = 0
) -> dict[str, str]:
    """One writer's flush of n requests spread over [since, since + seconds): v1 on the stable route, v2 on
    the canary route (shadow-scored by v1), explicit calls to v2, and failures (500 and 400); returns the
    true class of each answered id."""
    rng = np.random.default_rng(seed)
    log = PredictionLog(ctx.store, writer_id=f"w-{uuid.uuid4().hex[:8]}")
    X = iris.iris_like_samples(n, seed=seed)[list(FEATURES)].to_numpy(np.float64)
    truth: dict[str, str] = {}
    for i in range(n):
        ts = since.timestamp() + i * seconds / n
        kind = rng.random()
        latency = float(rng.lognormal(1.0, 0.6))
        if kind > 0.93:
            version, route = (1, "stable") if kind > 0.965 else (2, "canary")
            status = 500 if rng.random() < 0.6 else 400
            log.record_error(
                ts=ts, model=model, version=version, route=route, status=status, error="boom",
                latency_ms=latency, request_id=None,
            )  # fmt: skip
            continue
        version, route = (1, "stable") if kind < 0.6 else (2, "canary") if kind < 0.88 else (2, "explicit")
        real = CLASSES[int(rng.integers(3))]
        label = real if rng.random() < (0.9 if version == 1 else 0.7) else CLASSES[int(rng.integers(3))]
        shadow = [real if rng.random() < 0.9 else CLASSES[0]] if route == "canary" else None
        pid = f"{seed}-{i}-{uuid.uuid4().hex[:6]}"
        truth[pid] = real
        log.record(
            ts=ts, model=model, version=version, route=route, features=FEATURES, X=X[i : i + 1], ids=[pid],
            labels=[label], probabilities=np.full((1, 3), 1 / 3, np.float32), latency_ms=latency, flags=None,
            shadow_version=1 if shadow else None, shadow_labels=shadow, request_id=None,
        )  # fmt: skip
    log.flush()
    return truth


def send_feedback(ctx: Context, model: str, truth: dict[str, str], *, at: dt.datetime, share: float) -> None:
    ids = sorted(truth)[: int(len(truth) * share)]
    log = PredictionLog(ctx.store, writer_id=f"fb-{uuid.uuid4().hex[:8]}")
    log.record_feedback(
        FeedbackBatch(ts=at.timestamp(), model=model, ids=ids, labels=[truth[i] for i in ids])
    )
    log.flush()


def row_by_row(ctx: Context, model: str, since: dt.datetime, until: dt.datetime) -> dict[int, dict[str, Any]]:
    """The same figures counted from the raw rows with pyarrow, independently of the summaries."""
    table = read_log(ctx.store, PREDICTIONS, model)
    assert table is not None
    ts = table.column("ts")
    table = table.filter(
        pc.and_(pc.greater_equal(ts, pa.scalar(since, ts.type)), pc.less(ts, pa.scalar(until, ts.type)))
    )
    feedback = read_log(ctx.store, FEEDBACK, model)
    known = (
        {}
        if feedback is None
        else dict(zip(*(feedback.column(c).to_pylist() for c in ("prediction_id", "label")), strict=True))
    )
    out: dict[int, dict[str, Any]] = {}
    for row in table.to_pylist():
        v = out.setdefault(row["version"], {
            "rows": 0, "errors": 0, "routed": 0, "server_errors": 0, "predicted": {}, "shadowed": 0,
            "disagreed": 0, "labelled": 0, "correct": 0, "paired": 0, "paired_correct": 0,
            "paired_baseline_correct": 0, "latency": [],
        })  # fmt: skip
        v["rows"] += 1
        v["errors"] += row["error"] is not None
        if row["route"] == "explicit":
            continue
        v["routed"] += 1
        v["latency"].append(row["latency_ms"])
        v["server_errors"] += row["status"] >= 500
        if row["label"] is not None:
            v["predicted"][row["label"]] = v["predicted"].get(row["label"], 0) + 1
        if row["label"] is not None and row["shadow_label"] is not None:
            v["shadowed"] += 1
            v["disagreed"] += row["label"] != row["shadow_label"]
        real = known.get(row["id"]) if row["error"] is None else None
        if real is not None:
            v["labelled"] += 1
            v["correct"] += row["label"] == real
            if row["shadow_label"] is not None:
                v["paired"] += 1
                v["paired_correct"] += row["label"] == real
                v["paired_baseline_correct"] += row["shadow_label"] == real
    return out


def assert_same(found: ServedWindow, expected: dict[int, dict[str, Any]]) -> None:
    assert set(found.versions) == set(expected)
    for version, e in expected.items():
        side = found.versions[version]
        s, r, lab = side.summary, side.summary.routed, side.labels
        got = {
            "rows": s.rows, "errors": s.errors, "routed": r.rows, "server_errors": r.server_errors,
            "predicted": r.predicted, "shadowed": r.shadowed, "disagreed": r.disagreed,
            "labelled": lab.labelled, "correct": lab.correct, "paired": lab.paired,
            "paired_correct": lab.paired_correct, "paired_baseline_correct": lab.paired_baseline_correct,
        }  # fmt: skip
        assert got == {k: v for k, v in e.items() if k != "latency"}, version
        if e["latency"]:
            p99 = r.latency.quantiles((99,))[99]
            lo, hi = (float(np.percentile(e["latency"], 99, method=m)) for m in ("lower", "higher"))
            assert lo * 0.99 <= p99 <= hi * 1.01


@pytest.fixture(scope="module")
def versions(mctx: Context, small_model: str) -> dict[int, Any]:
    return versions_of(ctx=mctx, model=small_model)


def window(
    ctx: Context, model: str, since: dt.datetime, until: dt.datetime, now: dt.datetime, versions: Any
) -> ServedWindow:
    summary_cache_clear()
    return served_window(ctx.store, model, since, until, now=now, versions=versions)


def test_versions_and_routes_split_as_the_rows_do(mctx: Context, small_model: str, versions: Any) -> None:
    model = small_model
    t0 = START
    truth: dict[str, str] = {}
    for m in range(4):
        truth |= write_file(mctx, model, t0 + m * MINUTE, seed=m)
    send_feedback(mctx, model, truth, at=t0 + 5 * MINUTE, share=0.7)
    since, until = t0 + dt.timedelta(seconds=17), t0 + dt.timedelta(minutes=3, seconds=41)
    found = window(mctx, model, since, until, until + dt.timedelta(minutes=2), versions)
    assert found.evidence["summaries_read"] == 0  # nothing summarised yet: every minute from the log
    expected = row_by_row(mctx, model, since, until)
    assert expected[2]["routed"] < expected[2]["rows"]  # explicit calls: served, but not compared
    assert_same(found, expected)


def test_open_minute_and_summarised_minutes_count_every_row_once(
    mctx: Context, small_model: str, versions: Any
) -> None:
    model = small_model
    t0 = START + dt.timedelta(hours=2)
    truth: dict[str, str] = {}
    for m in range(5):
        truth |= write_file(mctx, model, t0 + m * MINUTE, seed=10 + m)
    truth |= write_file(mctx, model, t0 + 5 * MINUTE, seconds=20, n=20, seed=20)  # the open minute
    send_feedback(mctx, model, truth, at=t0 + dt.timedelta(minutes=5, seconds=21), share=0.5)
    now = t0 + dt.timedelta(minutes=5, seconds=22)
    since = t0 + dt.timedelta(seconds=10)
    before = window(mctx, model, since, now, now, versions)
    jobs.run_pass(mctx, now=now, compact=False)
    assert mctx.store.exists(minute_key(model, int(t0.timestamp()) // 60 + 3))
    after = window(mctx, model, since, now, now, versions)
    # minutes 1-4 from their summaries; [10 s, 1 min) and the open minute from the log
    assert after.evidence["summaries_read"] == 4 and after.evidence["raw_minutes"] == 0
    assert after.evidence["labels"]["indexes_read"] == 5  # minutes 0-4, the first in part
    expected = row_by_row(mctx, model, since, now)
    assert_same(before, expected)
    assert_same(after, expected)
    # the rollout's window as the canary analysis composes it: earlier steps, then this one
    cut = t0 + dt.timedelta(minutes=3, seconds=12)
    composed = window(mctx, model, since, cut, now, versions).then(
        window(mctx, model, cut, now, now, versions)
    )
    assert_same(composed, expected)
    # a window of a few seconds inside the open minute is exact too
    short = window(mctx, model, now - dt.timedelta(seconds=7), now, now, versions)
    assert_same(short, row_by_row(mctx, model, now - dt.timedelta(seconds=7), now))


def test_a_file_flushed_within_the_grace_is_counted_once(
    mctx: Context, small_model: str, versions: Any
) -> None:
    model = small_model
    t0 = START + dt.timedelta(hours=4)
    end = t0 + MINUTE
    write_file(mctx, model, t0, seconds=50, n=40, seed=30)
    early = window(mctx, model, t0, end, end + dt.timedelta(seconds=3), versions)
    write_file(mctx, model, t0 + dt.timedelta(seconds=50), seconds=10, n=10, seed=31)  # flushed late
    late = end + SUMMARY_GRACE - dt.timedelta(seconds=2)
    seen = window(mctx, model, t0, end, late, versions)
    assert seen.rows == early.rows + 10  # the minute is not closed yet: read from the log, late file and all
    jobs.run_pass(mctx, now=end + SUMMARY_GRACE + dt.timedelta(seconds=1), compact=False)
    closed = window(mctx, model, t0, end, end + dt.timedelta(minutes=1), versions)
    assert closed.evidence["summaries_read"] == 1 and closed.evidence["files_read"] == {"predictions": 0}
    assert_same(closed, row_by_row(mctx, model, t0, end))


def test_a_window_over_compacted_hours_indexed_labels_and_raw_rows(
    mctx: Context, small_model: str, versions: Any
) -> None:
    model = small_model
    h0 = START + dt.timedelta(hours=6)
    truth: dict[str, str] = {}
    for hour in range(2):
        for m in (0, 1, 30, 59):
            truth |= write_file(
                mctx, model, h0 + dt.timedelta(hours=hour, minutes=m), seed=40 + hour * 60 + m
            )
    for m in range(3):
        truth |= write_file(mctx, model, h0 + dt.timedelta(hours=2, minutes=m), seed=200 + m)
    first = sorted(truth)[: len(truth) // 2]
    send_feedback(
        mctx, model, {i: truth[i] for i in first}, at=h0 + dt.timedelta(hours=1, minutes=5), share=0.6
    )
    now = h0 + dt.timedelta(hours=2, minutes=3, seconds=5)
    report = jobs.run_pass(mctx, now=now)
    assert (
        report.compaction["hours_compacted"] >= 1
    )  # the first hour; the second is closed, not yet compacted
    # labels that arrive after their hour was indexed, applied by the next pass
    send_feedback(mctx, model, truth, at=now + dt.timedelta(seconds=5), share=0.8)
    later = now + dt.timedelta(seconds=40)
    jobs.run_pass(mctx, now=later)
    since = h0 + dt.timedelta(seconds=30)
    found = window(mctx, model, since, later, later, versions)
    assert found.evidence["summaries_read"] >= 2  # the closed hours' summaries
    assert found.evidence["labels"]["indexes_read"] >= 2
    # the labels logged since the watermark are applied on the fly, never written
    assert found.evidence["labels"]["feedback_rows"] > 0
    assert_same(found, row_by_row(mctx, model, since, later))


def test_series_are_the_served_figures_per_bucket(mctx: Context, small_model: str) -> None:
    model = small_model
    t0 = START + dt.timedelta(hours=10)
    truth: dict[str, str] = {}
    for m in range(3):
        truth |= write_file(mctx, model, t0 + m * MINUTE, seed=300 + m)
    send_feedback(mctx, model, truth, at=t0 + dt.timedelta(minutes=2, seconds=20), share=1.0)
    now = t0 + dt.timedelta(minutes=2, seconds=30)

    def chart(metric: str, version: int | None = 2) -> list[service.Point]:
        with mctx.db.session() as s:
            return service.series(
                session=s, store=mctx.store, model=model, version=version, metric=metric,
                window=dt.timedelta(minutes=3), step=MINUTE, now=now,
            )  # fmt: skip

    requests = chart("requests")
    assert [p.start for p in requests] == [t0 - MINUTE, t0, t0 + MINUTE, t0 + 2 * MINUTE]
    assert [p.partial for p in requests] == [False, False, False, True]
    assert requests[-1].end == now and requests[0].value == 0.0
    for p in requests[1:]:
        e = row_by_row(mctx, model, p.start, p.end)
        assert p.value == e[2]["rows"]
    all_versions = chart("requests", None)
    assert all_versions[1].value == sum(v["rows"] for v in row_by_row(mctx, model, t0, t0 + MINUTE).values())
    rate = chart("error_rate")[1]
    e = row_by_row(mctx, model, t0, t0 + MINUTE)[2]
    assert rate.value == pytest.approx(e["errors"] / e["rows"]) and rate.n == e["rows"]
    assert chart("error_rate")[0].value is None  # no rows: no value, not zero
    acc = chart("accuracy")[2]
    e = row_by_row(mctx, model, t0 + MINUTE, t0 + 2 * MINUTE)[2]
    assert acc.value == pytest.approx(e["correct"] / e["labelled"]) and acc.n == e["labelled"]
    p99 = chart("p99_ms")[1]
    assert p99.value is not None and p99.n > 0
    with pytest.raises(InvalidInput, match="unknown metric"):
        chart("throughput")
    with mctx.db.session() as s, pytest.raises(InvalidInput, match="at most"):
        service.series(
            session=s, store=mctx.store, model=model, version=None, metric="requests",
            window=dt.timedelta(days=2), step=dt.timedelta(seconds=1), now=now,
        )  # fmt: skip


def test_a_chart_of_every_version_adds_versions_whose_feature_grids_differ() -> None:
    """Each version's feature sketches sit on its own reference's grid: the all-versions figures (the
    dashboard's overview and charts) add requests, errors and latency without merging those sketches."""
    import datetime as _dt

    from mloncall.monitoring.served import ServedWindow, VersionServed, value_of
    from mloncall.monitoring.sketches import FeatureSketch
    from mloncall.monitoring.summary import VersionSummary

    sides = {}
    for version, (rows, errors, bins) in {1: (90, 0, 37), 2: (10, 2, 40)}.items():
        summary = VersionSummary()
        summary.rows, summary.errors = rows, errors
        summary.features["petal_length"] = FeatureSketch.empty(bins)
        sides[version] = VersionServed(summary=summary)
    at = _dt.datetime(2026, 1, 1, tzinfo=_dt.UTC)
    window = ServedWindow(at, at + _dt.timedelta(hours=1), sides, {})
    assert value_of("requests", window) == 100
    assert value_of("error_rate", window) == 0.02
    assert value_of("error_rate", window, 2) == 0.2


def test_charts_of_several_metrics_read_each_bucket_once_with_the_same_figures(
    mctx: Context, small_model: str
) -> None:
    model = small_model
    t0 = START + dt.timedelta(hours=18)
    truth: dict[str, str] = {}
    for m in (0, 1, 4):  # minutes 2 and 3 are quiet: nothing logged, no index
        truth |= write_file(mctx, model, t0 + m * MINUTE, seed=400 + m)
    send_feedback(mctx, model, truth, at=t0 + dt.timedelta(minutes=4, seconds=40), share=0.7)
    now = t0 + dt.timedelta(minutes=4, seconds=50)
    jobs.run_pass(mctx, now=now)
    metrics = ("requests", "error_rate", "p99_ms", "accuracy")
    with mctx.db.session() as s:
        kw: dict[str, Any] = {
            "session": s, "store": mctx.store, "model": model, "version": None,
            "window": dt.timedelta(minutes=6), "step": MINUTE, "now": now,
        }  # fmt: skip
        together = service.series_by_metric(metrics=metrics, **kw)
        for metric in metrics:
            assert together[metric] == service.series(metric=metric, **kw)
    accuracy = [p for p in together["accuracy"] if p.start >= t0]
    assert [p.value is not None for p in accuracy] == [True, True, False, False, True]
    for p in accuracy:
        expected = sum(v["labelled"] for v in row_by_row(mctx, model, p.start, p.end).values())
        assert p.n == expected

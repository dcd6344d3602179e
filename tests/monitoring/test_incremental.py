"""Incremental evaluation: a few hours of scaled-down logs, summarised and compacted, give the results of a full
recomputation (exact for counts, within the stated bounds for sketches)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest
from scipy import stats

from mloncall.data import iris
from mloncall.monitoring import jobs, labels, service
from mloncall.monitoring.drift_stats import SortedSample
from mloncall.monitoring.sketches import FeatureSketch, LatencySketch, grid_for, grid_stats, latency_keys
from mloncall.monitoring.summary import clear_cache as summary_cache_clear
from mloncall.monitoring.summary import hour_key, minute_key
from mloncall.stores.context import Context
from mloncall.stores.predlog import clear_cache
from tests.helpers import train_iris
from tests.monitoring.conftest import ts_spread, write_feedback, write_predictions

START = dt.datetime(2026, 3, 5, 6, 0, tzinfo=dt.UTC)
HOURS = 3
NOW = START + dt.timedelta(hours=HOURS, minutes=7, seconds=30)


def write_traffic(ctx: Context, model: str) -> None:
    """One file per minute of 20 rows for HOURS hours; the last hour drifts (petal length shifted)."""
    rng = np.random.default_rng(5)
    for minute in range(HOURS * 60 + 7):
        frame = iris.iris_like_samples(20, seed=minute)
        if minute >= 120:
            frame["petal_length"] = frame["petal_length"] + 1.5
        end = START + dt.timedelta(minutes=minute + 1)
        write_predictions(
            ctx, model=model, frame=frame, ts=ts_spread(20, end=end, span=dt.timedelta(minutes=1)),
            latency_ms=rng.lognormal(1.0, 0.5, 20), id_prefix=f"{model}-{minute}",
        )  # fmt: skip


@pytest.fixture(scope="module")
def traffic(mctx: Context, small_model: str, big_model: str) -> list[str]:
    for model in (small_model, big_model):
        write_traffic(mctx, model)
    report = jobs.run_pass(mctx, now=NOW)
    assert report.summaries_written > 0
    assert report.compaction["hours_compacted"] >= 2 * HOURS
    return [small_model, big_model]


KINDS: dict[str, dict[str, Any]] = {
    "drift": {},
    "missing_features": {},
    "out_of_range": {},
    "error_rate": {},
    "latency": {"max_p99_ms": 10.0},
}


def both(ctx: Context, kind: str, model: str, window: dt.timedelta) -> tuple[Any, Any]:
    clear_cache()
    exact = service.run_monitor(
        ctx=ctx, kind=kind, model=model, window=window, params=KINDS[kind], now=NOW, mode="exact"
    )
    fast = service.run_monitor(
        ctx=ctx, kind=kind, model=model, window=window, params=KINDS[kind], now=NOW, mode="incremental"
    )
    return exact, fast


@pytest.mark.parametrize("window_min", [61, 150, 187])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_incremental_equals_full_recomputation(
    mctx: Context, traffic: list[str], kind: str, window_min: int
) -> None:
    for model in traffic:
        exact, fast = both(mctx, kind, model, dt.timedelta(minutes=window_min, seconds=13))
        assert fast.outcome is exact.outcome, (model, fast.reason, exact.reason)
        assert fast.evidence["path"] == "incremental"
        assert fast.evidence["summaries_read"] > 0
        if kind == "drift":
            compare_drift(exact.evidence, fast.evidence)
        elif kind == "latency":
            for label, part in exact.evidence["parts"].items():
                got = fast.evidence["parts"][label]
                assert got["rows"] == part["rows"]
                for q in ("p50_ms", "p95_ms", "p99_ms"):
                    assert got[q] == pytest.approx(part[q], rel=0.03)
        else:
            assert fast.reason == exact.reason
            for label, part in exact.evidence["parts"].items():
                got = dict(fast.evidence["parts"][label])
                for key in ("count", "total", "rate", "rows", "errors", "per_feature", "recomputed_rows"):
                    if key in part:
                        assert got[key] == part[key], key


def compare_drift(exact: dict[str, Any], fast: dict[str, Any]) -> None:
    assert fast["rows"] == exact["rows"]
    for ev, fv in zip(exact["versions"], fast["versions"], strict=True):
        assert fv["n_cur"] == ev["n_cur"] and fv["drifted_features"] == ev["drifted_features"]
        for ef, ff in zip(ev["features"], fv["features"], strict=True):
            assert ff["n_cur"] == ef["n_cur"] and ff["n_missing"] == ef["n_missing"]
            assert ff["method"] == ef["method"] and ff["drifted"] == ef["drifted"]
            if ef["psi"] is None:
                continue
            assert ff["psi"] == pytest.approx(ef["psi"], abs=1e-12)
            bounds = ff["bounds"]
            assert ef["ks"] - bounds["ks"] - 1e-12 <= ff["ks"] <= ef["ks"] + 1e-12
            assert abs(ff["wasserstein"] - ef["wasserstein"]) <= bounds["wasserstein"] + 1e-9


def test_stated_bounds_hold_against_scipy_on_fixed_data() -> None:
    rng = np.random.default_rng(2026)
    for ref_values, cur_values in (
        (rng.normal(0, 1, 150), rng.normal(0.3, 1.2, 20_000)),  # small reference: KS exact
        (rng.normal(0, 1, 50_000), rng.normal(0.05, 1, 200_000)),  # large continuous reference
        (rng.integers(0, 4, 5_000).astype(float), rng.integers(0, 5, 30_000).astype(float)),  # categorical
    ):
        ref = SortedSample.of(ref_values)
        points = grid_for(ref, 10)
        sketch = FeatureSketch.empty(points.size)
        for chunk in np.array_split(cur_values, 7):  # merged from parts, as summaries are
            part = FeatureSketch.empty(points.size)
            part.add(points, chunk)
            sketch.merge(part)
        g = grid_stats(ref, points, sketch, categorical_unique=5, psi_bins=10)
        ks = stats.ks_2samp(ref_values, cur_values).statistic
        w = stats.wasserstein_distance(ref_values, cur_values)
        assert ks - g.ks_bound - 1e-12 <= g.ks <= ks + 1e-12
        if np.unique(ref_values).size <= 1024:
            assert g.ks == pytest.approx(ks, abs=1e-12)
        assert abs(g.wasserstein - w) <= g.wasserstein_bound + 1e-9
        assert g.ks_bound <= 1.5 / 1024 + 1e-12


def test_latency_sketch_keys_and_quantiles_against_numpy() -> None:
    from ddsketch.mapping import LogarithmicMapping

    rng = np.random.default_rng(3)
    values = rng.lognormal(1.5, 0.8, 100_000)
    mapping = LogarithmicMapping(0.01)
    assert latency_keys(values[:2000]).tolist() == [mapping.key(v) for v in values[:2000]]
    sketch = LatencySketch()
    for chunk in np.array_split(values, 10):
        part = LatencySketch()
        part.add(chunk)
        sketch.merge(part)
    got = sketch.quantiles((50, 95, 99))
    ordered = np.sort(values)
    for q, v in got.items():
        rank = int(np.floor(q / 100 * (values.size - 1)))
        assert abs(v - ordered[rank]) <= 0.01 * ordered[rank] + 1e-12
        assert v == pytest.approx(np.percentile(values, q), rel=0.011)


def test_a_deleted_summary_is_rebuilt_and_results_do_not_change(mctx: Context, traffic: list[str]) -> None:
    model = traffic[1]
    window = dt.timedelta(hours=2, minutes=5)
    before = service.run_monitor(
        ctx=mctx, kind="drift", model=model, window=window, params={}, now=NOW, mode="incremental"
    )
    hour = int(START.timestamp()) // 3600 + 1
    mctx.store.delete(hour_key(model, hour))
    mctx.store.delete(minute_key(model, hour * 60 + 10))
    summary_cache_clear()  # as a new process: read summaries are cached, and those two are gone
    during = service.run_monitor(
        ctx=mctx, kind="drift", model=model, window=window, params={}, now=NOW, mode="incremental"
    )
    assert during.evidence["raw_minutes"] >= 1  # read from the (compacted) log instead
    assert during.evidence["versions"] == before.evidence["versions"]
    written = jobs.summarise_model(mctx, model, now=NOW)
    assert written == 2 and mctx.store.exists(hour_key(model, hour))
    after = service.run_monitor(
        ctx=mctx, kind="drift", model=model, window=window, params={}, now=NOW, mode="incremental"
    )
    assert after.evidence["versions"] == before.evidence["versions"]


def test_late_labels_update_summarised_hours_and_accuracy_equals_full_recomputation(mctx: Context) -> None:
    train_iris(mctx, name="late")
    rng = np.random.default_rng(9)
    ids: list[str] = []
    truth: list[str] = []
    made: list[float] = []
    for minute in range(HOURS * 60 + 7):
        frame = iris.iris_like_samples(10, seed=1000 + minute)
        end = START + dt.timedelta(minutes=minute + 1)
        ts = ts_spread(10, end=end, span=dt.timedelta(minutes=1))
        ids += write_predictions(mctx, model="late", frame=frame, ts=ts, id_prefix=f"late-{minute}")
        truth += frame[iris.TARGET].astype(str).tolist()
        made += ts.tolist()
    # each prediction labelled with probability 0.8, after 1 to 100 minutes; a fifth of labels disagree
    # with the answer; some ids get a second, newer label; some labels name ids never served
    delay = rng.uniform(60, 6000, len(ids))
    arrives = np.asarray(made) + delay
    labelled = rng.random(len(ids)) < 0.8
    wrong = rng.random(len(ids)) < 0.2
    classes = ["setosa", "versicolor", "virginica"]
    label = [classes[(classes.index(t) + 1) % 3] if w else t for t, w in zip(truth, wrong, strict=True)]
    passes = [START + dt.timedelta(hours=h, minutes=10) for h in (1, 2)] + [NOW]
    written = -np.inf
    for when in passes:
        cut = (jobs.closed_minute(when) * 60) - 1e-3
        due = np.flatnonzero(labelled & (arrives > written) & (arrives <= cut))
        for chunk in np.array_split(due, max(1, due.size // 200)):
            if chunk.size:
                write_feedback(
                    mctx,
                    model="late",
                    ids=[ids[i] for i in chunk],
                    labels=[label[i] for i in chunk],
                    ts=float(arrives[chunk].max()),
                )
        if when == passes[1]:  # a second, newer label for ids of the first hour, already indexed
            again = [i for i in range(0, 300, 7) if labelled[i]]
            write_feedback(
                mctx, model="late", ids=[ids[i] for i in again], labels=["virginica"] * len(again), ts=cut - 1
            )
            write_feedback(
                mctx,
                model="late",
                ids=["never-served-1", "never-served-2"],
                labels=["setosa"] * 2,
                ts=cut - 2,
            )
        written = cut
        jobs.run_pass(mctx, now=when, compact=when != passes[0])
    mark = labels.read_watermark(mctx.store, "late")
    assert mark is not None and mark.unmatched >= 2
    # the open hour's closed minutes have their own index; the closed hours' minute indexes are gone
    minute_indexes = {k.split("/minute=")[0] for k in mctx.store.list("labels/model=late") if "/minute=" in k}
    assert [f[-7:] for f in minute_indexes] == ["hour=09"]
    for window in (dt.timedelta(hours=1, minutes=3), dt.timedelta(hours=3, minutes=7)):
        clear_cache()
        params = {"min_labels": 10, "buckets": 5}
        exact = service.run_monitor(
            ctx=mctx, kind="accuracy", model="late", window=window, params=params, now=NOW, mode="exact"
        )
        fast = service.run_monitor(
            ctx=mctx, kind="accuracy", model="late", window=window, params=params, now=NOW, mode="incremental"
        )
        assert fast.evidence["indexed_hours"] >= 1
        assert fast.outcome is exact.outcome and fast.reason == exact.reason
        assert fast.evidence["parts"] == exact.evidence["parts"]

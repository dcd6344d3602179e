"""Drift monitor end to end: models trained through the services, real Parquet prediction logs."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mloncall.core.errors import InvalidInput, NotFound
from mloncall.core.outcome import Outcome
from mloncall.data import iris
from mloncall.monitoring import service
from mloncall.monitoring.schemas import BATCH_KINDS
from mloncall.stores.context import Context
from tests.helpers import train_iris
from tests.monitoring.conftest import NOW, ts_spread, write_corrupt, write_predictions

HOUR = dt.timedelta(hours=1)


def at(day: int) -> dt.datetime:
    """Each test keeps to its own day of the shared module installation."""
    return NOW + dt.timedelta(days=day)


def log_window(
    ctx: Context,
    model: str,
    *,
    n: int,
    end: dt.datetime,
    seed: int,
    shift: dict[str, float] | None = None,
    prefix: str = "p",
    version: int = 1,
) -> None:
    frame = iris.iris_like_samples(n, seed=seed, shift=shift)
    write_predictions(
        ctx, model=model, version=version, frame=frame, ts=ts_spread(n, end=end, span=HOUR), id_prefix=prefix
    )


def feature_rows(check_evidence: dict, version: str = "v1") -> dict[str, dict]:
    (v,) = [x for x in check_evidence["versions"] if f"v{x['version']}" == version]
    return {f["feature"]: f for f in v["features"]}


def test_small_reference_ks_finds_the_shifted_feature_only(mctx: Context, small_model: str) -> None:
    end = at(1)
    log_window(mctx, small_model, n=300, end=end, seed=1, shift={"petal_length": 1.5})
    check = service.run_monitor(ctx=mctx, kind="drift", model=small_model, window=HOUR, params={}, now=end)
    rows = feature_rows(check.evidence)
    assert rows["petal_length"]["drifted"] is True and rows["petal_length"]["method"] == "ks"
    assert rows["petal_length"]["ks_p"] < 0.05
    assert rows["sepal_width"]["drifted"] is False and rows["sepal_width"]["ks_p"] > 0.05
    assert {r["n_ref"] for r in rows.values()} == {150} and {r["n_cur"] for r in rows.values()} == {300}
    # one of four features drifted: below the dataset share of 0.5
    assert check.outcome is Outcome.SUCCESSFUL, check.reason
    assert "petal_length" in check.reason
    json.dumps(check.to_dict(), allow_nan=False)


def test_dataset_drift_fails_when_half_the_features_drift(mctx: Context, small_model: str) -> None:
    end = at(2)
    log_window(mctx, small_model, n=400, end=end, seed=2, shift={"petal_length": 1.5, "sepal_length": 1.0})
    check = service.run_monitor(ctx=mctx, kind="drift", model=small_model, window=HOUR, params={}, now=end)
    assert check.outcome is Outcome.FAILED
    assert "dataset drift: 2 of 4" in check.reason and "v1" in check.reason
    assert check.evidence["value"] == 0.5  # the headline number an alert shows: the drifted share
    stricter = service.run_monitor(
        ctx=mctx, kind="drift", model=small_model, window=HOUR, params={"drift_share": 0.75}, now=end
    )
    assert stricter.outcome is Outcome.SUCCESSFUL


def test_large_reference_uses_normalised_wasserstein(mctx: Context, big_model: str) -> None:
    end = at(3)
    log_window(mctx, big_model, n=3000, end=end, seed=3, shift={"petal_width": 0.5})
    check = service.run_monitor(ctx=mctx, kind="drift", model=big_model, window=HOUR, params={}, now=end)
    rows = feature_rows(check.evidence)
    assert {r["method"] for r in rows.values()} == {"wasserstein"}
    assert rows["petal_width"]["drifted"] is True and rows["petal_width"]["wasserstein_norm"] >= 0.1
    unshifted = [f for f in rows if f != "petal_width"]
    assert all(rows[f]["drifted"] is False for f in unshifted), {
        f: rows[f]["wasserstein_norm"] for f in unshifted
    }
    assert {r["n_ref"] for r in rows.values()} == {3000}
    # the prediction log labels are the true classes here: the class mix matches training
    (v,) = check.evidence["versions"]
    assert v["prediction"]["method"] == "jensenshannon" and v["prediction"]["drifted"] is False


def test_small_windows_are_insufficient_data_never_drift(
    mctx: Context, big_model: str, small_model: str
) -> None:
    end = at(4)
    log_window(mctx, big_model, n=300, end=end, seed=4, shift={"petal_width": 3.0, "petal_length": 3.0})
    check = service.run_monitor(ctx=mctx, kind="drift", model=big_model, window=HOUR, params={}, now=end)
    assert check.outcome is Outcome.INCONCLUSIVE
    assert "insufficient data: 300 rows" in check.reason and "500 needed" in check.reason
    log_window(mctx, small_model, n=60, end=end, seed=4, shift={"petal_width": 3.0})
    small = service.run_monitor(ctx=mctx, kind="drift", model=small_model, window=HOUR, params={}, now=end)
    assert small.outcome is Outcome.INCONCLUSIVE and "100 needed" in small.reason


def test_zero_rows_is_inconclusive(mctx: Context, small_model: str) -> None:
    check = service.run_monitor(ctx=mctx, kind="drift", model=small_model, window=HOUR, params={}, now=at(5))
    assert check.outcome is Outcome.INCONCLUSIVE and "0 rows" in check.reason
    report = service.drift_report(ctx=mctx, model=small_model, window=HOUR, now=at(5))
    assert report.versions == [] and report.rows == 0


def test_single_predicted_class_and_constant_feature_are_defined(mctx: Context, small_model: str) -> None:
    end = at(6)
    frame = iris.iris_like_samples(200, seed=6)
    frame["sepal_width"] = 3.0  # a constant feature
    write_predictions(
        mctx,
        model=small_model,
        frame=frame,
        ts=ts_spread(200, end=end, span=HOUR),
        labels=["setosa"] * 200,
        id_prefix="one",
    )
    check = service.run_monitor(ctx=mctx, kind="drift", model=small_model, window=HOUR, params={}, now=end)
    json.dumps(check.to_dict(), allow_nan=False)
    (v,) = check.evidence["versions"]
    assert v["prediction"]["drifted"] is True and v["prediction"]["method"] == "chisquare"
    assert v["prediction"]["current_counts"] == [200, 0, 0]
    rows = feature_rows(check.evidence)
    assert rows["sepal_width"]["drifted"] is True and rows["sepal_width"]["n_cur"] == 200


def test_drift_report_carries_histograms_on_shared_edges(mctx: Context, small_model: str) -> None:
    end = at(7)
    log_window(mctx, small_model, n=250, end=end, seed=7, shift={"petal_length": 1.0})
    report = service.drift_report(ctx=mctx, model=small_model, window=HOUR, now=end)
    data = report.to_dict()
    json.dumps(data, allow_nan=False)
    (v,) = data["versions"]
    assert v["reference"] == "iris:1"
    for f in v["features"]:
        h = f["histogram"]
        assert len(h["edges"]) == len(h["reference"]) + 1 == len(h["current"]) + 1
        assert sum(h["reference"]) == 150 and sum(h["current"]) == 250
    assert v["prediction"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert v["prediction"]["reference_counts"] == [50, 50, 50]
    table = report.rows_table()
    assert {"feature", "psi", "ks", "ks_p", "wasserstein_norm", "drifted", "method", "n_ref", "n_cur"} <= set(
        table[0]
    )


def test_several_versions_are_judged_each_and_the_worst_is_named(mctx: Context) -> None:
    train_iris(mctx, name="two")
    train_iris(mctx, name="two", seed=7)
    end = at(8)
    log_window(mctx, "two", n=300, end=end, seed=8, prefix="a", version=1)
    log_window(
        mctx,
        "two",
        n=300,
        end=end,
        seed=9,
        prefix="b",
        version=2,
        shift={"petal_length": 2.0, "petal_width": 1.0},
    )
    log_window(mctx, "two", n=20, end=end, seed=10, prefix="c", version=9)  # a version that is not registered
    check = service.run_monitor(ctx=mctx, kind="drift", model="two", window=HOUR, params={}, now=end)
    assert check.outcome is Outcome.FAILED
    assert check.reason.startswith("v2: dataset drift") and "v9" in check.reason
    assert check.evidence["deciding"] == ["v2"]
    outcomes = {v["version"]: v["outcome"] for v in check.evidence["versions"]}
    assert outcomes == {1: "successful", 2: "failed", 9: "inconclusive"}


def test_a_corrupt_log_file_is_skipped_and_reported(mctx: Context, small_model: str) -> None:
    end = at(9)
    log_window(mctx, small_model, n=300, end=end, seed=11)
    bad = write_corrupt(mctx, model=small_model, when=end - dt.timedelta(minutes=5))
    for kind in set(service.MONITOR_KINDS) - set(BATCH_KINDS):  # the batch ones read no log
        check = service.run_monitor(ctx=mctx, kind=kind, model=small_model, window=HOUR, params={}, now=end)
        assert check.outcome is not Outcome.ERROR
        skipped = check.evidence["skipped_files"]
        assert [s["file"] for s in skipped] == [bad], kind
        assert skipped[0]["kind"] == "predictions" and skipped[0]["reason"]
    drift = service.run_monitor(ctx=mctx, kind="drift", model=small_model, window=HOUR, params={}, now=end)
    assert drift.outcome is Outcome.SUCCESSFUL and drift.evidence["rows"] == 300


def test_params_and_kinds_are_checked_with_names(mctx: Context, small_model: str) -> None:
    assert service.validate_params("drift", {})["drift_share"] == 0.5
    assert service.validate_params("volume", {"lookback": "6h"})["lookback"] == dt.timedelta(hours=6)
    with pytest.raises(InvalidInput, match="unknown monitor kind 'drfit'"):
        service.validate_params("drfit", {})
    with pytest.raises(InvalidInput, match="drift_shar: unknown parameter"):
        service.validate_params("drift", {"drift_shar": 0.5})
    with pytest.raises(InvalidInput, match="max_rate"):
        service.validate_params("out_of_range", {"max_rate": 3})
    with pytest.raises(InvalidInput, match="ks_p_value"):
        service.validate_params("drift", {"ks_p_value": True})
    with pytest.raises(InvalidInput, match="lookback"):
        service.validate_params("volume", {"lookback": "soon"})
    with pytest.raises(InvalidInput, match="at least one"):
        service.validate_params("latency", {"max_p99_ms": None})
    with pytest.raises(InvalidInput, match="unknown monitor kind"):
        service.run_monitor(ctx=mctx, kind="nope", model=small_model, window=HOUR, params={})
    with pytest.raises(InvalidInput, match="window"):
        service.run_monitor(ctx=mctx, kind="drift", model=small_model, window=dt.timedelta(0), params={})
    with pytest.raises(NotFound):
        service.run_monitor(ctx=mctx, kind="drift", model="ghost", window=HOUR, params={})


def test_drift_over_slices_is_each_slice_s_own_report(mctx: Context, small_model: str) -> None:
    end = at(20)
    log_window(mctx, small_model, n=300, end=end - HOUR / 2, seed=20, prefix="calm")
    log_window(mctx, small_model, n=300, end=end, seed=21, shift={"petal_length": 1.5}, prefix="shifted")
    reports = service.drift_reports(ctx=mctx, model=small_model, window=HOUR, slices=4, now=end)
    assert [r.until for r in reports] == [end - HOUR * k / 4 for k in (3, 2, 1, 0)]
    for report in reports:
        alone = service.drift_report(ctx=mctx, model=small_model, window=HOUR / 4, now=report.until)
        mine, theirs = report.to_dict(), alone.to_dict()
        for evidence in ("files_read", "skipped_files"):  # one read of the whole window, not of the slice
            mine.pop(evidence), theirs.pop(evidence)
        assert mine == theirs
    assert [r.outcome for r in reports[:2]] != [r.outcome for r in reports[2:]]  # the shift shows late


def test_drift_over_slices_reads_the_monitors_summaries_where_the_window_is_incremental(
    mctx: Context, small_model: str
) -> None:
    """The dashboard's drift over time and the monitors take one path: each slice of an incremental window
    is the report a monitor reading that slice's summaries gives, and the late shift shows as it does."""
    from mloncall.monitoring import drift_windows
    from mloncall.monitoring.schemas import DriftParams
    from mloncall.monitoring.scope import scope_of

    end = at(21)
    log_window(mctx, small_model, n=300, end=end - HOUR / 2, seed=22, prefix="calm")
    log_window(mctx, small_model, n=300, end=end, seed=23, shift={"petal_length": 1.5}, prefix="shifted")
    reports = service.drift_reports(
        ctx=mctx, model=small_model, window=HOUR, slices=4, now=end, mode="incremental"
    )
    assert [r.until for r in reports] == [end - HOUR * k / 4 for k in (3, 2, 1, 0)]
    for report in reports:
        assert report.logs["path"] != "exact", report.logs
        alone = drift_windows.evaluate(
            scope_of(mctx, small_model, HOUR / 4, report.until, "incremental"), DriftParams()
        )
        assert report.to_dict() == alone.to_dict()
    assert [r.outcome for r in reports[:2]] != [r.outcome for r in reports[2:]]
    exact = service.drift_reports(ctx=mctx, model=small_model, window=HOUR, slices=4, now=end)
    assert [r.logs["path"] for r in exact] == ["exact"] * 4  # 600 rows: auto stays exact, as monitors do
    assert [r.outcome for r in exact] == [r.outcome for r in reports]

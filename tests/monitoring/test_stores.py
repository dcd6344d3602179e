"""Monitors read the logs the same way on a local folder and on S3, skipping a corrupt file on both."""

from __future__ import annotations

import datetime as dt

from mloncall.core.outcome import Outcome
from mloncall.data import iris
from mloncall.monitoring import service
from mloncall.stores.context import Context
from tests.helpers import train_iris
from tests.monitoring.conftest import NOW, ts_spread, write_corrupt, write_predictions


def test_drift_and_volume_on_any_store(any_store_ctx: Context) -> None:
    ctx = any_store_ctx
    train_iris(ctx)
    hour = dt.timedelta(hours=1)
    frame = iris.iris_like_samples(400, seed=30, shift={"petal_length": 2.0, "petal_width": 1.0})
    write_predictions(ctx, model="iris-classifier", frame=frame, ts=ts_spread(400, end=NOW, span=2 * hour))
    bad = write_corrupt(ctx, model="iris-classifier", when=NOW - dt.timedelta(minutes=3))
    drift = service.run_monitor(
        ctx=ctx, kind="drift", model="iris-classifier", window=hour, params={}, now=NOW
    )
    assert drift.outcome is Outcome.FAILED and drift.evidence["rows"] == 200
    assert [s["file"] for s in drift.evidence["skipped_files"]] == [bad]
    volume = service.run_monitor(
        ctx=ctx, kind="volume", model="iris-classifier", window=hour, params={"min_history": "30m"}, now=NOW
    )
    assert volume.outcome is Outcome.SUCCESSFUL, volume.reason
    assert volume.evidence["parts"]["all versions"]["ratio"] == 1.0

"""Monitoring fixtures: models trained through the training service, real prediction/feedback/rejection logs
written as Parquet through stores.predlog into the artifact store."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mloncall.data import iris
from mloncall.stores.context import Context
from mloncall.stores.predlog import FeedbackBatch, PredictionLog, partition
from tests.conftest import make_context
from tests.helpers import train_iris, write_csv

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
FEATURES = tuple(iris.FEATURES)
CLASSES = ("setosa", "versicolor", "virginica")


@pytest.fixture(scope="module")
def mctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    """One installation for a test module (training is the slow part); tests keep to their own time range."""
    c = make_context(tmp_path_factory.mktemp("monitoring") / "home")
    yield c
    c.close()


@pytest.fixture(scope="module")
def small_model(mctx: Context) -> str:
    """iris-classifier v1, trained on the 150 Iris rows (a reference <= 1000 rows: KS / chi-square)."""
    train_iris(mctx)
    return "iris-classifier"


@pytest.fixture(scope="module")
def big_model(mctx: Context, tmp_path_factory: pytest.TempPathFactory) -> str:
    """big v1, trained on 3000 Iris-like rows (a reference > 1000 rows: Wasserstein / Jensen-Shannon)."""
    path = write_csv(tmp_path_factory.mktemp("data") / "big.csv", iris.iris_like_samples(3000, seed=11))
    train_iris(mctx, name="big", data=Path(path))
    return "big"


def ts_spread(n: int, *, end: dt.datetime, span: dt.timedelta) -> np.ndarray:
    """n timestamps (epoch seconds) spread evenly over [end - span, end)."""
    start = (end - span).timestamp()
    return start + np.arange(n) * (span.total_seconds() / max(n, 1))


def write_predictions(
    ctx: Context,
    *,
    model: str,
    version: int = 1,
    frame: pd.DataFrame,
    ts: np.ndarray,
    labels: Sequence[str] | None = None,
    latency_ms: float | np.ndarray = 2.0,
    flags: list[list[str]] | None = None,
    id_prefix: str = "p",
    features: tuple[str, ...] = FEATURES,
    synthetic: bool = False,
) -> list[str]:
    """Log one row per frame row through PredictionLog (one request each, synthetic ones if asked) and
    flush; returns the ids."""
    log = PredictionLog(ctx.store, writer_id=f"{id_prefix}-{uuid.uuid4().hex[:6]}")
    n = len(frame)
    X = frame[list(features)].to_numpy(np.float64)
    preds = list(labels) if labels is not None else frame[iris.TARGET].astype(str).tolist()
    lat = np.broadcast_to(np.asarray(latency_ms, dtype=np.float64), (n,))
    ids = [f"{id_prefix}-{i}" for i in range(n)]
    for i in range(n):
        log.record(
            ts=float(ts[i]), model=model, version=version, route="stable", features=features,
            X=X[i : i + 1], ids=[ids[i]], labels=[preds[i]], probabilities=np.full((1, 3), 1 / 3, np.float32),
            latency_ms=float(lat[i]), flags=[flags[i]] if flags is not None else None,
            shadow_version=None, shadow_labels=None, request_id=None, synthetic=synthetic,
        )  # fmt: skip
    log.flush()
    return ids


def write_feedback(ctx: Context, *, model: str, ids: Sequence[str], labels: Sequence[str], ts: float) -> None:
    log = PredictionLog(ctx.store, writer_id=f"fb-{uuid.uuid4().hex[:6]}")
    log.record_feedback(FeedbackBatch(ts=ts, model=model, ids=list(ids), labels=list(labels)))
    log.flush()


def set_errors(ctx: Context, *, model: str, failing: set[str] | None) -> None:
    """Rewrite the model's prediction files: `error` set on the failing ids, or (None) no error column at all,
    as logs written before the serving plane recorded errors."""
    for key in ctx.store.list(f"predictions/model={model}"):
        table = pq.read_table(io.BytesIO(ctx.store.get_bytes(key)))
        for name in ("error", "status"):
            if name in table.column_names:
                table = table.drop_columns([name])
        if failing is not None:
            errors = [
                ("model failed: boom" if i in failing else None) for i in table.column("id").to_pylist()
            ]
            table = table.append_column("error", pa.array(errors, pa.string()))
        buf = io.BytesIO()
        pq.write_table(table, buf)
        ctx.store.put_bytes(key, buf.getvalue())


def write_rejections(ctx: Context, *, model: str, rows: list[dict[str, Any]], name: str = "r1") -> None:
    """A rejections log file (ts, model, reason, field) in the same partition layout."""
    ts = [r["ts"] for r in rows]
    table = pa.table(
        {
            "ts": pa.array([round(t * 1e6) for t in ts], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "model": pa.array([model] * len(rows), pa.string()),
            "reason": pa.array([r["reason"] for r in rows], pa.string()),
            "field": pa.array([r.get("field") for r in rows], pa.string()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    hour = int(ts[0] // 3600)
    ctx.store.put_bytes(f"rejections/model={model}/{partition(hour)}/{name}.parquet", buf.getvalue())


def write_corrupt(ctx: Context, *, model: str, when: dt.datetime, name: str = "broken") -> str:
    """A truncated Parquet file under the model's predictions/ partition for `when`."""
    frame = iris.iris_like_samples(20, seed=3)
    key_before = set(ctx.store.list(f"predictions/model={model}"))
    write_predictions(
        ctx,
        model=model,
        frame=frame,
        ts=ts_spread(20, end=when, span=dt.timedelta(minutes=1)),
        id_prefix=name,
    )
    new = sorted(set(ctx.store.list(f"predictions/model={model}")) - key_before)
    data = ctx.store.get_bytes(new[0])
    ctx.store.put_bytes(new[0], data[: len(data) // 2])
    return new[0]

"""Canary analysis over logs written to a real artifact store and read back through the summaries' path
(`monitoring.served`), as the rollout reads them."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mloncall.core.errors import InvalidInput
from mloncall.core.outcome import Outcome
from mloncall.monitoring.served import ServedWindow, served_window
from mloncall.rollout.analysis import Sides, Thresholds, analyse_canary, class_shift_p, compare, js_distance
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.predlog import partition

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CLASSES = ["a", "b", "c"]
MODEL = "m"


def _ts(values: list[dt.datetime]) -> pa.Array:
    return pa.array(values, pa.timestamp("us", tz="UTC"))


def _put(store: ArtifactStore, kind: str, table: pa.Table) -> None:
    """One log file per hour the rows fall in, laid out as the writer lays them out."""
    hours = np.asarray(pc.cast(table.column("ts"), pa.int64())) // 3_600_000_000
    for hour in np.unique(hours).tolist():
        part = table.filter(pa.array(hours == hour))
        buf = io.BytesIO()
        pq.write_table(part, buf)
        store.put_bytes(
            f"{kind}/model={MODEL}/{partition(hour)}/t-{uuid.uuid4().hex[:8]}.parquet", buf.getvalue()
        )


def _log(rows: list[dict[str, object]]) -> pa.Table:
    return pa.table(
        {
            "id": [str(r["id"]) for r in rows],
            "ts": _ts([r["ts"] for r in rows]),  # type: ignore[misc]
            "version": pa.array([r["version"] for r in rows], pa.int64()),
            "label": [r["label"] for r in rows],
            "latency_ms": pa.array([r.get("latency_ms", 1.0) for r in rows], pa.float64()),
            "shadow_label": [r.get("shadow_label") for r in rows],
            "error": [r.get("error") for r in rows],
        }
    )


def _feedback(labels: dict[str, str]) -> pa.Table:
    return pa.table(
        {
            "prediction_id": list(labels),
            "label": list(labels.values()),
            "ts": _ts([T0 + dt.timedelta(minutes=30)] * len(labels)),
        }
    )


def _served(
    tmp_path: Path, table: pa.Table, feedback: pa.Table | None, since: dt.datetime, until: dt.datetime
) -> ServedWindow:
    store = ArtifactStore(str(tmp_path / "store"))
    if not store.list(f"predictions/model={MODEL}"):
        _put(store, "predictions", table)
        if feedback is not None:
            _put(store, "feedback", feedback)
    return served_window(store, MODEL, since, until, now=until, versions={})


def _traffic(
    n_stable: int, n_canary: int, *, canary_labels: str = "same", seed: int = 0, **extra: object
) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for i in range(n_stable + n_canary):
        truth = CLASSES[rng.integers(3)]
        canary = i >= n_stable
        label = truth
        if canary and canary_labels == "rotated":
            label = CLASSES[(CLASSES.index(truth) + 1) % 3]
        row = {
            "id": f"p{i}",
            "ts": T0 + dt.timedelta(seconds=i * 0.01),
            "version": 2 if canary else 1,
            "label": label,
        }
        if canary:
            row["shadow_label"] = truth
        row.update({k: v for k, v in extra.items() if canary})
        rows.append(row)
    return _log(rows)


def _run(
    tmp_path: Path,
    table: pa.Table,
    feedback: pa.Table | None = None,
    min_requests: int = 50,
    **overrides: float,
):  # type: ignore[no-untyped-def]
    until = T0 + dt.timedelta(hours=1)
    window = _served(tmp_path, table, feedback, T0, until)
    return analyse_canary(
        step=window,
        rollout=window,
        stable=1,
        canary=2,
        classes=CLASSES,
        min_requests=min_requests,
        thresholds=Thresholds.from_overrides(overrides),
    )


def test_healthy_canary_passes_with_evidence(tmp_path: Path) -> None:
    result = _run(tmp_path, _traffic(300, 100))
    assert result.outcome is Outcome.SUCCESSFUL, result.reason
    names = {c.name for c in result.checks}
    assert {"traffic", "error rate", "p99 latency", "disagreement", "class mix"} <= names
    assert any(s.startswith("accuracy") for s in result.skipped)  # no feedback yet: skipped, said so
    logs = result.checks[0].evidence["logs"]["step"]
    assert logs["path"] == "incremental" and logs["files_read"] == {"predictions": 1}


def test_too_little_traffic_is_inconclusive_never_judged(tmp_path: Path) -> None:
    result = _run(tmp_path, _traffic(300, 10, canary_labels="rotated"))
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "10 canary requests" in result.reason


def test_disagreeing_canary_fails_and_names_the_metric(tmp_path: Path) -> None:
    result = _run(tmp_path, _traffic(300, 100, canary_labels="rotated"))
    assert result.outcome is Outcome.FAILED
    failed = {c.name for c in result.checks if c.outcome is Outcome.FAILED}
    assert "disagreement" in failed
    assert "disagreement" in result.reason


def test_errors_and_latency_fail_the_canary(tmp_path: Path) -> None:
    assert _run(tmp_path / "errors", _traffic(300, 100, error="boom")).outcome is Outcome.FAILED
    slow = _run(tmp_path / "slow", _traffic(300, 100, latency_ms=50.0))
    assert slow.outcome is Outcome.FAILED and "p99 latency" in slow.reason
    latency = next(c for c in slow.checks if c.name == "p99 latency")
    # from the DDSketch: within 1% of the exact 50 ms and 1 ms
    assert latency.evidence["candidate_ms"] == pytest.approx(50.0, rel=0.01)
    assert latency.evidence["baseline_ms"] == pytest.approx(1.0, rel=0.01)


def test_accuracy_is_compared_on_the_same_requests(tmp_path: Path) -> None:
    table = _traffic(300, 100, canary_labels="rotated")
    truth = {
        i: (sh if sh is not None else lbl)
        for i, lbl, sh in zip(
            table.column("id").to_pylist(),
            table.column("label").to_pylist(),
            table.column("shadow_label").to_pylist(),
            strict=True,
        )
    }
    result = _run(tmp_path, table, _feedback(truth), max_disagreement=1.0)
    acc = next(c for c in result.checks if c.name == "accuracy")
    assert acc.outcome is Outcome.FAILED
    assert acc.evidence == {
        "candidate": 0.0, "baseline": 1.0, "labels": 100, "paired": True, "threshold": 0.05
    }  # fmt: skip


def test_unpaired_accuracy_drop_must_be_significant(tmp_path: Path) -> None:
    def rows(version: int, correct: int, n: int, offset: int) -> list[dict[str, object]]:
        return [
            {"id": f"r{offset + i}", "ts": T0, "version": version, "label": "a" if i < correct else "b"}
            for i in range(n)
        ]

    def judge(name: str, candidate: list[dict[str, object]], baseline: list[dict[str, object]]) -> Outcome:
        table = _log(candidate + baseline)
        truth = _feedback({str(r["id"]): "a" for r in candidate + baseline})
        window = _served(tmp_path / name, table, truth, T0, T0 + dt.timedelta(hours=1))
        sides = Sides(window.of(2), window.of(1), "v2", "v1", Thresholds(max_class_shift=1.0))
        checks, _ = compare(sides, classes=CLASSES, disagreement=False)
        return next(c for c in checks if c.name == "accuracy").outcome

    # 0.89 vs 0.95 on ~100 labels is within noise; 0.70 vs 0.95 on 400 is not.
    assert judge("noise", rows(2, 89, 100, 0), rows(1, 95, 100, 1000)) is Outcome.SUCCESSFUL
    assert judge("drop", rows(2, 280, 400, 0), rows(1, 380, 400, 1000)) is Outcome.FAILED


def test_class_shift_needs_effect_and_significance() -> None:
    same = np.array([100, 100, 100])
    assert js_distance(same, same) == pytest.approx(0.0)
    assert class_shift_p(same, same) == pytest.approx(1.0)
    shifted = np.array([280, 10, 10])
    assert js_distance(shifted, same) > 0.3 and class_shift_p(shifted, same) < 1e-6
    tiny = np.array([3, 0, 0])
    assert class_shift_p(tiny, np.array([1, 1, 1])) > 0.001  # a big distance on 3 rows is not significant


def test_thresholds_refuse_unknown_or_bad_values() -> None:
    with pytest.raises(InvalidInput, match="unknown threshold"):
        Thresholds.from_overrides({"max_fun": 1})
    with pytest.raises(InvalidInput, match="must be a number"):
        Thresholds.from_overrides({"max_disagreement": "lots"})
    with pytest.raises(InvalidInput, match=">= 0"):
        Thresholds.from_overrides({"max_disagreement": -1})
    assert Thresholds.from_overrides({"max_disagreement": "0.3"}).max_disagreement == 0.3

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from mloncall.core.errors import InvalidInput
from mloncall.core.outcome import Outcome
from mloncall.rollout.analysis import Thresholds, analyse_canary, class_shift_p, js_distance

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CLASSES = ["a", "b", "c"]


def _log(rows: list[dict[str, object]]) -> pa.Table:
    return pa.table(
        {
            "id": [str(r["id"]) for r in rows],
            "ts": pa.array([r["ts"] for r in rows], pa.timestamp("us", tz="UTC")),
            "version": pa.array([r["version"] for r in rows], pa.int64()),
            "label": [r["label"] for r in rows],
            "latency_ms": pa.array([r.get("latency_ms", 1.0) for r in rows], pa.float64()),
            "shadow_label": [r.get("shadow_label") for r in rows],
            "error": [r.get("error") for r in rows],
        }
    )


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


def _run(table: pa.Table, feedback: pa.Table | None = None, min_requests: int = 50, **overrides: float):
    return analyse_canary(
        predictions=table,
        feedback=feedback,
        stable=1,
        canary=2,
        classes=CLASSES,
        step_since=T0,
        rollout_since=T0,
        until=T0 + dt.timedelta(hours=1),
        min_requests=min_requests,
        thresholds=Thresholds.from_overrides(overrides),
    )


def test_healthy_canary_passes_with_evidence() -> None:
    result = _run(_traffic(300, 100))
    assert result.outcome is Outcome.SUCCESSFUL, result.reason
    names = {c.name for c in result.checks}
    assert {"traffic", "error rate", "p99 latency", "disagreement", "class mix"} <= names
    assert any(s.startswith("accuracy") for s in result.skipped)  # no feedback yet: skipped, said so


def test_too_little_traffic_is_inconclusive_never_judged() -> None:
    result = _run(_traffic(300, 10, canary_labels="rotated"))
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "10 canary requests" in result.reason


def test_disagreeing_canary_fails_and_names_the_metric() -> None:
    result = _run(_traffic(300, 100, canary_labels="rotated"))
    assert result.outcome is Outcome.FAILED
    failed = {c.name for c in result.checks if c.outcome is Outcome.FAILED}
    assert "disagreement" in failed
    assert "disagreement" in result.reason


def test_errors_and_latency_fail_the_canary() -> None:
    assert _run(_traffic(300, 100, error="boom")).outcome is Outcome.FAILED
    slow = _run(_traffic(300, 100, latency_ms=50.0))
    assert slow.outcome is Outcome.FAILED and "p99 latency" in slow.reason


def test_accuracy_is_compared_on_the_same_requests() -> None:
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
    feedback = pa.table({"prediction_id": list(truth), "label": list(truth.values())})
    result = _run(table, feedback, max_disagreement=1.0)
    acc = next(c for c in result.checks if c.name == "accuracy")
    assert acc.outcome is Outcome.FAILED
    assert acc.evidence == {
        "candidate": 0.0, "baseline": 1.0, "labels": 100, "paired": True, "threshold": 0.05
    }  # fmt: skip


def test_unpaired_accuracy_drop_must_be_significant() -> None:
    from mloncall.rollout.analysis import Sides, Thresholds, compare, feedback_truth

    def rows(version: int, correct: int, n: int, offset: int) -> pa.Table:
        return _log(
            [
                {"id": f"r{offset + i}", "ts": T0, "version": version, "label": "a" if i < correct else "b"}
                for i in range(n)
            ]
        )

    def judge(candidate: pa.Table, baseline: pa.Table) -> Outcome:
        ids = candidate.column("id").to_pylist() + baseline.column("id").to_pylist()
        truth = feedback_truth(pa.table({"prediction_id": ids, "label": ["a"] * len(ids)}))
        sides = Sides(candidate, baseline, "v2", "v1", Thresholds(max_class_shift=1.0))
        checks, _ = compare(sides, classes=CLASSES, truth=truth, disagreement=False)
        return next(c for c in checks if c.name == "accuracy").outcome

    # 0.89 vs 0.95 on ~100 labels is within noise; 0.70 vs 0.95 on 400 is not.
    assert judge(rows(2, 89, 100, 0), rows(1, 95, 100, 1000)) is Outcome.SUCCESSFUL
    assert judge(rows(2, 280, 400, 0), rows(1, 380, 400, 1000)) is Outcome.FAILED


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

"""Performance monitors: accuracy and per-class recall from late feedback labels, error rate, latency.

Accuracy is bucketed by the time the prediction was made, not the time its label arrived: feedback is
joined to predictions by id (the newest label wins when one was sent twice). Labels arrive late, so a
window is only judged once at least `min_label_coverage` of its predictions have a label and at least
`min_labels` labels arrived; until then it is inconclusive, "waiting for labels". It is compared with the
accuracy recorded for the version at training (holdout) minus a tolerance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

from mloncall.core.outcome import Outcome
from mloncall.monitoring.reference import VersionInfo
from mloncall.monitoring.schemas import AccuracyParams, ErrorRateParams, LatencyParams
from mloncall.monitoring.stats import (
    PERCENTILES,
    Accuracy,
    Truth,
    encode,
    error_mask,
    latencies_ms,
    percentiles,
    wilson_interval,
)
from mloncall.monitoring.verdict import Part, by_version, version_label
from mloncall.stores.predlog import LogWindow, from_us, to_us, ts_us


def labelled_rows(predictions: pa.Table, feedback: pa.Table | None) -> pa.Table:
    """version, ts (us), predicted, truth for every served prediction (truth null while unlabelled)."""
    served = predictions.filter(pa.array(~error_mask(predictions)))
    n = served.num_rows
    return pa.table(
        {
            "version": served.column("version")
            if "version" in served.column_names
            else pa.nulls(n, pa.int32()),
            "ts_us": pa.array(ts_us(served)),
            "predicted": served.column("label")
            if "label" in served.column_names
            else pa.nulls(n, pa.string()),
            "truth": Truth(feedback).of(served.column("id")),
        }
    )


@dataclass
class AccuracyCounts:
    """Answered predictions of one version, labelled and right, per time bucket and per true class; what
    the accuracy verdict rests on, summed the same way from the log (exact) or from label indexes."""

    buckets: int
    predictions: np.ndarray = field(init=False)
    labelled: np.ndarray = field(init=False)
    correct: np.ndarray = field(init=False)
    support: dict[str, int] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.predictions = np.zeros(self.buckets, np.int64)
        self.labelled = np.zeros(self.buckets, np.int64)
        self.correct = np.zeros(self.buckets, np.int64)

    def add(self, bucket: np.ndarray, predicted: np.ndarray, truth: np.ndarray, classes: list[str]) -> None:
        """Rows by bucket, with predicted and true class codes (-1: none) into `classes`."""
        has = truth >= 0
        right = has & (predicted == truth)
        self.predictions += np.bincount(bucket, minlength=self.buckets)
        self.labelled += np.bincount(bucket[has], minlength=self.buckets)
        self.correct += np.bincount(bucket[right], minlength=self.buckets)
        k = len(classes)
        support = np.bincount(truth[has], minlength=k)
        hits = np.bincount(truth[right], minlength=k)
        for i in np.flatnonzero(support):
            name = classes[i]
            self.support[name] = self.support.get(name, 0) + int(support[i])
            self.hits[name] = self.hits.get(name, 0) + int(hits[i])

    def add_confusion(self, bucket: int, confusion: np.ndarray, classes: list[str]) -> None:
        """A block of rows of one bucket as counts [true + 1, predicted + 1] (index 0: none)."""
        total = int(confusion.sum())
        if total == 0:
            return
        labelled = confusion[1:, :]
        right = np.diagonal(confusion[1:, 1:])
        self.predictions[bucket] += total
        self.labelled[bucket] += int(labelled.sum())
        self.correct[bucket] += int(right.sum())
        support = labelled.sum(axis=1)
        for i in np.flatnonzero(support):
            name = classes[i]
            self.support[name] = self.support.get(name, 0) + int(support[i])
            self.hits[name] = self.hits.get(name, 0) + int(right[i])


def bucket_of(ts: np.ndarray, since_us: int, bucket_us: int, buckets: int) -> np.ndarray:
    return np.minimum((ts - since_us) // bucket_us, buckets - 1).astype(np.int64)


def count_rows(
    counts: dict[int | None, AccuracyCounts],
    joined: pa.Table,
    params: AccuracyParams,
    since_us: int,
    bucket_us: int,
) -> None:
    """Fold a joined table (version, ts_us, predicted, truth as strings) into per-version counts."""
    for version, rows in by_version(joined):
        classes: dict[str, int] = {}
        truth = encode(rows.column("truth"), classes)
        predicted = encode(rows.column("predicted"), classes)
        ts = np.asarray(rows.column("ts_us").to_numpy(zero_copy_only=False), dtype=np.int64)
        into = counts.setdefault(version, AccuracyCounts(params.buckets))
        names = [c for c, _ in sorted(classes.items(), key=lambda kv: kv[1])]
        into.add(bucket_of(ts, since_us, bucket_us, params.buckets), predicted, truth, names)


def accuracy(
    *,
    predictions: LogWindow,
    feedback: LogWindow,
    versions: dict[int, VersionInfo],
    params: AccuracyParams,
) -> list[Part]:
    """Per version: accuracy and per-class recall of the predictions made in the window, judged once enough
    labels arrived, against the version's recorded accuracy minus `tolerance`."""
    if predictions.table is None or predictions.rows == 0:
        return []
    joined = labelled_rows(predictions.table, feedback.table)
    since_us, until_us = to_us(predictions.since), to_us(predictions.until)
    bucket_us = max((until_us - since_us) // params.buckets, 1)
    counts: dict[int | None, AccuracyCounts] = {}
    count_rows(counts, joined, params, since_us, bucket_us)
    return accuracy_parts(counts, versions, params, since_us, bucket_us)


def accuracy_parts(
    counts: dict[int | None, AccuracyCounts],
    versions: dict[int, VersionInfo],
    params: AccuracyParams,
    since_us: int,
    bucket_us: int,
) -> list[Part]:
    """The verdict of each version with predictions, in version order (rows without a version last)."""
    parts: list[Part] = []
    order = sorted(v for v in counts if v is not None) + ([None] if None in counts else [])
    for version in order:
        c = counts[version]
        if int(c.predictions.sum()) == 0:
            continue
        info = versions.get(version) if version is not None else None
        evidence = _accuracy_evidence(c, info, params, since_us, bucket_us)
        parts.append(_judge_accuracy(version_label(version), evidence, params))
    return parts


def _accuracy_evidence(
    c: AccuracyCounts, info: VersionInfo | None, params: AccuracyParams, since_us: int, bucket_us: int
) -> dict[str, Any]:
    """What the verdict on one version's predictions rests on: coverage, accuracy, recall, buckets."""
    n, labelled, correct = int(c.predictions.sum()), int(c.labelled.sum()), int(c.correct.sum())
    acc = Accuracy(labelled, correct)
    baseline = params.baseline if params.baseline is not None else (info.accuracy if info else None)
    low, high = wilson_interval(acc.correct, acc.labelled)
    recall = {
        k: {
            "recall": c.hits[k] / c.support[k],
            "support": c.support[k],
            "baseline": info.recall.get(k) if info else None,
        }
        for k in sorted(c.support)
    }
    buckets = [
        {
            "start": from_us(since_us + i * bucket_us).isoformat(),
            "predictions": int(c.predictions[i]),
            "labelled": int(c.labelled[i]),
            "accuracy": int(c.correct[i]) / int(c.labelled[i]) if c.labelled[i] else None,
        }
        for i in range(params.buckets)
    ]
    return {
        "predictions": n,
        "labelled": acc.labelled,
        "label_coverage": acc.labelled / n if n else 0.0,
        "accuracy": acc.value,
        "accuracy_ci95": [low, high] if acc.labelled else None,
        "baseline_accuracy": baseline,
        "tolerance": params.tolerance,
        "min_accuracy": (baseline - params.tolerance) if baseline is not None else None,
        "min_labels": params.min_labels,
        "min_label_coverage": params.min_label_coverage,
        "per_class": recall,
        "buckets": buckets,
    }


def _judge_accuracy(label: str, evidence: dict[str, Any], params: AccuracyParams) -> Part:
    """Waiting for labels, no recorded accuracy to compare with, or the accuracy and recall floors."""
    n, labelled, coverage = evidence["predictions"], evidence["labelled"], evidence["label_coverage"]
    acc, baseline = evidence["accuracy"], evidence["baseline_accuracy"]
    if labelled < params.min_labels or coverage < params.min_label_coverage:
        return Part(
            label, Outcome.INCONCLUSIVE,
            f"waiting for labels: {labelled} of {n} predictions labelled ({coverage:.0%}); need at least "
            f"{params.min_labels} labels and {params.min_label_coverage:.0%} coverage", evidence,
        )  # fmt: skip
    assert acc is not None
    if baseline is None:
        return Part(
            label, Outcome.INCONCLUSIVE,
            f"accuracy {acc:.3f} on {labelled} labels, but the version records no accuracy to compare with "
            "(set params.baseline)", evidence,
        )  # fmt: skip
    floor = baseline - params.tolerance
    failures = []
    if acc < floor:
        failures.append(
            f"accuracy {acc:.3f} < {floor:.3f} (recorded {baseline:.3f} - {params.tolerance:g}) on {labelled} labels"
        )
    if params.recall_tolerance is not None:
        for c, row in evidence["per_class"].items():
            base = row["baseline"]
            if (
                base is not None
                and row["support"] >= params.min_class_labels
                and row["recall"] < base - params.recall_tolerance
            ):
                failures.append(
                    f"recall of {c} {row['recall']:.3f} < {base - params.recall_tolerance:.3f} ({row['support']} labels)"
                )
    if failures:
        return Part(label, Outcome.FAILED, "; ".join(failures), evidence)
    return Part(
        label, Outcome.SUCCESSFUL,
        f"accuracy {acc:.3f} >= {floor:.3f} (recorded {baseline:.3f} - {params.tolerance:g}) on {labelled} labels",
        evidence,
    )  # fmt: skip


def error_rate(*, predictions: LogWindow, params: ErrorRateParams) -> list[Part]:
    """Per version, the share of logged requests that failed (a non-null `error`)."""
    parts: list[Part] = []
    has_column = predictions.has("error")
    for version, rows in by_version(predictions.table):
        n = rows.num_rows
        errors = int(np.count_nonzero(error_mask(rows)))
        parts.append(error_rate_part(version_label(version), n, errors, has_column, params))
    return parts


def error_rate_part(label: str, n: int, errors: int, has_column: bool, params: ErrorRateParams) -> Part:
    """One version's error rate against its limit (inconclusive on too few rows); raw rows and summaries
    judge alike through this."""
    rate = errors / n if n else 0.0
    evidence = {
        "rows": n, "errors": errors, "error_rate": rate, "max_error_rate": params.max_error_rate,
        "min_rows": params.min_rows, "error_column": "present" if has_column else "absent",
    }  # fmt: skip
    if n < params.min_rows:
        reason = f"insufficient data: {n} rows, at least {params.min_rows} needed"
        return Part(label, Outcome.INCONCLUSIVE, reason, evidence)
    failed = rate > params.max_error_rate
    reason = f"error rate {rate:.2%} {'>' if failed else '<='} {params.max_error_rate:.2%} ({errors} of {n})"
    return Part(label, Outcome.FAILED if failed else Outcome.SUCCESSFUL, reason, evidence)


def latency_part(
    label: str, n: int, quantiles: Callable[[], dict[int, float]], params: LatencyParams, **extra: Any
) -> Part:
    """One version's p50/p95/p99 against the configured limits (inconclusive on too few latencies); raw rows
    and summaries judge alike through this. `quantiles` is asked only when there are enough."""
    limits = {50: params.max_p50_ms, 95: params.max_p95_ms, 99: params.max_p99_ms}
    evidence: dict[str, Any] = {
        "rows": n, "limits_ms": {f"p{q}": v for q, v in limits.items() if v is not None},
        "min_rows": params.min_rows, **extra,
    }  # fmt: skip
    if n < params.min_rows:
        reason = f"insufficient data: {n} latencies, at least {params.min_rows} needed"
        return Part(label, Outcome.INCONCLUSIVE, reason, evidence)
    observed = {f"p{q}": v for q, v in quantiles().items()}
    evidence.update({f"{k}_ms": v for k, v in observed.items()})
    over = [
        f"p{q} {observed[f'p{q}']:.1f} ms > {limit:g} ms"
        for q, limit in limits.items()
        if limit is not None and observed[f"p{q}"] > limit
    ]
    if over:
        return Part(label, Outcome.FAILED, "latency over the limit: " + ", ".join(over), evidence)
    summary = ", ".join(f"{k} {v:.1f} ms" for k, v in observed.items())
    return Part(label, Outcome.SUCCESSFUL, f"latency within limits: {summary}", evidence)


def latency(*, predictions: LogWindow, params: LatencyParams) -> list[Part]:
    """Per version, p50/p95/p99 of `latency_ms` (per logged row) against the configured limits."""
    parts: list[Part] = []
    for version, rows in by_version(predictions.table):
        lat = latencies_ms(rows)
        parts.append(
            latency_part(
                version_label(version), int(lat.size), partial(percentiles, lat, PERCENTILES), params
            )
        )
    return parts


def window_of(
    *, until: dt.datetime, window: dt.timedelta, offset: dt.timedelta
) -> tuple[dt.datetime, dt.datetime]:
    """[since, until) of a window that ends `offset` before `until` (to wait for labels)."""
    end = until - offset
    return end - window, end

"""Canary analysis: compare the canary with the stable version over a window of live serving data.

Each metric becomes a `Check` with the project's ordered outcome and its evidence; the worst one wins.
Default thresholds (each can be overridden per deploy with `--threshold NAME=VALUE`):

| threshold | default | the canary fails when |
| --- | --- | --- |
| max_error_rate | 0.01 | its error rate exceeds the stable's by more than this |
| max_latency_ratio, latency_slack_ms | 2.0, 5.0 | its p99 latency > ratio x stable p99 + slack |
| max_disagreement | 0.15 | on more than this share of its requests the stable version predicts another class |
| max_class_shift, class_shift_p | 0.1, 0.001 | the Jensen-Shannon distance of predicted-class mixes exceeds 0.1 *and* a chi-square test gives p < 0.001 (a real shift, not noise) |
| max_accuracy_drop, min_labels | 0.05, 20 | on at least 20 labelled requests, its accuracy trails the stable's on *the same requests* (the stable's shadow scores) by more than 0.05 |
| accuracy_p | 0.01 | (without shadow scores, e.g. acceptance after promotion) the drop is also significant: one-sided two-proportion z-test p < 0.01 |

Both sides are read from the per-minute summaries and label indexes the monitors read
(`monitoring.served`), the open minute summarised on demand from the log by the same builder; the p99
latency comes from the summaries' DDSketch (within 1% of the value of its rank). Only routed requests count:
explicit `/versions/{v}` calls (e.g. smoke tests) are not the traffic being compared.

Fewer than `min_requests` canary requests in the window make the analysis inconclusive: nothing is judged
on too little traffic. A metric without data (no feedback labels yet, no shadow scores) is skipped and
listed as such; it never passes silently.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from mloncall.core.errors import InvalidInput
from mloncall.core.outcome import Check, Outcome, worst
from mloncall.monitoring.served import ServedWindow, VersionServed
from mloncall.monitoring.sketches import LATENCY_ACCURACY
from mloncall.monitoring.stats import drop_p_value


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float = 0.01
    max_latency_ratio: float = 2.0
    latency_slack_ms: float = 5.0
    max_disagreement: float = 0.15
    max_class_shift: float = 0.1
    class_shift_p: float = 0.001
    max_accuracy_drop: float = 0.05
    accuracy_p: float = 0.01
    min_labels: int = 20

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None) -> Thresholds:
        """Defaults with overrides applied; unknown names and bad values are refused with the reason."""
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in (overrides or {}).items():
            if key not in known:
                raise InvalidInput(f"unknown threshold {key!r}: known are {', '.join(sorted(known))}")
            try:
                value = int(raw) if key == "min_labels" else float(raw)
            except (TypeError, ValueError):
                raise InvalidInput(f"threshold {key} must be a number, got {raw!r}") from None
            if not math.isfinite(value) or value < 0:
                raise InvalidInput(f"threshold {key} must be a finite number >= 0, got {raw!r}")
            values[key] = value
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Analysis:
    """The verdict on one window, the checks behind it, and the metrics that had no data."""

    outcome: Outcome
    checks: list[Check]
    skipped: list[str]
    counts: dict[str, int]
    since: dt.datetime
    until: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.label,
            "checks": [c.to_dict() for c in self.checks],
            "skipped": self.skipped,
            "counts": self.counts,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
        }

    @property
    def reason(self) -> str:
        bad = [c for c in self.checks if c.outcome is self.outcome and c.outcome is not Outcome.SUCCESSFUL]
        if bad:
            return "; ".join(f"{c.name}: {c.reason}" for c in bad)
        return "all checks passed: " + ", ".join(c.name for c in self.checks)


def _p99(side: VersionServed | None) -> float | None:
    """The p99 latency of a side's routed requests, from its sketch (within LATENCY_ACCURACY of the value
    of that rank)."""
    if side is None or side.summary.routed.latency.n == 0:
        return None
    return side.summary.routed.latency.quantiles((99,))[99]


def class_counts(side: VersionServed | None, classes: list[str]) -> np.ndarray:
    """Predicted-class counts of a side's routed requests in the given class order (failed requests have no
    class, and a load test's synthetic requests no meaningful one: neither is counted)."""
    predicted = side.summary.routed.predicted if side is not None else {}
    return np.array([predicted.get(c, 0) for c in classes], dtype=np.int64)


def js_distance(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, 0..1) between two count vectors."""
    from scipy.spatial.distance import jensenshannon

    if p_counts.sum() == 0 or q_counts.sum() == 0:
        return 0.0
    return float(jensenshannon(p_counts / p_counts.sum(), q_counts / q_counts.sum(), base=2))


def class_shift_p(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """Chi-square test p-value that both samples come from the same class mix (1.0 when untestable)."""
    from scipy.stats import chi2_contingency

    table = np.vstack([p_counts, q_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(chi2_contingency(table).pvalue)


def _check(name: str, failed: bool, reason: str, evidence: dict[str, Any]) -> Check:
    return Check(name, Outcome.FAILED if failed else Outcome.SUCCESSFUL, reason, evidence)


@dataclass(frozen=True)
class Sides:
    """The two sides being compared (a version's routed requests each, from the summaries), by name, and the
    thresholds that judge them: the canary against stable during a rollout, the new version against the
    previous after one."""

    candidate: VersionServed | None
    baseline: VersionServed | None
    candidate_name: str
    baseline_name: str
    t: Thresholds


def _n(side: VersionServed | None) -> int:
    return 0 if side is None else side.summary.routed.rows


def _error_rate(s: Sides) -> Check:
    n_c, n_b = _n(s.candidate), _n(s.baseline)
    e_c = s.candidate.summary.routed.server_errors / n_c if s.candidate is not None and n_c else 0.0
    e_b = s.baseline.summary.routed.server_errors / n_b if s.baseline is not None and n_b else 0.0
    return _check(
        "error rate",
        e_c > e_b + s.t.max_error_rate,
        f"{s.candidate_name} {e_c:.2%} vs {s.baseline_name} {e_b:.2%} (allowed +{s.t.max_error_rate:.2%})",
        {"candidate": e_c, "baseline": e_b, "threshold": s.t.max_error_rate, "n": n_c},
    )


def _latency(s: Sides) -> Check | str:
    p_c, p_b = _p99(s.candidate), _p99(s.baseline)
    if p_c is None or p_b is None:
        return "p99 latency: no baseline requests in the window"
    limit = s.t.max_latency_ratio * p_b + s.t.latency_slack_ms
    return _check(
        "p99 latency",
        p_c > limit,
        f"{s.candidate_name} {p_c:.2f} ms vs {s.baseline_name} {p_b:.2f} ms (limit {limit:.2f} ms)",
        {"candidate_ms": p_c, "baseline_ms": p_b, "limit_ms": limit, "relative_accuracy": LATENCY_ACCURACY},
    )


def _disagreement(s: Sides) -> Check | str:
    routed = s.candidate.summary.routed if s.candidate is not None else None
    if routed is None or routed.shadowed == 0:
        return f"disagreement: {s.baseline_name} scored none of {s.candidate_name}'s requests"
    rate = routed.disagreed / routed.shadowed
    return _check(
        "disagreement",
        rate > s.t.max_disagreement,
        f"{s.baseline_name} predicts another class on {rate:.1%} of {s.candidate_name}'s requests "
        f"(limit {s.t.max_disagreement:.0%})",
        {"rate": rate, "n": routed.shadowed, "threshold": s.t.max_disagreement},
    )


def _class_mix(s: Sides, classes: list[str]) -> Check | str:
    cc, bc = class_counts(s.candidate, classes), class_counts(s.baseline, classes)
    if cc.sum() == 0 or bc.sum() == 0:
        return "class mix: no predictions on one side"
    dist, p = js_distance(cc, bc), class_shift_p(cc, bc)
    return _check(
        "class mix",
        dist > s.t.max_class_shift and p < s.t.class_shift_p,
        f"Jensen-Shannon distance {dist:.3f} (limit {s.t.max_class_shift}), chi-square p={p:.2g}",
        {
            "js_distance": dist,
            "p_value": p,
            "candidate": dict(zip(classes, cc.tolist(), strict=True)),
            "baseline": dict(zip(classes, bc.tolist(), strict=True)),
        },
    )


def _paired_accuracy(s: Sides) -> Check | None:
    """On the same labelled requests (the baseline's shadow scores), when there are enough of them."""
    got = s.candidate.labels if s.candidate is not None else None
    if got is None or got.paired == 0 or got.paired < s.t.min_labels:
        return None
    n = got.paired
    a_c, a_b = got.paired_correct / n, got.paired_baseline_correct / n
    return _check(
        "accuracy",
        a_b - a_c > s.t.max_accuracy_drop,
        f"on the same {n} labelled requests {s.candidate_name} {a_c:.3f} vs {s.baseline_name} {a_b:.3f} "
        f"(allowed drop {s.t.max_accuracy_drop})",
        {"candidate": a_c, "baseline": a_b, "labels": n, "paired": True, "threshold": s.t.max_accuracy_drop},
    )


def _unpaired_accuracy(s: Sides) -> Check | str:
    """Each side on its own labelled requests: the drop must also be significant."""
    n_lc = s.candidate.labels.labelled if s.candidate is not None else 0
    n_lb = s.baseline.labels.labelled if s.baseline is not None else 0
    if s.candidate is None or s.baseline is None or n_lc < s.t.min_labels or n_lb < s.t.min_labels:
        return f"accuracy: {n_lc} and {n_lb} feedback labels (need {s.t.min_labels} each)"
    a_c, a_b = s.candidate.labels.correct / n_lc, s.baseline.labels.correct / n_lb
    p = drop_p_value(a_c, n_lc, a_b, n_lb)
    return _check(
        "accuracy",
        a_b - a_c > s.t.max_accuracy_drop and p < s.t.accuracy_p,
        f"{s.candidate_name} {a_c:.3f} on {n_lc} labels vs {s.baseline_name} {a_b:.3f} on {n_lb} "
        f"(allowed drop {s.t.max_accuracy_drop}, one-sided p={p:.2g})",
        {
            "candidate": a_c,
            "baseline": a_b,
            "labels": [n_lc, n_lb],
            "p_value": p,
            "paired": False,
            "threshold": s.t.max_accuracy_drop,
        },
    )


def compare(sides: Sides, *, classes: list[str], disagreement: bool = True) -> tuple[list[Check], list[str]]:
    """Judge the candidate's requests against the baseline's: error rate, p99 latency, disagreement, class
    mix, accuracy (on the same requests when the baseline shadow-scored them). Returns the checks and the names
    of metrics skipped for lack of data."""
    paired = _paired_accuracy(sides) if disagreement else None
    judged = [
        _error_rate(sides),
        _latency(sides),
        _disagreement(sides) if disagreement else None,
        _class_mix(sides, classes),
        paired if paired is not None else _unpaired_accuracy(sides),
    ]
    checks = [j for j in judged if isinstance(j, Check)]
    skipped = [j for j in judged if isinstance(j, str)]
    return checks, skipped


def analyse_canary(
    *,
    step: ServedWindow,
    rollout: ServedWindow,
    stable: int,
    canary: int,
    classes: list[str],
    min_requests: int,
    thresholds: Thresholds,
) -> Analysis:
    """The canary's routed requests in this step (`step`: [step start, now)) against the stable version's
    since the rollout began (`rollout`: [rollout start, now))."""
    canary_side, stable_side = step.of(canary), rollout.of(stable)
    counts = {"canary": _n(canary_side), "stable": _n(stable_side)}
    logs = {"step": step.evidence, "rollout": rollout.evidence}
    if counts["canary"] < min_requests:
        traffic = Check(
            "traffic",
            Outcome.INCONCLUSIVE,
            f"{counts['canary']} canary requests in the window, {min_requests} needed to judge",
            {"canary": counts["canary"], "min_requests": min_requests, "logs": logs},
        )
        return Analysis(Outcome.INCONCLUSIVE, [traffic], [], counts, step.since, step.until)
    traffic = Check(
        "traffic",
        Outcome.SUCCESSFUL,
        f"{counts['canary']} canary requests (>= {min_requests})",
        {**counts, "logs": logs},
    )
    sides = Sides(canary_side, stable_side, f"v{canary}", f"v{stable}", thresholds)
    checks, skipped = compare(sides, classes=classes)
    checks.insert(0, traffic)
    return Analysis(worst(c.outcome for c in checks), checks, skipped, counts, step.since, step.until)

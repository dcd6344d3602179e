"""Drift verdicts: which test judges each feature and the predicted class, and its threshold. The per-version
and per-model reports are `monitoring.drift_report`.

The statistics themselves (PSI, KS, Wasserstein, chi-square, Jensen-Shannon on sorted arrays) live in
`monitoring.drift_stats`. Features are compared in parallel threads when the window is large and cores are
spare (`drift_features`).

Defaults follow Evidently (legacy `DataDriftPreset`, versions <= 0.6.7):

| rule | default | source |
| --- | --- | --- |
| test choice | by reference rows: <= 1000 use a statistical test, > 1000 a distance | Evidently docs "Data drift algorithm" (docs-old.evidentlyai.com/reference/data-drift-algorithm); release notes v0.1.50.dev0 (github.com/evidentlyai/evidently/releases/tag/v0.1.50.dev0); code `legacy/calculations/stattests/registry.py::_get_default_stattest` |
| numerical, small reference | two-sample KS, drift when p <= 0.05 | same; `ks_stattest.py` (default_threshold 0.05, `p_value <= threshold`) |
| numerical, large reference | Wasserstein distance / max(std(reference, ddof=0), 0.001), drift when >= 0.1 | same; `wasserstein_distance_norm.py` |
| categorical, or numerical with <= 5 distinct values in reference + current | small: chi-square goodness of fit (expected = reference counts x n_cur/n_ref), drift when p < 0.05; large: Jensen-Shannon distance (natural log, scipy default), drift when >= 0.1 | `registry.py`, `chisquare_stattest.py`, `jensenshannon.py` |
| PSI | drift when >= 0.1; empty bins floored at 0.0001 | `psi.py` (default_threshold 0.1), `utils.py::get_binned_data` |
| dataset drift | when the share of drifted features >= 0.5 | release notes 0.1.23.dev0, `drift_features_share` (default 0.5) |

Where we differ, on purpose: PSI uses 10 bins at the reference deciles (the usual PSI convention, and the
bins do not move with the current window; Evidently bins reference + current with Sturges' rule); binary
columns use chi-square too (Evidently: a two-proportion z-test); all of PSI, KS and Wasserstein are computed
and reported for every feature whatever test decides; and a window must hold `min_rows` rows before anything
is judged (Evidently judges any size). Default `min_rows`: 100 when the verdict is a p-value test (its false
alarm rate is the significance level at any size, and below ~100 rows it has little power), 500 when it is a
distance: with an unchanged normal feature against a 150k-row reference, the normalised Wasserstein
distance of a random window has a 95th percentile of 0.20 at 100 rows, 0.15 at 200 and 0.094 at 500, so
smaller windows would cross the 0.1 threshold by chance alone (PSI: 0.17 at 100 rows, 0.09 at 200).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from mloncall.monitoring.drift_stats import (
    CATEGORICAL_UNIQUE,
    HISTOGRAM_BINS,
    PSI_BINS,
    PSI_EPSILON,
    CategoricalComparison,
    Histogram,
    NumericComparison,
    SortedSample,
    compare,
    compare_counts,
    histogram,
    number,
    shares,
)

SMALL_REFERENCE = 1000
KS_P_VALUE = 0.05
CHI2_P_VALUE = 0.05
WASSERSTEIN_THRESHOLD = 0.1
JS_THRESHOLD = 0.1
PSI_THRESHOLD = 0.1
DRIFT_SHARE = 0.5
MIN_ROWS_TEST = 100
MIN_ROWS_DISTANCE = 500
#: With at least this many current values in all, features are compared in parallel threads.
PARALLEL_MIN_VALUES = 200_000

METHODS = ("auto", "ks", "wasserstein", "psi")
P_VALUE_METHODS = ("ks", "chisquare")


@dataclass(frozen=True)
class DriftSettings:
    """Thresholds and choices of the drift verdict (defaults: Evidently's, see the module docstring)."""

    method: str = "auto"
    ks_p_value: float = KS_P_VALUE
    chi2_p_value: float = CHI2_P_VALUE
    wasserstein_threshold: float = WASSERSTEIN_THRESHOLD
    js_threshold: float = JS_THRESHOLD
    psi_threshold: float = PSI_THRESHOLD
    psi_bins: int = PSI_BINS
    psi_epsilon: float = PSI_EPSILON
    drift_share: float = DRIFT_SHARE
    small_reference: int = SMALL_REFERENCE
    categorical_unique: int = CATEGORICAL_UNIQUE
    min_rows: int | None = None
    include_prediction: bool = False
    histogram_bins: int = HISTOGRAM_BINS

    def min_rows_for(self, n_ref: int) -> int:
        """Rows a window needs before it is judged: p-value tests need fewer than distances."""
        if self.min_rows is not None:
            return self.min_rows
        if self.method == "ks" or (self.method == "auto" and n_ref <= self.small_reference):
            return MIN_ROWS_TEST
        return MIN_ROWS_DISTANCE


@dataclass
class FeatureDrift:
    """One feature of one version: every statistic, the test that decided and its verdict."""

    feature: str
    method: str
    drifted: bool | None  # None: not judged
    score: float | None
    threshold: float | None
    n_ref: int
    n_cur: int
    n_missing: int = 0
    n_unique: int | None = None
    psi: float | None = None
    ks: float | None = None
    ks_p: float | None = None
    wasserstein: float | None = None
    wasserstein_norm: float | None = None
    chi2: float | None = None
    chi2_p: float | None = None
    js: float | None = None
    reason: str = ""
    histogram: Histogram | None = None
    psi_bins: dict[str, Any] | None = None
    #: From summaries: how far the approximate statistics may be from the exact ones (monitoring.sketches).
    bounds: dict[str, float] | None = None

    def to_dict(self, *, histograms: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "feature": self.feature,
            "method": self.method,
            "drifted": self.drifted,
            "score": self.score,
            "threshold": self.threshold,
            "psi": self.psi,
            "ks": self.ks,
            "ks_p": self.ks_p,
            "wasserstein": self.wasserstein,
            "wasserstein_norm": self.wasserstein_norm,
            "chi2": self.chi2,
            "chi2_p": self.chi2_p,
            "js": self.js,
            "n_ref": self.n_ref,
            "n_cur": self.n_cur,
            "n_missing": self.n_missing,
            "n_unique": self.n_unique,
            "reason": self.reason,
        }
        if self.bounds is not None:
            out["bounds"] = self.bounds
        if histograms:
            out["histogram"] = self.histogram.to_dict() if self.histogram is not None else None
            out["psi_bins"] = self.psi_bins
        return out


def _decide(method: str, score: float, s: DriftSettings) -> tuple[float, bool]:
    """The threshold of a method and whether the score crosses it (Evidently's comparisons)."""
    if method == "ks":
        return s.ks_p_value, score <= s.ks_p_value
    if method == "chisquare":
        return s.chi2_p_value, score < s.chi2_p_value
    if method == "wasserstein":
        return s.wasserstein_threshold, score >= s.wasserstein_threshold
    if method == "jensenshannon":
        return s.js_threshold, score >= s.js_threshold
    if method == "psi":
        return s.psi_threshold, score >= s.psi_threshold
    raise ValueError(f"unknown drift method {method!r}")


def feature_drift(feature: str, ref: SortedSample, cur: SortedSample, s: DriftSettings) -> FeatureDrift:
    """Compare one feature and judge it; an empty side gives an unjudged row, never NaN."""
    if ref.n == 0 or cur.n == 0:
        side = "reference" if ref.n == 0 else "current window"
        return FeatureDrift(
            feature=feature,
            method=s.method,
            drifted=None,
            score=None,
            threshold=None,
            n_ref=ref.n,
            n_cur=cur.n,
            n_missing=cur.n_dropped,
            reason=f"no finite values in the {side}",
            histogram=histogram(ref, cur, bins=s.histogram_bins),
        )
    c = compare(
        ref, cur, psi_bins=s.psi_bins, psi_epsilon=s.psi_epsilon, categorical_unique=s.categorical_unique
    )
    cat = _categorical(c)
    method = _method_for(s, categorical=cat is not None, n_ref=c.n_ref)
    score = {
        "ks": c.ks_p,
        "wasserstein": c.wasserstein_norm,
        "psi": c.psi,
        "chisquare": cat.chi2_p if cat is not None else None,
        "jensenshannon": cat.js if cat is not None else None,
    }[method]
    assert score is not None
    threshold, drifted = _decide(method, score, s)
    return FeatureDrift(
        feature=feature,
        method=method,
        drifted=bool(drifted),
        score=number(score),
        threshold=threshold,
        n_ref=c.n_ref,
        n_cur=c.n_cur,
        n_missing=cur.n_dropped,
        n_unique=c.n_unique,
        psi=number(c.psi),
        ks=number(c.ks),
        ks_p=number(c.ks_p),
        wasserstein=number(c.wasserstein),
        wasserstein_norm=number(c.wasserstein_norm),
        chi2=cat.chi2 if cat is not None else None,
        chi2_p=cat.chi2_p if cat is not None else None,
        js=number(cat.js) if cat is not None else None,
        reason=_feature_reason(method, score, threshold, drifted),
        histogram=histogram(ref, cur, bins=s.histogram_bins),
        psi_bins={
            "inner_edges": [float(e) for e in c.psi_edges],
            "reference": c.psi_reference.tolist(),
            "current": c.psi_current.tolist(),
        },
    )


def _categorical(c: NumericComparison) -> CategoricalComparison | None:
    """Chi-square and Jensen-Shannon over the distinct values, when a feature has few (categorical-like)."""
    if c.categories is None:
        return None
    assert c.reference_counts is not None and c.current_counts is not None
    labels = [f"{v:g}" for v in c.categories]
    return compare_counts(labels, c.reference_counts, c.current_counts)


def _method_for(s: DriftSettings, *, categorical: bool, n_ref: int) -> str:
    """The test that decides: the configured one, or under "auto" Evidently's choice by reference size."""
    if s.method != "auto":
        return s.method
    small = n_ref <= s.small_reference
    if categorical:
        return "chisquare" if small else "jensenshannon"
    return "ks" if small else "wasserstein"


def _feature_reason(method: str, score: float, threshold: float, drifted: bool) -> str:
    """`KS p 0.0123 <= 0.05`: the score, the comparison that held and the threshold."""
    if method in P_VALUE_METHODS:
        op = ("<=" if method == "ks" else "<") if drifted else (">" if method == "ks" else ">=")
    else:
        op = ">=" if drifted else "<"
    name = {"ks": "KS p", "chisquare": "chi-square p", "wasserstein": "normalised Wasserstein"}.get(
        method, method
    )
    return f"{name} {score:.4g} {op} {threshold:g}"


def drift_features(
    pairs: Sequence[tuple[str, SortedSample, np.ndarray]],
    settings: DriftSettings,
    *,
    workers: int | None = None,
) -> list[FeatureDrift]:
    """Sort each current column and compare it with its sorted reference, one thread per feature when the
    data is large: sorting, searching and the ufuncs release the GIL, so features run side by side."""

    def one(item: tuple[str, SortedSample, np.ndarray]) -> FeatureDrift:
        name, ref, values = item
        return feature_drift(name, ref, SortedSample.of(values), settings)

    if workers is None:
        # one core is left to whatever else runs here (the monitors share the server with inference)
        big = sum(int(np.size(v)) for _, _, v in pairs) >= PARALLEL_MIN_VALUES
        workers = min(len(pairs), max(1, (os.cpu_count() or 1) - 1)) if big else 1
    if workers <= 1 or len(pairs) <= 1:
        return [one(p) for p in pairs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, pairs))


@dataclass
class ClassDrift:
    """The predicted-class mix of a version against its training class balance."""

    classes: list[str]
    reference_counts: list[int]
    current_counts: list[int]
    method: str
    drifted: bool | None
    score: float | None
    threshold: float | None
    chi2: float | None
    chi2_p: float | None
    js: float | None
    new_classes: list[str]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "reference_counts": self.reference_counts,
            "current_counts": self.current_counts,
            "reference_share": shares(self.reference_counts),
            "current_share": shares(self.current_counts),
            "method": self.method,
            "drifted": self.drifted,
            "score": self.score,
            "threshold": self.threshold,
            "chi2": self.chi2,
            "chi2_p": self.chi2_p,
            "js": self.js,
            "new_classes": self.new_classes,
            "reason": self.reason,
        }


def class_drift(
    reference_counts: dict[str, int], current: dict[str, int], s: DriftSettings, *, n_ref_rows: int
) -> ClassDrift:
    """Chi-square (reference <= small_reference rows) or Jensen-Shannon verdict on the predicted-class counts."""
    classes = sorted(set(reference_counts) | set(current))
    ref = np.array([reference_counts.get(c, 0) for c in classes], dtype=np.int64)
    cur = np.array([current.get(c, 0) for c in classes], dtype=np.int64)
    method = "chisquare" if n_ref_rows <= s.small_reference else "jensenshannon"
    if ref.sum() == 0 or cur.sum() == 0:
        return ClassDrift(
            classes, ref.tolist(), cur.tolist(), method, None, None, None, None, None, None, [],
            "no reference class balance" if ref.sum() == 0 else "no predictions in the window",
        )  # fmt: skip
    cat = compare_counts(classes, ref, cur)
    score = cat.chi2_p if method == "chisquare" else cat.js
    threshold, drifted = _decide(method, score, s)
    if cat.new_categories:
        reason = f"classes never seen in training predicted: {', '.join(cat.new_categories)}"
    elif method == "chisquare":
        reason = f"chi-square p {score:.4g} {'<' if drifted else '>='} {threshold:g}"
    else:
        reason = f"Jensen-Shannon {score:.4g} {'>=' if drifted else '<'} {threshold:g}"
    return ClassDrift(
        classes=classes,
        reference_counts=ref.tolist(),
        current_counts=cur.tolist(),
        method=method,
        drifted=bool(drifted),
        score=number(score),
        threshold=threshold,
        chi2=cat.chi2,
        chi2_p=number(cat.chi2_p),
        js=number(cat.js),
        new_classes=cat.new_categories,
        reason=reason,
    )

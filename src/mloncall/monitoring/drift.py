"""Drift statistics: PSI, two-sample KS, normalised Wasserstein, chi-square and Jensen-Shannon, and the verdict.

Everything numeric is derived from sorted arrays: each reference column is sorted once (and cached per
dataset version by `monitoring.reference`, with its distinct values and mean), each current column once.
F_ref is a step function on the reference's distinct values u, so one `searchsorted` of u into the sorted
current values gives the KS statistic (the CDF gap at every data point, as scipy evaluates it) and, with
one prefix sum of the current values, the Wasserstein-1 distance (the integral of |F_ref - F_cur|, split
where F_cur crosses each step of F_ref): the current sample is never merged with the reference. PSI and
the histograms come from `searchsorted` on the same sorted arrays. No Python loop runs per row.

The KS p-value follows `scipy.stats.ks_2samp(method="auto")`: exact when both samples have at most 10,000
values (scipy itself is called on the already sorted arrays there, which are small), otherwise the
asymptotic `kstwo.sf(D, round(n*m/(n+m)))` that scipy uses, except far in the tail (below 1e-12), where
the DKW-Massart upper bound replaces scipy's slow tail evaluation. Values match scipy within 1e-9 (tested).
Features are compared in parallel threads when the window is large and cores are spare (`drift_features`).

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

import datetime as dt
import math
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mloncall.core.outcome import Outcome

SMALL_REFERENCE = 1000
CATEGORICAL_UNIQUE = 5
KS_P_VALUE = 0.05
CHI2_P_VALUE = 0.05
WASSERSTEIN_THRESHOLD = 0.1
JS_THRESHOLD = 0.1
PSI_THRESHOLD = 0.1
PSI_BINS = 10
PSI_EPSILON = 1e-4
DRIFT_SHARE = 0.5
MIN_ROWS_TEST = 100
MIN_ROWS_DISTANCE = 500
STD_FLOOR = 0.001
HISTOGRAM_BINS = 20
#: scipy's `ks_2samp(method="auto")` is exact up to this many values per sample.
KS_EXACT_MAX = 10_000
#: Below this, asymptotic KS p-values are the DKW-Massart tail bound (see `_ks_asymptotic_p`).
KS_TAIL_BOUND = 1e-12
#: With at least this many current values in all, features are compared in parallel threads.
PARALLEL_MIN_VALUES = 200_000

METHODS = ("auto", "ks", "wasserstein", "psi")
P_VALUE_METHODS = ("ks", "chisquare")


def number(value: Any) -> float | None:
    """A plain float for evidence; None for NaN, infinity or nothing."""
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


class SortedSample:
    """The finite values of one column, sorted once; what every statistic here is computed from."""

    __slots__ = ("_distinct", "_psi", "_std", "n", "n_dropped", "values")

    def __init__(self, values: np.ndarray, *, n_dropped: int = 0) -> None:
        self.values = values
        self.n = int(values.size)
        self.n_dropped = n_dropped
        self._psi: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._std: float | None = None
        self._distinct: tuple[np.ndarray, np.ndarray, float] | None = None

    @classmethod
    def of(cls, values: Any) -> SortedSample:
        """Sort a column; NaN, infinities and nulls are dropped and counted."""
        x = np.array(values, dtype=np.float64).ravel()
        x.sort()
        # sorted, -inf come first and +inf then NaN (numpy sorts NaN last): the finite values lie between
        lo = int(np.searchsorted(x, -np.inf, side="right"))
        hi = int(np.searchsorted(x, np.inf, side="left"))
        return cls(x[lo:hi], n_dropped=x.size - (hi - lo))

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0, as Evidently's `np.std`), computed once."""
        if self._std is None:
            self._std = float(self.values.std()) if self.n else 0.0
        return self._std

    def distinct(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Distinct values, how many values are <= each, and the mean (cached): the reference's grid."""
        if self._distinct is None:
            x = self.values
            ends = np.empty(x.size, dtype=bool)
            np.not_equal(x[1:], x[:-1], out=ends[:-1])
            if x.size:
                ends[-1] = True
            where = np.flatnonzero(ends)
            self._distinct = (x[where], where + 1, float(x.mean()) if x.size else 0.0)
        return self._distinct

    def psi_bins(self, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner bin edges at this sample's quantiles (duplicates merged) and its count per bin (cached)."""
        cached = self._psi.get(bins)
        if cached is None:
            edges = np.unique(np.quantile(self.values, np.linspace(0.0, 1.0, bins + 1))[1:-1])
            cached = (edges, bin_counts(self.values, edges))
            self._psi[bins] = cached
        return cached


def bin_counts(sorted_values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Counts in (-inf, e1), [e1, e2), ..., [ek, inf) of a sorted array."""
    cuts = np.searchsorted(sorted_values, inner_edges, side="left")
    return np.diff(np.concatenate(([0], cuts, [sorted_values.size]))).astype(np.int64)


# --- the merge and the three numeric statistics ------------------------------------------------------------


@dataclass
class _Grid:
    """The current sample seen from the reference's distinct values u: what KS and Wasserstein need."""

    max_s: float  # max of F_ref - F_cur over the data points
    min_s: float  # min of the same (<= 0)
    wasserstein: float
    n_unique: int  # distinct values in reference and current together
    below: np.ndarray  # #cur < u_i
    at_or_below: np.ndarray  # #cur <= u_i
    cur_ends: np.ndarray  # True at the last position of each run of equal current values


def _grid(ref: SortedSample, b: np.ndarray) -> _Grid:
    """KS extremes and the Wasserstein-1 distance without merging the samples: F_ref is a step function on the
    reference's distinct values u, so both follow from where u falls among the sorted current values and
    from prefix sums of the current values; the work on the current sample is one search, one cumsum."""
    u, cum, mean = ref.distinct()
    n1, n2 = ref.n, b.size
    below = np.searchsorted(b, u, side="left")
    at_or_below = below.copy()
    tied = np.flatnonzero(b[np.minimum(below, n2 - 1)] == u)
    if tied.size:
        at_or_below[tied] = np.searchsorted(b, u[tied], side="right")
    prev = np.concatenate(([0], cum[:-1]))  # #ref < u_i
    # KS (as scipy: CDFs right-continuous, compared at every data point). At u_i: cum/n1 - at_or_below/n2.
    # At a current value between u_{i-1} and u_i, F_ref is prev_i/n1 and the extremes are at the first such
    # value (never above the value at u_{i-1}) and the last one, prev/n1 - below/n2; past the last u the
    # difference falls to 0, which every sample reaches at its largest value.
    at_u = cum / n1 - at_or_below / n2
    before_u = prev / n1 - below / n2
    max_s = max(float(at_u.max()), 0.0)
    min_s = min(float(at_u.min()), float(before_u.min()), 0.0)
    # Wasserstein-1 = integral of |F_ref - F_cur|. With prefix sums S of the (centred) current values,
    # H(x, m) = m*x - S[m] is n2 times the integral of F_cur up to x, where m counts current values <= x.
    x = u - mean
    prefix = np.empty(n2 + 1)
    prefix[0] = 0.0
    np.subtract(b, mean, out=prefix[1:])
    np.cumsum(prefix[1:], out=prefix[1:])
    # H at each u (the same for any count of the current values equal to u: they add 0)
    h_u = below * x - prefix[below]
    last = at_or_below[-1]
    # below u_0 F_ref = 0; above the last u F_ref = 1
    total = h_u[0] + (prefix[n2] - prefix[last]) - (n2 - last) * x[-1]
    if u.size > 1:
        # between u_{i-1} and u_i F_ref = c = cum_{i-1}/n1; F_cur crosses c where the count passes c*n2:
        # the integral is c*(mid - lo) - (H(mid) - H(lo)) before the crossing and the opposite after it
        lo_x, hi_x = x[:-1], x[1:]
        lo_m, hi_m = at_or_below[:-1], below[1:]
        c_n2 = cum[:-1] * (n2 / n1)
        cross = (cum[:-1] * n2) // n1  # the largest count with count/n2 <= c
        early = cross < lo_m
        mid_x = np.where(early, lo_x, hi_x)
        h_mid = np.where(early, h_u[:-1], h_u[1:])
        inner = np.flatnonzero(~early & (cross < hi_m))
        if inner.size:
            m = cross[inner]
            mid_x[inner] = b[m] - mean
            h_mid[inner] = m * mid_x[inner] - prefix[m]
        pieces = c_n2 * (2.0 * mid_x - lo_x - hi_x) + (h_u[:-1] - h_mid) + (h_u[1:] - h_mid)
        total += float(pieces.sum())
    cur_ends = np.empty(n2, dtype=bool)
    np.not_equal(b[1:], b[:-1], out=cur_ends[:-1])
    cur_ends[-1] = True
    shared = int(np.count_nonzero(at_or_below > below))
    n_unique = int(u.size) + int(np.count_nonzero(cur_ends)) - shared
    return _Grid(max_s, min_s, max(float(total), 0.0) / n2, n_unique, below, at_or_below, cur_ends)


def _ks_asymptotic_p(d: float, n1: int, n2: int) -> float:
    """scipy's asymptotic two-sided p-value, kstwo.sf(D, round(n*m/(n+m))).

    Far in the tail scipy's kstwo.sf takes up to ~100 ms; there the Dvoretzky-Kiefer-Wolfowitz bound
    (Massart's constant) 2*exp(-2*n*D^2), an upper bound on it, is returned instead once it is below
    KS_TAIL_BOUND: it differs from scipy's value by less than that, and no alert threshold lives there.
    """
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = float(np.round(m * n / (m + n)))
    bound = 2.0 * math.exp(-2.0 * en * d * d)
    if bound < KS_TAIL_BOUND:
        return bound
    return float(np.clip(stats.kstwo.sf(d, en), 0.0, 1.0))


@dataclass
class NumericComparison:
    """Every statistic of one feature, reference vs current (both non-empty)."""

    n_ref: int
    n_cur: int
    n_unique: int
    ks: float
    ks_p: float
    wasserstein: float
    wasserstein_norm: float
    reference_std: float
    psi: float
    psi_edges: np.ndarray
    psi_reference: np.ndarray
    psi_current: np.ndarray
    categories: np.ndarray | None = None  # distinct values, when there are few (categorical-like)
    reference_counts: np.ndarray | None = None
    current_counts: np.ndarray | None = None


def compare(
    ref: SortedSample,
    cur: SortedSample,
    *,
    psi_bins: int = PSI_BINS,
    psi_epsilon: float = PSI_EPSILON,
    categorical_unique: int = CATEGORICAL_UNIQUE,
) -> NumericComparison:
    """PSI, KS (statistic and p-value) and normalised Wasserstein of two non-empty sorted samples."""
    a, b = ref.values, cur.values
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        raise ValueError("compare needs two non-empty samples")
    g = _grid(ref, b)
    categories = reference_counts = current_counts = None
    if g.n_unique <= categorical_unique:
        u, cum, _ = ref.distinct()
        cur_values = b[g.cur_ends]
        cur_counts = np.diff(np.concatenate(([0], np.flatnonzero(g.cur_ends) + 1)))
        categories = np.union1d(u, cur_values)
        reference_counts = np.zeros(categories.size, dtype=np.int64)
        reference_counts[np.searchsorted(categories, u)] = np.diff(np.concatenate(([0], cum)))
        current_counts = np.zeros(categories.size, dtype=np.int64)
        current_counts[np.searchsorted(categories, cur_values)] = cur_counts
    max_s, min_s, wasserstein = g.max_s, float(np.clip(-g.min_s, 0.0, 1.0)), g.wasserstein
    if max(n1, n2) <= KS_EXACT_MAX:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            exact = stats.ks_2samp(a, b)
        ks, ks_p = float(exact.statistic), float(exact.pvalue)
    else:
        ks = min_s if min_s > max_s else max_s
        ks_p = _ks_asymptotic_p(ks, n1, n2)
    std = ref.std
    edges, ref_bins = ref.psi_bins(psi_bins)
    cur_bins = bin_counts(b, edges)
    return NumericComparison(
        n_ref=n1,
        n_cur=n2,
        n_unique=g.n_unique,
        ks=ks,
        ks_p=ks_p,
        wasserstein=wasserstein,
        wasserstein_norm=wasserstein / max(std, STD_FLOOR),
        reference_std=std,
        psi=psi_from_counts(ref_bins, cur_bins, epsilon=psi_epsilon),
        psi_edges=edges,
        psi_reference=ref_bins,
        psi_current=cur_bins,
        categories=categories,
        reference_counts=reference_counts,
        current_counts=current_counts,
    )


def psi_from_counts(ref_counts: np.ndarray, cur_counts: np.ndarray, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two count vectors over the same bins; empty bins count as epsilon."""
    p = ref_counts / max(int(ref_counts.sum()), 1)
    q = cur_counts / max(int(cur_counts.sum()), 1)
    p = np.where(p == 0, epsilon, p)
    q = np.where(q == 0, epsilon, q)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_2samp_sorted(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """KS statistic and p-value of two sorted non-empty samples (as scipy's ks_2samp, method='auto')."""
    c = compare(SortedSample(a), SortedSample(b))
    return c.ks, c.ks_p


def wasserstein_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance of two sorted non-empty samples (as scipy's wasserstein_distance)."""
    return compare(SortedSample(a), SortedSample(b)).wasserstein


# --- categorical -------------------------------------------------------------------------------------------


@dataclass
class CategoricalComparison:
    chi2: float | None  # None when a category absent from the reference appears (the statistic is infinite)
    chi2_p: float
    js: float
    new_categories: list[str]


def compare_counts(
    labels: Sequence[str], ref_counts: np.ndarray, cur_counts: np.ndarray
) -> CategoricalComparison:
    """Chi-square goodness of fit of current counts against reference shares, and Jensen-Shannon distance.

    A category the reference never saw makes the chi-square statistic infinite: its p-value is 0 (drift)
    and the statistic is reported as None. With fewer than two categories there is nothing to test (p = 1).
    """
    ref = np.asarray(ref_counts, dtype=np.float64)
    cur = np.asarray(cur_counts, dtype=np.float64)
    n_ref, n_cur = ref.sum(), cur.sum()
    if n_ref == 0 or n_cur == 0:
        return CategoricalComparison(chi2=0.0, chi2_p=1.0, js=0.0, new_categories=[])
    new = [str(label) for label, r, c in zip(labels, ref, cur, strict=True) if r == 0 and c > 0]
    js = float(jensenshannon(ref / n_ref, cur / n_cur))
    js = 0.0 if not math.isfinite(js) else js
    if new:
        return CategoricalComparison(chi2=None, chi2_p=0.0, js=js, new_categories=new)
    keep = ref > 0
    if np.count_nonzero(keep) < 2:
        return CategoricalComparison(chi2=0.0, chi2_p=1.0, js=js, new_categories=[])
    expected = ref[keep] * (n_cur / n_ref)
    result = stats.chisquare(cur[keep], expected)
    return CategoricalComparison(
        chi2=number(result.statistic), chi2_p=number(result.pvalue) or 0.0, js=js, new_categories=[]
    )


# --- histograms --------------------------------------------------------------------------------------------


@dataclass
class Histogram:
    """Reference and current counts over the same equal-width bins (the data behind a drawn histogram)."""

    edges: list[float]
    reference: list[int]
    current: list[int]

    def to_dict(self) -> dict[str, Any]:
        n_ref, n_cur = sum(self.reference), sum(self.current)
        return {
            "edges": self.edges,
            "reference": self.reference,
            "current": self.current,
            "reference_share": [c / n_ref if n_ref else 0.0 for c in self.reference],
            "current_share": [c / n_cur if n_cur else 0.0 for c in self.current],
        }


def histogram(ref: SortedSample, cur: SortedSample, *, bins: int = HISTOGRAM_BINS) -> Histogram:
    """Counts of both samples over `bins` equal-width bins spanning both (np.histogram's convention)."""
    ends = [s.values[[0, -1]] for s in (ref, cur) if s.n]
    if not ends:
        return Histogram(edges=[0.0, 1.0], reference=[0], current=[0])
    lo = float(min(e[0] for e in ends))
    hi = float(max(e[1] for e in ends))
    if hi <= lo:
        edges = np.array([lo - 0.5, lo + 0.5])
    else:
        edges = np.linspace(lo, hi, bins + 1)
    inner = edges[1:-1]
    return Histogram(
        edges=[float(e) for e in edges],
        reference=bin_counts(ref.values, inner).tolist(),
        current=bin_counts(cur.values, inner).tolist(),
    )


# --- verdicts ----------------------------------------------------------------------------------------------


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
    categorical = c.categories is not None
    chi2 = chi2_p = js = None
    if categorical:
        assert c.categories is not None and c.reference_counts is not None and c.current_counts is not None
        labels = [f"{v:g}" for v in c.categories]
        cat = compare_counts(labels, c.reference_counts, c.current_counts)
        chi2, chi2_p, js = cat.chi2, cat.chi2_p, cat.js
    method = s.method
    if method == "auto":
        small = c.n_ref <= s.small_reference
        if categorical:
            method = "chisquare" if small else "jensenshannon"
        else:
            method = "ks" if small else "wasserstein"
    score = {
        "ks": c.ks_p,
        "wasserstein": c.wasserstein_norm,
        "psi": c.psi,
        "chisquare": chi2_p,
        "jensenshannon": js,
    }[method]
    assert score is not None
    threshold, drifted = _decide(method, score, s)
    if method in P_VALUE_METHODS:
        op = ("<=" if method == "ks" else "<") if drifted else (">" if method == "ks" else ">=")
    else:
        op = ">=" if drifted else "<"
    name = {"ks": "KS p", "chisquare": "chi-square p", "wasserstein": "normalised Wasserstein"}.get(
        method, method
    )
    reason = f"{name} {score:.4g} {op} {threshold:g}"
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
        chi2=chi2,
        chi2_p=chi2_p,
        js=number(js),
        reason=reason,
        histogram=histogram(ref, cur, bins=s.histogram_bins),
        psi_bins={
            "inner_edges": [float(e) for e in c.psi_edges],
            "reference": c.psi_reference.tolist(),
            "current": c.psi_current.tolist(),
        },
    )


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
        n_ref, n_cur = sum(self.reference_counts), sum(self.current_counts)
        return {
            "classes": self.classes,
            "reference_counts": self.reference_counts,
            "current_counts": self.current_counts,
            "reference_share": [c / n_ref if n_ref else 0.0 for c in self.reference_counts],
            "current_share": [c / n_cur if n_cur else 0.0 for c in self.current_counts],
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


@dataclass
class VersionDrift:
    """The drift verdict of one served version over the window (version None: rows logged without one)."""

    version: int | None
    outcome: Outcome
    reason: str
    n_ref: int
    n_cur: int
    min_rows: int
    features: list[FeatureDrift] = field(default_factory=list)
    prediction: ClassDrift | None = None
    drifted_features: list[str] = field(default_factory=list)
    judged: int = 0
    share: float | None = None
    drift_share: float = DRIFT_SHARE
    reference: str | None = None

    def to_dict(self, *, histograms: bool = True) -> dict[str, Any]:
        return {
            "version": self.version,
            "outcome": self.outcome.label,
            "reason": self.reason,
            "reference": self.reference,
            "n_ref": self.n_ref,
            "n_cur": self.n_cur,
            "min_rows": self.min_rows,
            "drifted_features": self.drifted_features,
            "judged_columns": self.judged,
            "drifted_share": self.share,
            "drift_share_threshold": self.drift_share,
            "features": [f.to_dict(histograms=histograms) for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction is not None else None,
        }


def version_drift(
    *,
    version: int | None,
    reference: dict[str, SortedSample],
    reference_rows: int,
    reference_classes: dict[str, int] | None,
    current: dict[str, np.ndarray],
    predicted: dict[str, int] | None,
    n_rows: int,
    settings: DriftSettings,
    reference_name: str | None = None,
) -> VersionDrift:
    """Judge one version's window: too few rows is inconclusive; otherwise FAILED (dataset drift) when the
    share of drifted features (and the predicted class, if included) reaches `drift_share`."""
    s = settings
    min_rows = s.min_rows_for(reference_rows)
    base = VersionDrift(
        version=version,
        outcome=Outcome.INCONCLUSIVE,
        reason="",
        n_ref=reference_rows,
        n_cur=n_rows,
        min_rows=min_rows,
        drift_share=s.drift_share,
        reference=reference_name,
    )
    if n_rows < min_rows:
        base.reason = f"insufficient data: {n_rows} rows in the window, at least {min_rows} needed"
        return base
    present = [(name, ref, current[name]) for name, ref in reference.items() if name in current]
    rows = {row.feature: row for row in drift_features(present, s)}
    for name, ref in reference.items():
        if name not in rows:
            rows[name] = feature_drift(name, ref, SortedSample(np.empty(0)), s)
            rows[name].reason = "the feature is not in the prediction log"
        base.features.append(rows[name])
    if reference_classes is not None and predicted is not None:
        base.prediction = class_drift(reference_classes, predicted, s, n_ref_rows=reference_rows)
    judged = [f for f in base.features if f.drifted is not None]
    drifted = [f.feature for f in judged if f.drifted]
    columns = len(judged)
    if s.include_prediction and base.prediction is not None and base.prediction.drifted is not None:
        columns += 1
        if base.prediction.drifted:
            drifted.append("prediction")
    base.drifted_features = drifted
    base.judged = columns
    if columns == 0:
        base.reason = "no feature could be compared (no finite values)"
        return base
    share = len(drifted) / columns
    base.share = share
    listed = f": {', '.join(drifted)}" if drifted else ""
    if share >= s.drift_share:
        base.outcome = Outcome.FAILED
        base.reason = (
            f"dataset drift: {len(drifted)} of {columns} columns drifted "
            f"(share {share:.2f} >= {s.drift_share:g}){listed}"
        )
    else:
        base.outcome = Outcome.SUCCESSFUL
        base.reason = f"no dataset drift: {len(drifted)} of {columns} columns drifted (share {share:.2f} < {s.drift_share:g}){listed}"
    if base.prediction is not None and base.prediction.drifted and not s.include_prediction:
        base.reason += f"; predicted class mix shifted ({base.prediction.reason})"
    return base


@dataclass
class DriftReport:
    """Drift of a model's served versions over a window, with the data behind every histogram."""

    model: str
    since: dt.datetime
    until: dt.datetime
    outcome: Outcome
    reason: str
    versions: list[VersionDrift]
    rows: int
    logs: dict[str, Any]
    params: dict[str, Any]
    deciding: list[str] = field(default_factory=list)

    def to_dict(self, *, histograms: bool = True) -> dict[str, Any]:
        return {
            "model": self.model,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "outcome": self.outcome.label,
            "reason": self.reason,
            "rows": self.rows,
            "deciding": self.deciding,
            "versions": [v.to_dict(histograms=histograms) for v in self.versions],
            "params": self.params,
            **self.logs,
        }

    def rows_table(self) -> list[dict[str, Any]]:
        """One flat row per (version, feature): the table `investigate` prints."""
        return [
            {"version": v.version, **f.to_dict(histograms=False)} for v in self.versions for f in v.features
        ]

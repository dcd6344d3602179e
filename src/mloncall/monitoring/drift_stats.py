"""Drift statistics on sorted arrays: PSI, two-sample KS, Wasserstein-1, chi-square and Jensen-Shannon.

This module owns the numbers; `monitoring.drift` owns the verdicts built on them (which test decides,
its threshold, the per-feature and per-version reports).

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
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CATEGORICAL_UNIQUE = 5
PSI_BINS = 10
PSI_EPSILON = 1e-4
STD_FLOOR = 0.001
HISTOGRAM_BINS = 20
#: scipy's `ks_2samp(method="auto")` is exact up to this many values per sample.
KS_EXACT_MAX = 10_000
#: Below this, asymptotic KS p-values are the DKW-Massart tail bound (see `_ks_asymptotic_p`).
KS_TAIL_BOUND = 1e-12


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
    from scipy import stats  # deferred: scipy.stats costs ~0.5 s at start-up, which every CLI call paid

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
        from scipy import stats

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
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

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


def shares(counts: list[int]) -> list[float]:
    """Each count as a share of their total (all 0.0 when there are none)."""
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


# --- histograms --------------------------------------------------------------------------------------------


@dataclass
class Histogram:
    """Reference and current counts over the same equal-width bins (the data behind a drawn histogram)."""

    edges: list[float]
    reference: list[int]
    current: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "reference_share": shares(self.reference),
            "current_share": shares(self.current),
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

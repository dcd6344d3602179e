"""Mergeable sketches of a window's rows: a feature's counts on its reference's grid, and latency (DDSketch).

**Feature grid.** Each version's reference fixes, per feature, a grid `p` of at most `GRID_POINTS` of its
distinct values (all of them when there are fewer, else its quantiles) plus its PSI bin edges. A window's
sketch of that feature counts the current values equal to each grid point (`at`), and those strictly between
two neighbours (`between`, with the tails below the first and above the last point) together with the sum of
their distances to the lower neighbour (`offsets`). Sketches of two windows merge by adding the arrays.
From a sketch and the reference's sorted values:

- PSI on the reference's bins, chi-square and Jensen-Shannon (when the values are few) are exact;
- the KS statistic is exact when every distinct reference value is a grid point (references of at most
  `GRID_POINTS` distinct values, which includes every reference under the "small reference" rule), and
  otherwise is at most `ks_bound` below the exact value: the largest reference mass strictly between two grid
  points (about 1/GRID_POINTS; computed and reported per feature);
- the Wasserstein-1 distance is exact on every grid interval where the two CDFs do not cross; where they may,
  the midpoint of the interval's bounds is used and half their gap is added to `wasserstein_bound` (reported
  per feature, normalised like the distance).

**Latency.** DDSketch (the `ddsketch` package) with relative accuracy `LATENCY_ACCURACY`: every quantile is
within 1% of the value of that rank. Values are bucketed with the sketch's own logarithmic mapping in numpy
(the same keys `LogarithmicMapping.key` gives, tested) and the per-key counts are what is stored and merged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping

from mloncall.monitoring.drift_stats import SortedSample

GRID_POINTS = 1024
#: Distinct current values kept exactly per feature (beyond: "many", never categorical).
DISTINCT_MAX = 16
LATENCY_ACCURACY = 0.01


def grid_for(ref: SortedSample, psi_bins: int) -> np.ndarray:
    """The grid points of one reference feature: its distinct values (or quantiles of them) and PSI edges."""
    u, cum, _ = ref.distinct()
    if u.size <= GRID_POINTS:
        points = u
    else:
        ranks = np.linspace(0, ref.n, GRID_POINTS)
        idx = np.unique(np.clip(np.searchsorted(cum, ranks, side="left"), 0, u.size - 1))
        points = np.union1d(u[idx], u[[0, -1]])
    edges, _ = ref.psi_bins(psi_bins)
    return np.union1d(points, edges)


@dataclass
class FeatureSketch:
    """One feature of one window on its reference's grid (see the module docstring)."""

    at: np.ndarray
    between: np.ndarray
    offsets: np.ndarray
    missing: int = 0
    present: bool = True
    distinct: dict[float, int] | None = field(default_factory=dict)  # None: more than DISTINCT_MAX

    @classmethod
    def empty(cls, k: int) -> FeatureSketch:
        return cls(np.zeros(k, np.int64), np.zeros(k + 1, np.int64), np.zeros(k + 1), present=False)

    @property
    def n(self) -> int:
        return int(self.at.sum() + self.between.sum())

    def add(self, points: np.ndarray, values: np.ndarray) -> None:
        """Fold a column's values in (NaN, infinities and nulls counted as missing)."""
        self.present = True
        finite = np.isfinite(values)
        self.missing += int(values.size - np.count_nonzero(finite))
        x = values[finite]
        if x.size == 0:
            return
        k = points.size
        i = np.searchsorted(points, x, side="left")
        on = (i < k) & (points[np.minimum(i, k - 1)] == x)
        self.at += np.bincount(i[on], minlength=k)
        off = ~on
        j, y = i[off], x[off]
        lower = np.where(j > 0, points[np.maximum(j - 1, 0)], points[0])
        self.between += np.bincount(j, minlength=k + 1)
        self.offsets += np.bincount(j, weights=np.abs(y - lower), minlength=k + 1)
        self._track(x)

    def _track(self, x: np.ndarray) -> None:
        if self.distinct is None:
            return
        values, counts = np.unique(x, return_counts=True)
        if values.size > DISTINCT_MAX:
            self.distinct = None
            return
        for v, c in zip(values.tolist(), counts.tolist(), strict=True):
            self.distinct[v] = self.distinct.get(v, 0) + c
        if len(self.distinct) > DISTINCT_MAX:
            self.distinct = None

    def merge(self, other: FeatureSketch) -> None:
        self.at += other.at
        self.between += other.between
        self.offsets += other.offsets
        self.missing += other.missing
        self.present = self.present or other.present
        if self.distinct is None or other.distinct is None:
            self.distinct = None
        else:
            for v, c in other.distinct.items():
                self.distinct[v] = self.distinct.get(v, 0) + c
            if len(self.distinct) > DISTINCT_MAX:
                self.distinct = None


@dataclass
class GridStats:
    """What a sketch gives against its reference, with the error bounds of the approximate ones."""

    n_ref: int
    n_cur: int
    ks: float
    ks_bound: float
    wasserstein: float
    wasserstein_bound: float
    psi_current: np.ndarray
    n_unique: int | None
    categories: np.ndarray | None
    reference_counts: np.ndarray | None
    current_counts: np.ndarray | None


def _cdfs(ref: SortedSample, points: np.ndarray, s: FeatureSketch) -> tuple[np.ndarray, ...]:
    """F at each point and just below it, for the reference (exact) and the current sketch."""
    a = ref.values
    n1, n2 = ref.n, s.n
    r_le = np.searchsorted(a, points, side="right") / n1
    r_lt = np.searchsorted(a, points, side="left") / n1
    c_lt = (np.cumsum(s.between)[:-1] + np.concatenate(([0], np.cumsum(s.at)[:-1]))) / n2
    c_le = c_lt + s.at / n2
    return r_le, r_lt, c_le, c_lt


def grid_stats(
    ref: SortedSample, points: np.ndarray, s: FeatureSketch, *, categorical_unique: int, psi_bins: int
) -> GridStats:
    """KS, Wasserstein, PSI counts and the categorical view of a non-empty sketch (see the module docstring)."""
    n1, n2 = ref.n, s.n
    r_le, r_lt, c_le, c_lt = _cdfs(ref, points, s)
    ks = float(max(np.abs(r_le - c_le).max(), np.abs(r_lt - c_lt).max()))
    # reference mass strictly between neighbouring points (the tails are empty: the ends are points)
    ref_open = r_lt[1:] - r_le[:-1]
    ks_bound = float(ref_open.max()) if ref_open.size else 0.0
    w, w_bound = _wasserstein(ref, points, s, (r_le, r_lt, c_le, c_lt))
    below = np.round(c_lt * n2).astype(np.int64)
    edges, _ = ref.psi_bins(psi_bins)
    cuts = below[np.searchsorted(points, edges)] if edges.size else np.empty(0, np.int64)
    psi_current = np.diff(np.concatenate(([0], cuts, [n2]))).astype(np.int64)
    n_unique = categories = ref_counts = cur_counts = None
    if s.distinct is not None:
        u, cum, _ = ref.distinct()
        cur_values = np.array(sorted(s.distinct), dtype=np.float64)
        categories = np.union1d(u, cur_values)
        n_unique = int(categories.size)
        if n_unique <= categorical_unique:
            ref_counts = np.zeros(categories.size, dtype=np.int64)
            ref_counts[np.searchsorted(categories, u)] = np.diff(np.concatenate(([0], cum)))
            cur_counts = np.zeros(categories.size, dtype=np.int64)
            cur_counts[np.searchsorted(categories, cur_values)] = [s.distinct[v] for v in cur_values]
        else:
            categories = None
    return GridStats(
        n1, n2, ks, ks_bound, w, w_bound, psi_current, n_unique, categories, ref_counts, cur_counts
    )


def _wasserstein(
    ref: SortedSample, points: np.ndarray, s: FeatureSketch, cdfs: tuple[np.ndarray, ...]
) -> tuple[float, float]:
    """W1 = integral of |F_ref - F_cur|: exact tails and non-crossing intervals, bounded elsewhere."""
    r_le, r_lt, c_le, c_lt = cdfs
    a = ref.values
    n1, n2 = ref.n, s.n
    total = s.offsets[0] / n2 + s.offsets[-1] / n2  # below the first point F_ref = 0, above the last 1
    if points.size < 2:
        return float(total), 0.0
    lo, hi = points[:-1], points[1:]
    width = hi - lo
    # the integral of each CDF over each open interval: F(lo) * w + (count * w - sum(x - lo)) / n
    ref_sums = _ref_offsets(a, points)
    i_ref = r_le[:-1] * width + (np.round((r_lt[1:] - r_le[:-1]) * n1) * width - ref_sums) / n1
    cnt = s.between[1:-1]
    i_cur = c_le[:-1] * width + (cnt * width - s.offsets[1:-1]) / n2
    lower = np.abs(i_ref - i_cur)
    # the sign of F_ref - F_cur cannot change where one CDF's range over the interval lies above the other's
    apart = (r_lt[1:] <= c_le[:-1]) | (c_lt[1:] <= r_le[:-1])
    gap = np.maximum(r_lt[1:] - c_le[:-1], c_lt[1:] - r_le[:-1])
    upper = np.maximum(gap * width, lower)
    mid = np.where(apart, lower, (lower + upper) / 2)
    bound = float(np.where(apart, 0.0, (upper - lower) / 2).sum())
    return float(total + mid.sum()), bound


def _ref_offsets(a: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per open interval between neighbouring points: the sum of (value - lower point) of the reference."""
    lo_idx = np.searchsorted(a, points[:-1], side="right")
    hi_idx = np.searchsorted(a, points[1:], side="left")
    prefix = np.concatenate(([0.0], np.cumsum(a)))
    sums = prefix[hi_idx] - prefix[lo_idx]
    return np.maximum(sums - (hi_idx - lo_idx) * points[:-1], 0.0)


# --- latency -----------------------------------------------------------------------------------------------


_MAPPING = LogarithmicMapping(LATENCY_ACCURACY)
_MULTIPLIER = math.log(2) / math.log1p(2 * LATENCY_ACCURACY / (1 - LATENCY_ACCURACY))


def latency_keys(values: np.ndarray) -> np.ndarray:
    """The sketch key of each positive value: ceil(log2(v) * multiplier) (the mapping's own formula)."""
    return np.ceil(np.log2(values) * _MULTIPLIER).astype(np.int64)


@dataclass
class LatencySketch:
    """Counts per DDSketch key (positive latencies) and of zero latencies; merged by adding."""

    counts: dict[int, int] = field(default_factory=dict)
    zeros: int = 0

    @property
    def n(self) -> int:
        return self.zeros + sum(self.counts.values())

    def add(self, values: np.ndarray) -> None:
        v = values[np.isfinite(values)]
        positive = v[v > _MAPPING.min_possible]
        self.zeros += int(v.size - positive.size)
        keys, counts = np.unique(latency_keys(positive), return_counts=True)
        for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
            self.counts[k] = self.counts.get(k, 0) + c

    def merge(self, other: LatencySketch) -> None:
        self.zeros += other.zeros
        for k, c in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + c

    def above(self, limit: float) -> int:
        """How many latencies exceed `limit`: a value in the key holding `limit` counts when that key's value
        does (so within LATENCY_ACCURACY of `limit` it may count either way)."""
        return sum(c for k, c in self.counts.items() if _MAPPING.value(k) > limit) + (
            self.zeros if limit < 0 else 0
        )

    def quantiles(self, qs: tuple[int, ...]) -> dict[int, float]:
        """Percentiles from a DDSketch holding these counts (each within LATENCY_ACCURACY of its rank's value)."""
        sketch = DDSketch(LATENCY_ACCURACY)
        if self.zeros:
            sketch.add(0.0, float(self.zeros))
        for k, c in self.counts.items():
            sketch.add(_MAPPING.value(k), float(c))
        return {q: float(sketch.get_quantile_value(q / 100) or 0.0) for q in qs}

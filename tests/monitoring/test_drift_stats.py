"""Drift statistics from sorted arrays equal scipy's (and a plain numpy PSI) within 1e-9; edge cases are defined."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mloncall.monitoring import drift, drift_stats
from mloncall.monitoring.drift import DriftSettings, feature_drift
from mloncall.monitoring.drift_stats import SortedSample, compare, compare_counts, psi_from_counts

TOL = 1e-9


def reference_psi(ref: np.ndarray, cur: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """PSI binned the plain way: reference decile edges, np.histogram with open outer bins (the formula over the
    counts is `psi_from_counts`, checked by hand below)."""
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1))[1:-1])
    edges = np.concatenate(([-np.inf], inner, [np.inf]))
    return psi_from_counts(np.histogram(ref, edges)[0], np.histogram(cur, edges)[0], epsilon=eps)


def test_psi_from_counts_is_the_sum_of_share_differences_times_their_log_ratio() -> None:
    assert psi_from_counts(np.array([50, 50]), np.array([80, 20])) == pytest.approx(
        0.3 * math.log(0.8 / 0.5) - 0.3 * math.log(0.2 / 0.5), abs=TOL
    )
    # An empty bin counts as a share of epsilon, so the index stays finite.
    assert psi_from_counts(np.array([0, 10]), np.array([5, 5]), epsilon=1e-4) == pytest.approx(
        (0.5 - 1e-4) * math.log(0.5 / 1e-4) + (0.5 - 1.0) * math.log(0.5 / 1.0), abs=TOL
    )


def fixed_data(
    n_ref: int, n_cur: int, *, shift: float, ties: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(5.0, 2.0, n_ref)
    b = rng.normal(5.0 + shift, 2.2, n_cur)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    return a, b


CASES = [
    (150, 90, 0.0, False),  # exact p-value, small
    (150, 300, 0.5, True),  # exact, with ties
    (1000, 10_000, 0.1, True),  # largest exact size
    (3000, 12_000, 0.2, False),  # asymptotic
    (20_000, 20_001, 0.05, True),  # asymptotic with ties
    (1, 1, 0.0, False),
    (5, 3, 1.0, True),
]


@pytest.mark.parametrize(("n_ref", "n_cur", "shift", "ties"), CASES)
def test_ks_wasserstein_and_psi_match_the_reference_computations(
    n_ref: int, n_cur: int, shift: float, ties: bool
) -> None:
    a, b = fixed_data(n_ref, n_cur, shift=shift, ties=ties, seed=n_ref + n_cur)
    c = compare(SortedSample.of(a), SortedSample.of(b))
    expected = stats.ks_2samp(a, b)
    assert c.ks == pytest.approx(float(expected.statistic), abs=TOL)
    assert c.ks_p == pytest.approx(float(expected.pvalue), abs=TOL)
    w = stats.wasserstein_distance(a, b)
    assert c.wasserstein == pytest.approx(w, abs=TOL)
    assert c.wasserstein_norm == pytest.approx(w / max(float(np.std(a)), 0.001), abs=TOL)
    assert c.psi == pytest.approx(reference_psi(a, b), abs=TOL)


def test_random_small_and_tied_samples_match_scipy() -> None:
    rng = np.random.default_rng(2024)
    for case in range(300):
        n1, n2 = (int(v) for v in rng.integers(1, 40, size=2))
        if case % 3 == 0:  # heavy ties on a few values
            a, b = rng.integers(0, 4, n1).astype(float), rng.integers(0, 6, n2).astype(float)
        elif case % 3 == 1:  # disjoint or overlapping ranges
            a, b = rng.normal(0, 1, n1), rng.normal(float(rng.integers(-3, 4)), 0.5, n2)
        else:
            a, b = np.round(rng.exponential(2.0, n1), 1), np.round(rng.exponential(2.5, n2), 1)
        c = compare(SortedSample.of(a), SortedSample.of(b))
        assert c.wasserstein == pytest.approx(stats.wasserstein_distance(a, b), abs=TOL), case
        expected = stats.ks_2samp(a, b)
        assert (c.ks, c.ks_p) == pytest.approx(
            (float(expected.statistic), float(expected.pvalue)), abs=TOL
        ), case
        assert c.n_unique == np.unique(np.concatenate([a, b])).size, case


def test_large_tied_samples_use_the_asymptotic_path_and_match_scipy() -> None:
    rng = np.random.default_rng(7)
    for case in range(6):
        a = rng.integers(0, 40, 12_000).astype(float)
        b = rng.integers(case, 40 + case, 15_000).astype(float)
        c = compare(SortedSample.of(a), SortedSample.of(b))
        expected = stats.ks_2samp(a, b)
        assert c.ks == pytest.approx(float(expected.statistic), abs=TOL)
        assert c.ks_p == pytest.approx(float(expected.pvalue), abs=TOL)
        assert c.wasserstein == pytest.approx(stats.wasserstein_distance(a, b), abs=TOL)


def test_values_far_from_zero_keep_their_precision() -> None:
    rng = np.random.default_rng(8)
    a = 1e6 + rng.normal(0, 1, 50_000)
    b = 1e6 + rng.normal(0.05, 1.1, 200_000)
    c = compare(SortedSample.of(a), SortedSample.of(b))
    assert c.wasserstein == pytest.approx(stats.wasserstein_distance(a, b), abs=TOL)


def test_the_sorted_helpers_accept_presorted_arrays() -> None:
    a, b = fixed_data(2000, 15_000, shift=0.3, ties=False, seed=5)
    a.sort()
    b.sort()
    d, p = drift_stats.ks_2samp_sorted(a, b)
    expected = stats.ks_2samp(a, b)
    assert d == pytest.approx(float(expected.statistic), abs=TOL)
    assert p == pytest.approx(float(expected.pvalue), abs=TOL)
    assert drift_stats.wasserstein_sorted(a, b) == pytest.approx(stats.wasserstein_distance(a, b), abs=TOL)


def test_far_tail_ks_p_values_are_a_bound_within_tolerance_of_scipy() -> None:
    a, b = fixed_data(20_000, 30_000, shift=0.4, ties=False, seed=9)
    c = compare(SortedSample.of(a), SortedSample.of(b))
    expected = float(stats.ks_2samp(a, b).pvalue)
    assert expected < drift_stats.KS_TAIL_BOUND and expected <= c.ks_p < drift_stats.KS_TAIL_BOUND
    assert c.ks_p == pytest.approx(expected, abs=TOL)


def test_features_in_parallel_threads_equal_one_by_one() -> None:
    rng = np.random.default_rng(3)
    pairs = [
        (f"f{j}", SortedSample.of(rng.normal(size=3000)), rng.normal(0.1 * j, 1.0, size=60_000))
        for j in range(4)
    ]
    settings = DriftSettings()
    serial = drift.drift_features(pairs, settings, workers=1)
    parallel = drift.drift_features(pairs, settings, workers=4)
    assert [r.to_dict() for r in serial] == [r.to_dict() for r in parallel]


def test_categorical_statistics_match_scipy() -> None:
    ref = np.array([50, 30, 20])
    cur = np.array([30, 40, 30])
    c = compare_counts(["a", "b", "c"], ref, cur)
    expected = stats.chisquare(cur, ref * cur.sum() / ref.sum())
    assert c.chi2 == pytest.approx(float(expected.statistic), abs=TOL)
    assert c.chi2_p == pytest.approx(float(expected.pvalue), abs=TOL)
    assert c.js == pytest.approx(float(jensenshannon(ref / ref.sum(), cur / cur.sum())), abs=TOL)


def test_few_distinct_values_are_counted_per_category() -> None:
    a = np.array([0.0] * 30 + [1.0] * 50 + [2.0] * 20)
    b = np.array([0.0] * 5 + [1.0] * 7 + [3.0] * 9)
    c = compare(SortedSample.of(a), SortedSample.of(b))
    assert c.categories is not None and c.categories.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert c.reference_counts is not None and c.reference_counts.tolist() == [30, 50, 20, 0]
    assert c.current_counts is not None and c.current_counts.tolist() == [5, 7, 0, 9]
    assert compare(SortedSample.of(a), SortedSample.of(np.array([0.0, 1.0]))).n_unique == 3
    assert compare(SortedSample.of(np.arange(4.0)), SortedSample.of(np.arange(4.0, 6.0))).categories is None


def test_a_category_unseen_in_the_reference_is_drift_without_infinities() -> None:
    c = compare_counts(["a", "b", "c"], np.array([10, 10, 0]), np.array([5, 5, 10]))
    assert c.chi2 is None and c.chi2_p == 0.0 and c.new_categories == ["c"]
    single = compare_counts(["a"], np.array([10]), np.array([7]))
    assert single.chi2_p == 1.0 and single.js == 0.0


def _all_finite(row: dict[str, object]) -> bool:
    return all(not (isinstance(v, float) and not math.isfinite(v)) for v in row.values())


def test_constant_feature_gives_defined_values() -> None:
    same = feature_drift(
        "c", SortedSample.of(np.full(200, 3.0)), SortedSample.of(np.full(150, 3.0)), DriftSettings()
    )
    assert same.drifted is False and same.method == "chisquare"
    assert same.ks == 0.0 and same.wasserstein == 0.0 and same.psi == 0.0
    assert _all_finite(same.to_dict(histograms=False))
    moved = feature_drift(
        "c", SortedSample.of(np.full(200, 3.0)), SortedSample.of(np.full(150, 4.0)), DriftSettings()
    )
    assert moved.drifted is True and moved.wasserstein_norm == pytest.approx(1.0 / drift_stats.STD_FLOOR)
    assert _all_finite(moved.to_dict(histograms=False))
    assert (
        moved.histogram is not None
        and sum(moved.histogram.reference) == 200
        and sum(moved.histogram.current) == 150
    )


def test_a_feature_without_values_is_not_judged() -> None:
    row = feature_drift(
        "x", SortedSample.of(np.arange(10.0)), SortedSample.of(np.array([np.nan, np.inf])), DriftSettings()
    )
    assert row.drifted is None and row.n_cur == 0 and row.n_missing == 2
    assert "no finite values" in row.reason


def test_method_follows_reference_size_and_distinct_values() -> None:
    rng = np.random.default_rng(0)
    small = feature_drift(
        "x", SortedSample.of(rng.normal(size=500)), SortedSample.of(rng.normal(size=500)), DriftSettings()
    )
    large = feature_drift(
        "x", SortedSample.of(rng.normal(size=5000)), SortedSample.of(rng.normal(size=800)), DriftSettings()
    )
    binary = feature_drift(
        "x", SortedSample.of(rng.integers(0, 2, 5000).astype(float)), SortedSample.of(rng.integers(0, 2, 800).astype(float)),
        DriftSettings(),
    )  # fmt: skip
    assert (small.method, large.method, binary.method) == ("ks", "wasserstein", "jensenshannon")
    assert small.drifted is False and large.drifted is False and binary.drifted is False
    for row in (small, large, binary):
        assert row.psi is not None and row.ks is not None and row.wasserstein_norm is not None


def test_histograms_share_their_bin_edges() -> None:
    h = drift_stats.histogram(
        SortedSample.of(np.arange(100.0)), SortedSample.of(np.arange(50.0, 250.0)), bins=20
    )
    assert len(h.edges) == 21 and h.edges[0] == 0.0 and h.edges[-1] == 249.0
    assert sum(h.reference) == 100 and sum(h.current) == 200
    assert np.histogram(np.arange(50.0, 250.0), np.array(h.edges))[0].tolist() == h.current

"""Monitors evaluated from summaries: a window is the merge of its closed hours' and minutes' summaries and the
log rows of its ragged edges and open minute, folded one file at a time (memory does not grow with the window).

The verdicts are the exact path's (`monitoring.drift`, `monitoring.quality`, `monitoring.performance`) applied to
merged counts: counts, rates and PSI, chi-square and Jensen-Shannon are exact; the KS statistic and the
Wasserstein distance carry the bounds `monitoring.sketches` states (in each feature's evidence as `ks_bound`
and `wasserstein_bound`); latency percentiles are within 1% (DDSketch) of the value of their rank.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from mloncall.core.outcome import Outcome
from mloncall.monitoring import drift as drift_mod
from mloncall.monitoring import quality
from mloncall.monitoring.drift import DriftSettings, FeatureDrift
from mloncall.monitoring.drift_report import VersionDrift, unmonitored, version_drift
from mloncall.monitoring.drift_stats import (
    PSI_BINS,
    STD_FLOOR,
    CategoricalComparison,
    SortedSample,
    compare_counts,
    number,
    psi_from_counts,
)
from mloncall.monitoring.drift_stats import _ks_asymptotic_p as ks_p_value
from mloncall.monitoring.performance import error_rate_part, latency_part
from mloncall.monitoring.schemas import (
    DriftParams,
    ErrorRateParams,
    LatencyParams,
    MissingFeaturesParams,
    OutOfRangeParams,
)
from mloncall.monitoring.sketches import DISTINCT_MAX, FeatureSketch, grid_stats
from mloncall.monitoring.stats import PERCENTILES
from mloncall.monitoring.summary import (
    COLUMNS,
    SUMMARIES,
    Grid,
    Summary,
    VersionSummary,
    hour_key,
    load,
    merge,
    minute_key,
    summarise,
)
from mloncall.monitoring.verdict import Part, version_label
from mloncall.stores import predlog as logs
from mloncall.stores.artifacts import ArtifactStore

MINUTE_US = 60_000_000
#: A minute is summarised (and read from its summary) once this long has passed since it ended.
#: Writers flush every second; a file flushed later than this is missed by the minute's summary (it is
#: still read by exact evaluations and merged by compaction).
SUMMARY_GRACE = dt.timedelta(seconds=15)


@dataclass
class WindowSummary:
    """A window's merged summary and what it was made from."""

    summary: Summary
    summaries_read: int = 0
    raw_minutes: int = 0
    files_read: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)

    def evidence(self) -> dict[str, Any]:
        return {
            "path": "incremental",
            "summaries_read": self.summaries_read,
            "raw_minutes": self.raw_minutes,
            "files_read": {"predictions": self.files_read},
            "skipped_files": [{"kind": "predictions", **s} for s in self.skipped],
        }


def closed_minute(now: dt.datetime) -> int:
    """Minutes (counted from the epoch) before this one have (or will have) their summary."""
    return logs.to_us(now - SUMMARY_GRACE) // MINUTE_US


def window_summary(
    store: ArtifactStore,
    model: str,
    since: dt.datetime,
    until: dt.datetime,
    grids: dict[int | None, Grid],
    *,
    now: dt.datetime,
) -> WindowSummary:
    """Merge the summaries of the closed hours and minutes in [since, until); fold the rest from the log."""
    s_us, u_us = logs.to_us(since), logs.to_us(until)
    first, last = -(-s_us // MINUTE_US), u_us // MINUTE_US
    closed = closed_minute(now)
    out = WindowSummary(summary={})
    raw: list[tuple[int, int]] = []  # [since_us, until_us) read from the log
    if first >= last:
        raw.append((s_us, u_us))
    else:
        raw.append((s_us, first * MINUTE_US))
        m = first
        while m < last:
            if m % 60 == 0 and m + 60 <= min(last, closed):
                found = load(store, hour_key(model, m // 60))
                if found is not None:
                    merge(out.summary, found)
                    out.summaries_read += 1
                    m += 60
                    continue
                if _never_logged(store, model, m // 60):  # a quiet hour of a long window: 60 misses saved
                    m += 60
                    continue
            found = load(store, minute_key(model, m)) if m < closed else None
            if found is not None:
                merge(out.summary, found)
                out.summaries_read += 1
            else:
                raw.append((m * MINUTE_US, (m + 1) * MINUTE_US))
                out.raw_minutes += 1
            m += 1
        raw.append((last * MINUTE_US, u_us))
    for lo, hi in _joined(raw):
        _fold(store, model, lo, hi, grids, out)
    return out


def _never_logged(store: ArtifactStore, model: str, hour: int) -> bool:
    """No log file and no summary of the model in this hour (one lookup per folder, local or remote)."""
    folder = logs.partition(hour)
    return not any(store.exists(f"{kind}/model={model}/{folder}") for kind in (logs.PREDICTIONS, SUMMARIES))


def _joined(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if hi > lo:
            logs.add_range(out, lo, hi)
    return out


def _fold(
    store: ArtifactStore, model: str, lo: int, hi: int, grids: dict[int | None, Grid], out: WindowSummary
) -> None:
    for table in logs.iter_window(
        store, kind=logs.PREDICTIONS, model=model, since=logs.from_us(lo), until=logs.from_us(hi),
        columns=COLUMNS, prefixes=("f_",), skipped=out.skipped,
    ):  # fmt: skip
        out.files_read += 1
        summarise(table, grids, out.summary)


def ordered(summary: Summary) -> list[tuple[int | None, VersionSummary]]:
    """Versions in the order `by_version` gives them: numbers ascending, rows without a version last."""
    keys = sorted(k for k in summary if k is not None)
    out: list[tuple[int | None, VersionSummary]] = [(k, summary[k]) for k in keys]
    if None in summary:
        out.append((None, summary[None]))
    return out


# --- drift -------------------------------------------------------------------------------------------------


def supports_drift(params: DriftParams) -> bool:
    """Summaries hold PSI counts on the default bins and distinct values up to DISTINCT_MAX."""
    return params.psi_bins == PSI_BINS and params.categorical_unique < DISTINCT_MAX


def drift_versions(
    summary: Summary, grids: dict[int | None, Grid], params: DriftParams
) -> list[VersionDrift]:
    settings = params.settings()
    results = []
    for version, s in ordered(summary):
        grid = grids.get(version)
        if version is None or grid is None or grid.info is None:
            what = (
                f"version {version} is not in the registry"
                if version is not None
                else "rows logged without a version"
            )
            results.append(
                VersionDrift(
                    version, Outcome.INCONCLUSIVE, f"{what}: no reference to compare with", 0, s.served, 0
                )
            )
            continue
        if grid.reference_error is not None:
            outcome = Outcome.INCONCLUSIVE if grid.reference_missing else Outcome.ERROR
            results.append(
                VersionDrift(
                    version,
                    outcome,
                    grid.reference_error,
                    0,
                    s.served,
                    0,
                    reference=grid.reference_name or None,
                )
            )
            continue
        results.append(_version(version, s, grid, params, settings))
    return results


def _version(
    version: int, s: VersionSummary, grid: Grid, params: DriftParams, settings: DriftSettings
) -> VersionDrift:
    assert grid.info is not None
    features = [f for f in grid.info.features if params.features is None or f in params.features]
    empty = SortedSample(np.empty(0))
    rows = []
    for f in features:
        ref = grid.reference.get(f, empty)
        sketch = s.features.get(f)
        if sketch is None or not sketch.present or f not in grid.points:
            row = drift_mod.feature_drift(f, ref, empty, settings)
            row.reason = "the feature is not in the prediction log"
        else:
            row = feature_drift(f, ref, grid.points[f], sketch, settings)
        rows.append(row)
    result = version_drift(
        version=version, reference={f: grid.reference.get(f, empty) for f in features},
        reference_rows=grid.reference_rows, reference_classes=grid.reference_classes, current={},
        predicted=s.predicted, n_rows=s.served, settings=settings, reference_name=grid.reference_name,
        feature_rows=rows,
    )  # fmt: skip
    return unmonitored(result, params.features, features, grid.info.features)


def feature_drift(
    feature: str, ref: SortedSample, points: np.ndarray, sketch: FeatureSketch, s: DriftSettings
) -> FeatureDrift:
    """The exact path's `feature_drift`, from a sketch: the same tests, thresholds and verdict."""
    if ref.n == 0 or sketch.n == 0:
        side = "reference" if ref.n == 0 else "current window"
        return FeatureDrift(
            feature=feature, method=s.method, drifted=None, score=None, threshold=None, n_ref=ref.n,
            n_cur=sketch.n, n_missing=sketch.missing, reason=f"no finite values in the {side}",
        )  # fmt: skip
    g = grid_stats(ref, points, sketch, categorical_unique=s.categorical_unique, psi_bins=s.psi_bins)
    _, ref_bins = ref.psi_bins(s.psi_bins)
    psi = psi_from_counts(ref_bins, g.psi_current, epsilon=s.psi_epsilon)
    cat: CategoricalComparison | None = None
    if g.categories is not None:
        assert g.reference_counts is not None and g.current_counts is not None
        cat = compare_counts([f"{v:g}" for v in g.categories], g.reference_counts, g.current_counts)
    std = max(ref.std, STD_FLOOR)
    w_norm = g.wasserstein / std
    ks_p = ks_p_value(g.ks, g.n_ref, g.n_cur)
    method = drift_mod._method_for(s, categorical=cat is not None, n_ref=g.n_ref)
    score = {
        "ks": ks_p, "wasserstein": w_norm, "psi": psi,
        "chisquare": cat.chi2_p if cat is not None else None, "jensenshannon": cat.js if cat is not None else None,
    }[method]  # fmt: skip
    assert score is not None
    threshold, drifted = drift_mod._decide(method, score, s)
    row = FeatureDrift(
        feature=feature, method=method, drifted=bool(drifted), score=number(score), threshold=threshold,
        n_ref=g.n_ref, n_cur=g.n_cur, n_missing=sketch.missing, n_unique=g.n_unique, psi=number(psi),
        ks=number(g.ks), ks_p=number(ks_p), wasserstein=number(g.wasserstein), wasserstein_norm=number(w_norm),
        chi2=cat.chi2 if cat is not None else None, chi2_p=cat.chi2_p if cat is not None else None,
        js=number(cat.js) if cat is not None else None,
        reason=drift_mod._feature_reason(method, score, threshold, drifted),
        psi_bins={"inner_edges": [float(e) for e in ref.psi_bins(s.psi_bins)[0]], "reference": ref_bins.tolist(),
                  "current": g.psi_current.tolist()},
    )  # fmt: skip
    row.bounds = {
        "ks": g.ks_bound,
        "wasserstein": g.wasserstein_bound,
        "wasserstein_norm": g.wasserstein_bound / std,
    }
    return row


# --- quality, errors, latency ------------------------------------------------------------------------------


def missing_parts(summary: Summary, params: MissingFeaturesParams) -> list[Part]:
    parts = []
    for version, s in ordered(summary):
        part = quality.judge_rate(
            version_label(version),
            "missing-feature",
            s.any_missing,
            s.served,
            params.max_rate,
            params.min_rows,
        )
        part.evidence["per_feature"] = dict(s.missing)
        part.evidence["failed_requests_excluded"] = s.errors
        parts.append(part)
    return parts


def out_of_range_parts(
    summary: Summary, grids: dict[int | None, Grid], params: OutOfRangeParams
) -> list[Part]:
    parts = []
    for version, s in ordered(summary):
        grid = grids.get(version)
        info = grid.info if grid is not None else None
        n = s.served
        part = quality.judge_rate(
            version_label(version), "out-of-range", s.out_of_range, n, params.max_rate, params.min_rows
        )
        ranges = {}
        if info is not None:
            ranges = {
                f: [info.mins[f], info.maxs[f]] for f in info.features if f in info.mins and f in info.maxs
            }
        part.evidence.update(
            {
                "flagged_rows": s.flagged, "flagged_rate": s.flagged / n if n else 0.0,
                "recomputed_rows": s.recomputed, "recomputed_rate": s.recomputed / n if n else 0.0,
                "flagged_per_feature": dict(s.flagged_per_feature),
                "recomputed_per_feature": dict(s.recomputed_per_feature), "training_range": ranges,
                "failed_requests_excluded": s.errors,
            }
        )  # fmt: skip
        if info is None and version is not None:
            part.evidence["note"] = (
                f"version {version} is not in the registry: only the logged flags were counted"
            )
        parts.append(part)
    return parts


def error_rate_parts(summary: Summary, params: ErrorRateParams) -> list[Part]:
    parts = []
    for version, s in ordered(summary):
        parts.append(error_rate_part(version_label(version), s.rows, s.errors, s.error_column, params))
    return parts


def latency_parts(summary: Summary, params: LatencyParams) -> list[Part]:
    return [
        latency_part(
            version_label(version),
            s.latency.n,
            partial(s.latency.quantiles, PERCENTILES),
            params,
            relative_accuracy=0.01,
        )
        for version, s in ordered(summary)
    ]

"""Drift reports: the verdict of one served version over a window (dataset drift when the share of drifted
columns reaches `drift_share`), and of a model's served versions, with the data behind every histogram."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mloncall.core.outcome import Outcome
from mloncall.monitoring.drift import (
    DRIFT_SHARE,
    ClassDrift,
    DriftSettings,
    FeatureDrift,
    class_drift,
    drift_features,
    feature_drift,
)
from mloncall.monitoring.drift_stats import (
    SortedSample,
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
    feature_rows: list[FeatureDrift] | None = None,
) -> VersionDrift:
    """Judge one version's window: too few rows is inconclusive; otherwise FAILED (dataset drift) when the
    share of drifted features (and the predicted class, if included) reaches `drift_share`. With
    `feature_rows` (computed from summaries) the current columns are not needed."""
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
    base.features = feature_rows if feature_rows is not None else _feature_rows(reference, current, s)
    if reference_classes is not None and predicted is not None:
        base.prediction = class_drift(reference_classes, predicted, s, n_ref_rows=reference_rows)
    _judge_dataset(base, s)
    return base


def _feature_rows(
    reference: dict[str, SortedSample], current: dict[str, np.ndarray], s: DriftSettings
) -> list[FeatureDrift]:
    """One row per reference feature, in the reference's order; a feature the log lacks is unjudged."""
    present = [(name, ref, current[name]) for name, ref in reference.items() if name in current]
    rows = {row.feature: row for row in drift_features(present, s)}
    for name, ref in reference.items():
        if name not in rows:
            rows[name] = feature_drift(name, ref, SortedSample(np.empty(0)), s)
            rows[name].reason = "the feature is not in the prediction log"
    return [rows[name] for name in reference]


def _judge_dataset(base: VersionDrift, s: DriftSettings) -> None:
    """Dataset drift when the share of drifted columns (the predicted class counted if included) reaches
    `drift_share`; with no column judged the version stays inconclusive."""
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
        return
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


def unmonitored(
    result: VersionDrift, wanted: Sequence[str] | None, found: Sequence[str], signature: Sequence[str]
) -> VersionDrift:
    """Inconclusive when the rule names features and none of them is in the version's signature."""
    if wanted is not None and not found:
        result.outcome = Outcome.INCONCLUSIVE
        result.reason = (
            f"none of the monitored features ({', '.join(wanted)}) is in version {result.version}'s signature "
            f"({', '.join(signature)})"
        )
    return result

"""The monitoring interface: run one monitor over a model's recent logs, validate rule parameters, build
the drift report `investigate` draws, read what each version served in a window (`served`, what canary
analysis and acceptance compare) and the points of a chart (`series`), both from the summaries.

`run_monitor` returns the project's `Check`: SUCCESSFUL, INCONCLUSIVE (too little data, labels not in yet,
no reference), ERROR (the check could not run, e.g. the reference data is unreadable) or FAILED, the
condition an alert fires on. Its evidence always holds the model, kind, window, effective parameters, the
values and thresholds behind the verdict, sample sizes, and the log files read or skipped. The versions
compared are those that served in the window (each row's `version`); each is judged against its own
reference and the worst judged one wins, named in the reason.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from mloncall.core.errors import InvalidInput
from mloncall.core.outcome import Check
from mloncall.monitoring import drift_windows, label_accuracy, performance, quality, sources
from mloncall.monitoring import incremental as inc
from mloncall.monitoring.drift_report import DriftReport
from mloncall.monitoring.incremental import WindowSummary
from mloncall.monitoring.reference import versions_in
from mloncall.monitoring.schemas import (
    MONITOR_KINDS,
    AccuracyParams,
    DriftParams,
    ErrorRateParams,
    LatencyParams,
    MissingFeaturesParams,
    OutOfRangeParams,
    ValidationFailuresParams,
    VolumeParams,
    evidence_params,
    parse_params,
)
from mloncall.monitoring.scope import Scope, check_window, logs_evidence, scope_of, utc_until
from mloncall.monitoring.served import (
    MAX_POINTS,
    SERIES_METRICS,
    Point,
    ServedWindow,
    charts,
    served_window,
    value_of,
)
from mloncall.monitoring.verdict import Part, combine, version_label
from mloncall.stores import predlog as logs
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.context import Context
from mloncall.stores.predlog import LogWindow, read_window, to_us

__all__ = [
    "MONITOR_KINDS",
    "SERIES_METRICS",
    "DriftReport",
    "Point",
    "ServedWindow",
    "drift_report",
    "drift_reports",
    "run_monitor",
    "series",
    "series_by_metric",
    "served",
    "validate_params",
]

_EMPTY = "no requests logged in the window"


def validate_params(kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The effective parameters of a monitor (defaults filled in); InvalidInput names an unknown kind or every
    bad parameter. The alert rules loader calls this when it loads rules."""
    return parse_params(kind, params).model_dump()


def run_monitor(
    *,
    ctx: Context,
    kind: str,
    model: str,
    window: dt.timedelta,
    params: dict[str, Any],
    now: dt.datetime | None = None,
    mode: str = "auto",
) -> Check:
    """Evaluate one monitor of a model over [now - window, now). InvalidInput for an unknown kind, bad
    parameters or window; NotFound for an unknown model.

    `mode`: "exact" reads every row of the window; "incremental" merges the per-interval summaries and reads
    rows only for the window's edges and open minute (`monitoring.incremental`); "auto" (the default) is
    incremental for windows of at least INCREMENTAL_MIN_WINDOW and INCREMENTAL_MIN_ROWS rows, exact below."""
    parsed = parse_params(kind, params)
    scope = scope_of(ctx, model, window, now, mode)
    check = _RUNNERS[kind](scope, parsed)
    check.evidence = _json_safe(
        {
            "model": model,
            "kind": kind,
            "value": _headline(kind, check.evidence),
            "window_s": window.total_seconds(),
            "since": check.evidence.pop("since", scope.since.isoformat()),
            "until": check.evidence.pop("until", scope.until.isoformat()),
            "params": evidence_params(parsed),
            **check.evidence,
        }
    )
    return check


def drift_report(
    *,
    ctx: Context,
    model: str,
    window: dt.timedelta,
    now: dt.datetime | None = None,
    params: dict[str, Any] | None = None,
) -> DriftReport:
    """Per version served in [now - window, now): per-feature PSI, KS, Wasserstein and verdict, the predicted
    class mix against the training class balance, and reference vs current histograms on the same bins."""
    parsed = parse_params("drift", params)
    assert isinstance(parsed, DriftParams)
    return drift_windows.evaluate(scope_of(ctx, model, window, now, "exact"), parsed)


def drift_reports(
    *,
    ctx: Context,
    model: str,
    window: dt.timedelta,
    slices: int,
    now: dt.datetime | None = None,
    params: dict[str, Any] | None = None,
    mode: str = "auto",
) -> list[DriftReport]:
    """The drift report of each of `slices` consecutive equal parts of [now - window, now), oldest first (the
    dashboard's drift over time): from the monitors' summaries where the window is incremental (`mode`
    "auto" decides as the monitors do), else exact from one read of the log."""
    parsed = parse_params("drift", params)
    assert isinstance(parsed, DriftParams)
    return drift_windows.sliced(scope_of(ctx, model, window, now, mode), parsed, slices)


def served(
    *,
    session: Session,
    store: ArtifactStore,
    model: str,
    since: dt.datetime,
    until: dt.datetime,
    now: dt.datetime,
    with_labels: bool = True,
) -> ServedWindow:
    """What each version served in [since, until) as of `now`: its requests (all, and routed) from the
    summaries, its labelled answers from the label indexes (`monitoring.served`). NotFound for an unknown
    model."""
    versions = versions_in(session=session, model=model)
    return served_window(
        store,
        model,
        utc_until(since),
        utc_until(until),
        now=utc_until(now),
        versions=versions,
        with_labels=with_labels,
    )


def series(
    *,
    session: Session,
    store: ArtifactStore,
    model: str,
    version: int | None,
    metric: str,
    window: dt.timedelta,
    step: dt.timedelta,
    now: dt.datetime | None = None,
) -> list[Point]:
    """The dashboard's chart of one metric of a model (`series_by_metric`)."""
    found = series_by_metric(
        session=session, store=store, model=model, version=version, metrics=(metric,), window=window,
        step=step, now=now,
    )  # fmt: skip
    return found[metric]


def series_by_metric(
    *,
    session: Session,
    store: ArtifactStore,
    model: str,
    version: int | None,
    metrics: tuple[str, ...],
    window: dt.timedelta,
    step: dt.timedelta,
    now: dt.datetime | None = None,
) -> dict[str, list[Point]]:
    """The dashboard's charts of metrics of a model (one version, or every version with None) over
    [now - window, now) in buckets of `step`, each bucket read once from the summaries as the monitors and
    the canary read them (`monitoring.served.charts`). InvalidInput for an unknown metric, a bad window or
    step, or too many points; NotFound for an unknown model."""
    _check_metrics(metrics)
    window, step = check_window(window), check_window(step)
    if window / step > MAX_POINTS:
        raise InvalidInput(
            f"a chart has at most {MAX_POINTS} points: make the step longer or the window shorter"
        )
    versions = versions_in(session=session, model=model)
    return charts(
        store,
        model,
        version,
        metrics,
        since=utc_until(now) - window,
        until=utc_until(now),
        step=step,
        versions=versions,
    )


def served_figures(
    *,
    session: Session,
    store: ArtifactStore,
    model: str,
    metrics: tuple[str, ...],
    window: dt.timedelta,
    now: dt.datetime,
) -> dict[str, float | None]:
    """Metrics of `SERIES_METRICS` over [now - window, now), every version together, from one read of the
    summaries (the overview's served error rate and p99). NotFound for an unknown model."""
    _check_metrics(metrics)
    found = served(
        session=session, store=store, model=model, since=now - window, until=now, now=now,
        with_labels="accuracy" in metrics,
    )  # fmt: skip
    return {m: value_of(m, found) for m in metrics}


def _check_metrics(metrics: tuple[str, ...]) -> None:
    """InvalidInput naming the first metric that is not one of `SERIES_METRICS`."""
    unknown = [m for m in metrics if m not in SERIES_METRICS]
    if unknown:
        raise InvalidInput(f"unknown metric {unknown[0]!r}: use one of {', '.join(SERIES_METRICS)}")


# --- evidence --------------------------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    """Evidence as plain JSON values: numpy scalars unwrapped, NaN and infinities as None."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


#: The headline number of each kind (what an alert shows as its value), in the deciding part's evidence.
HEADLINE = {
    "drift": "drifted_share",
    "missing_features": "rate",
    "out_of_range": "rate",
    "validation_failures": "rate",
    "volume": "ratio",
    "accuracy": "accuracy",
    "error_rate": "error_rate",
    "latency": "p99_ms",
    "freshness": "age_hours",
    "pipeline": "run",
}


def _headline(kind: str, evidence: dict[str, Any]) -> float | None:
    """The headline number of the part (or version) that decided the outcome; None when it has none."""
    deciding = evidence.get("deciding") or []
    parts: dict[str, Any] = dict(evidence.get("parts") or {})
    for v in evidence.get("versions") or []:
        parts[version_label(v.get("version"))] = v
    for label in deciding:
        value = (parts.get(label) or {}).get(HEADLINE[kind])
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


# --- drift -------------------------------------------------------------------------------------------------


def _run_drift(scope: Scope, params: DriftParams) -> Check:
    report = drift_windows.evaluate(scope, params)
    evidence = report.to_dict(histograms=False)
    for key in ("model", "outcome", "reason", "params"):
        evidence.pop(key, None)
    return Check("drift", report.outcome, report.reason, evidence)


# --- data quality ------------------------------------------------------------------------------------------


def _run_missing(scope: Scope, params: MissingFeaturesParams) -> Check:
    rejected = scope.rejections()
    if scope.incremental:
        ws = scope.summary()
        parts = inc.missing_parts(ws.summary, params) + quality.refused_missing(
            rejections=rejected, total_rows=sum(v.real_rows for v in ws.summary.values()), params=params
        )
        return _summary_check("missing_features", parts, ws, rejected)
    preds = scope.predictions(["version", "error"], features=True, synthetic=False)
    parts = quality.missing_features(
        predictions=preds, rejections=rejected, versions=scope.versions, params=params
    )
    return _quality_check("missing_features", parts, preds, rejected)


def _run_out_of_range(scope: Scope, params: OutOfRangeParams) -> Check:
    rejected = scope.rejections()
    if scope.incremental:
        ws = scope.summary()
        parts = inc.out_of_range_parts(ws.summary, scope.grids(), params) + quality.refused_out_of_range(
            rejections=rejected, total_rows=sum(v.real_rows for v in ws.summary.values()), params=params
        )
        return _summary_check("out_of_range", parts, ws, rejected)
    preds = scope.predictions(["version", "flags", "error"], features=True, synthetic=False)
    parts = quality.out_of_range(
        predictions=preds, rejections=rejected, versions=scope.versions, params=params
    )
    return _quality_check("out_of_range", parts, preds, rejected)


def _summary_check(kind: str, parts: list[Part], ws: WindowSummary, rejected: LogWindow) -> Check:
    evidence = {**quality.rejections_evidence(rejected), **ws.evidence()}
    evidence["files_read"] = {**evidence["files_read"], "rejections": rejected.files_read}
    evidence["skipped_files"] += [{"kind": "rejections", **s} for s in rejected.skipped]
    return combine(kind, parts, evidence, empty_reason=_EMPTY)


def _run_validation(scope: Scope, params: ValidationFailuresParams) -> Check:
    # a load test's requests would dilute the share refused: real requests only
    served = scope.served(scope.since, scope.until, synthetic=False)
    rejected = scope.rejections()
    parts = quality.validation_failures(served=served, rejections=rejected, params=params)
    return _quality_check("validation_failures", parts, served, rejected)


def _quality_check(
    kind: str, parts: list[Part], served: LogWindow | logs.RowCount, rejected: LogWindow
) -> Check:
    """The verdict of a check on the inputs, with what the server rejected and the log files behind it."""
    evidence = {**quality.rejections_evidence(rejected), **logs_evidence(served, rejected)}
    return combine(kind, parts, evidence, empty_reason=_EMPTY)


def _run_volume(scope: Scope, params: VolumeParams) -> Check:
    since, until = scope.since, scope.until
    current = scope.served(since, until)
    history = scope.served(since - params.lookback, since)
    parts = quality.volume(current=current, history=history, since=since, until=until, params=params)
    return combine("volume", parts, logs_evidence(current, history), empty_reason=_EMPTY)


# --- performance and service health ------------------------------------------------------------------------


def _run_accuracy(scope: Scope, params: AccuracyParams) -> Check:
    until = scope.until
    start, end = performance.window_of(until=until, window=until - scope.since, offset=params.offset)
    if scope.incremental:
        found = label_accuracy.window_accuracy(
            scope.ctx.store, scope.model, start=start, end=end, until=until, params=params
        )
        bucket_us = max((to_us(end) - to_us(start)) // params.buckets, 1)
        parts = performance.accuracy_parts(found.counts, scope.versions, params, to_us(start), bucket_us)
        evidence = {
            "since": start.isoformat(), "until": end.isoformat(), "path": "incremental",
            "feedback_rows": found.feedback_rows, "labels_until": found.labels_until,
            "indexed_hours": found.indexed_hours, "raw_hours": found.raw_hours, **logs_evidence(*found.windows),
        }  # fmt: skip
        return combine("accuracy", parts, evidence, empty_reason=f"{_EMPTY} (0 predictions to judge)")
    # a synthetic request's label says nothing of the model: its rows are left out with their feedback
    preds = scope.predictions(["id", "version", "label", "error"], since=start, until=end, synthetic=False)
    # labels for these predictions may have arrived at any time since they were made, up to now
    feedback = read_window(
        scope.ctx.store, kind=logs.FEEDBACK, model=scope.model, since=start,
        until=until + dt.timedelta(microseconds=1), columns=["prediction_id", "label"],
    )  # fmt: skip
    parts = performance.accuracy(predictions=preds, feedback=feedback, versions=scope.versions, params=params)
    evidence = {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "feedback_rows": feedback.rows,
        **logs_evidence(preds, feedback),
    }
    return combine("accuracy", parts, evidence, empty_reason=f"{_EMPTY} (0 predictions to judge)")


def _run_error_rate(scope: Scope, params: ErrorRateParams) -> Check:
    if scope.incremental:
        ws = scope.summary()
        return combine(
            "error_rate", inc.error_rate_parts(ws.summary, params), ws.evidence(), empty_reason=_EMPTY
        )
    preds = scope.predictions(["version", "error"])
    parts = performance.error_rate(predictions=preds, params=params)
    return combine("error_rate", parts, logs_evidence(preds), empty_reason=_EMPTY)


def _run_latency(scope: Scope, params: LatencyParams) -> Check:
    if scope.incremental:
        ws = scope.summary()
        return combine("latency", inc.latency_parts(ws.summary, params), ws.evidence(), empty_reason=_EMPTY)
    preds = scope.predictions(["version", "latency_ms"])
    parts = performance.latency(predictions=preds, params=params)
    return combine("latency", parts, logs_evidence(preds), empty_reason=_EMPTY)


_RUNNERS: dict[str, Callable[..., Check]] = {
    "drift": _run_drift,
    "missing_features": _run_missing,
    "out_of_range": _run_out_of_range,
    "validation_failures": _run_validation,
    "volume": _run_volume,
    "accuracy": _run_accuracy,
    "error_rate": _run_error_rate,
    "latency": _run_latency,
    "freshness": sources.run_freshness,
    "pipeline": sources.run_pipeline,
}
assert tuple(_RUNNERS) == MONITOR_KINDS

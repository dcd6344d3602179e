"""The drift report of a window: from the summaries when the scope is incremental (and the parameters are
the summaries' bins), else exact from the log's answered rows (of real requests: a load test's synthetic rows
are no traffic to judge); and the exact reports of consecutive slices of
a window from one read of the log, each the report its own window would give."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mloncall.core.outcome import Outcome
from mloncall.monitoring import incremental as inc
from mloncall.monitoring.drift_report import DriftReport, VersionDrift, unmonitored, version_drift
from mloncall.monitoring.drift_stats import SortedSample
from mloncall.monitoring.reference import VersionInfo, reference_for
from mloncall.monitoring.schemas import DriftParams, evidence_params
from mloncall.monitoring.scope import Scope, logs_evidence
from mloncall.monitoring.stats import error_mask, float_column, string_counts
from mloncall.monitoring.verdict import Part, by_version, combine, version_label
from mloncall.stores.context import Context
from mloncall.stores.predlog import LogWindow, to_us, ts_us

EMPTY = "no requests logged in the window (0 rows)"
#: What the exact path reads of each row, besides the features.
COLUMNS = ["version", "label", "error"]


def evaluate(scope: Scope, params: DriftParams) -> DriftReport:
    """The drift report of the scope's window."""
    if scope.incremental and inc.supports_drift(params):
        ws = scope.summary()
        return _report(
            scope, params, inc.drift_versions(ws.summary, scope.grids(), params),
            sum(v.served for v in ws.summary.values()), ws.evidence(),
        )  # fmt: skip
    window = scope.predictions(COLUMNS, features=True, synthetic=False)
    return _exact(scope, params, _answered(window), {"path": "exact", **logs_evidence(window)})


def sliced(scope: Scope, params: DriftParams, slices: int) -> list[DriftReport]:
    """The report of each of `slices` consecutive equal parts of the scope's window, oldest first. Where the
    whole window is incremental, each part is read from the summaries the monitors read (`evaluate` on the
    part); else the window's rows are read once and each part judged exactly on its own rows (its evidence
    names the one read)."""
    span = scope.until - scope.since
    bounds = [(scope.since + span * i / slices, scope.since + span * (i + 1) / slices) for i in range(slices)]
    if scope.incremental and inc.supports_drift(params):
        shared = {"grids": scope.grids()}  # one reading of the versions' grids for every part
        return [
            evaluate(dataclasses.replace(scope, since=since, until=until, mode="incremental", cache=dict(shared)),
                     params)
            for since, until in bounds
        ]  # fmt: skip
    window = scope.predictions(["ts", *COLUMNS], features=True, synthetic=False)
    table = _answered(window)
    ts = None if table is None else ts_us(table)
    evidence = {"path": "exact", **logs_evidence(window)}
    reports = []
    for since, until in bounds:
        part = dataclasses.replace(scope, since=since, until=until, cache={})
        rows = table
        if table is not None and ts is not None:
            rows = table.filter(pa.array((ts >= to_us(part.since)) & (ts < to_us(part.until))))
        reports.append(_exact(part, params, rows, evidence))
    return reports


def _answered(window: LogWindow) -> pa.Table | None:
    """The rows the model answered: a failed request has no prediction to judge."""
    table = window.table
    if table is not None and window.has("error"):
        table = table.filter(pa.array(~error_mask(table)))
    return table


def _exact(
    scope: Scope, params: DriftParams, table: pa.Table | None, evidence: dict[str, Any]
) -> DriftReport:
    results = [
        _version_drift(scope.ctx, version, rows, scope.versions, params)
        for version, rows in by_version(table)
    ]
    return _report(scope, params, results, 0 if table is None else table.num_rows, evidence)


def _report(
    scope: Scope, params: DriftParams, results: list[VersionDrift], rows: int, evidence: dict[str, Any]
) -> DriftReport:
    parts = [Part(version_label(v.version), v.outcome, v.reason) for v in results]
    summary = combine("drift", parts, {}, empty_reason=EMPTY)
    return DriftReport(
        model=scope.model,
        since=scope.since,
        until=scope.until,
        outcome=summary.outcome,
        reason=summary.reason,
        versions=results,
        rows=rows,
        logs=evidence,
        params=evidence_params(params),
        deciding=list(summary.evidence.get("deciding", [])),
    )


def _version_drift(
    ctx: Context, version: int | None, rows: pa.Table, versions: dict[int, VersionInfo], params: DriftParams
) -> VersionDrift:
    settings = params.settings()
    n = rows.num_rows
    info = versions.get(version) if version is not None else None
    if info is None:
        what = (
            f"version {version} is not in the registry"
            if version is not None
            else "rows logged without a version"
        )
        return VersionDrift(version, Outcome.INCONCLUSIVE, f"{what}: no reference to compare with", 0, n, 0)
    ref = reference_for(store=ctx.store, info=info)
    if ref.error is not None:
        outcome = Outcome.INCONCLUSIVE if ref.missing else Outcome.ERROR
        return VersionDrift(version, outcome, ref.error, 0, n, 0, reference=ref.name or None)
    features = [f for f in info.features if params.features is None or f in params.features]
    empty = SortedSample(np.empty(0))
    result = version_drift(
        version=version,
        reference={f: ref.features.get(f, empty) for f in features},
        reference_rows=ref.rows,
        reference_classes=ref.class_counts,
        current={f: float_column(rows, f"f_{f}") for f in features if f"f_{f}" in rows.column_names},
        predicted=string_counts(rows.filter(pc.is_valid(rows.column("label"))), "label")
        if "label" in rows.column_names
        else None,
        n_rows=n,
        settings=settings,
        reference_name=ref.name,
    )
    return unmonitored(result, params.features, features, info.features)

"""Data quality monitors (runbook 6): missing features, out-of-range values, validation failures, volume.

Rates come from the prediction log (rows served) and, when the serving plane writes it, the rejections log
(requests refused by validation: ts, model, reason, field). Served rows are judged per version against that
version's signature; refused requests carry no version and are judged as their own part, over all requests.
Without a rejections log, nothing was refused as far as the monitors can tell, and the evidence says so.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mloncall.core.outcome import Outcome
from mloncall.monitoring.reference import VersionInfo
from mloncall.monitoring.schemas import (
    MissingFeaturesParams,
    OutOfRangeParams,
    ValidationFailuresParams,
    VolumeParams,
)
from mloncall.monitoring.stats import error_mask, float_column, string_counts, value_counts
from mloncall.monitoring.verdict import Part, by_version, version_label
from mloncall.stores.predlog import LogWindow, RowCount, to_us

OUT_OF_RANGE_FLAG = "out_of_range:"
MISSING_REASON = "missing_feature"
OUT_OF_RANGE_REASON = "out_of_range"
REFUSED = "refused requests"


def _rate(count: int, total: int) -> float:
    return count / total if total else 0.0


def judge_rate(label: str, what: str, count: int, total: int, max_rate: float, min_rows: int) -> Part:
    rate = _rate(count, total)
    evidence = {"count": count, "total": total, "rate": rate, "max_rate": max_rate, "min_rows": min_rows}
    if total < min_rows:
        return Part(
            label,
            Outcome.INCONCLUSIVE,
            f"insufficient data: {total} rows, at least {min_rows} needed",
            evidence,
        )
    if rate > max_rate:
        return Part(
            label, Outcome.FAILED, f"{what} rate {rate:.2%} > {max_rate:.2%} ({count} of {total})", evidence
        )
    return Part(
        label, Outcome.SUCCESSFUL, f"{what} rate {rate:.2%} <= {max_rate:.2%} ({count} of {total})", evidence
    )


def _features_of(info: VersionInfo | None, rows: pa.Table) -> tuple[str, ...]:
    if info is not None and info.features:
        return info.features
    return tuple(c[2:] for c in rows.column_names if c.startswith("f_"))


def _reasons(rejections: LogWindow) -> np.ndarray:
    t = rejections.table
    if t is None or "reason" not in t.column_names:
        return np.array([], dtype=object) if t is None else np.full(t.num_rows, None, dtype=object)
    return np.asarray(t.column("reason").to_numpy(zero_copy_only=False), dtype=object)


def rejections_evidence(rejections: LogWindow) -> dict[str, Any]:
    return {
        "rejections_log": "present" if rejections.files_read or rejections.skipped else "absent",
        "refused_requests": rejections.rows,
    }


def _served(predictions: LogWindow) -> list[tuple[int | None, pa.Table, int]]:
    """Per version, the rows of requests that were answered, and how many failed (they carry no features)."""
    out = []
    for version, rows in by_version(predictions.table):
        failed = error_mask(rows)
        n_failed = int(np.count_nonzero(failed))
        out.append((version, rows.filter(pa.array(~failed)) if n_failed else rows, n_failed))
    return out


def missing_features(
    *,
    predictions: LogWindow,
    rejections: LogWindow,
    versions: dict[int, VersionInfo],
    params: MissingFeaturesParams,
) -> list[Part]:
    """Per version, the share of served rows lacking a signature feature; and the share of all requests
    refused for a missing feature."""
    parts: list[Part] = []
    for version, rows, n_failed in _served(predictions):
        info = versions.get(version) if version is not None else None
        n = rows.num_rows
        any_missing = np.zeros(n, dtype=bool)
        per_feature: dict[str, int] = {}
        for feature in _features_of(info, rows):
            missing = ~np.isfinite(float_column(rows, f"f_{feature}"))
            per_feature[feature] = int(np.count_nonzero(missing))
            any_missing |= missing
        part = judge_rate(
            version_label(version), "missing-feature", int(np.count_nonzero(any_missing)), n,
            params.max_rate, params.min_rows,
        )  # fmt: skip
        part.evidence["per_feature"] = per_feature
        part.evidence["failed_requests_excluded"] = n_failed
        parts.append(part)
    return parts + refused_missing(rejections=rejections, total_rows=predictions.rows, params=params)


def refused_missing(*, rejections: LogWindow, total_rows: int, params: MissingFeaturesParams) -> list[Part]:
    """The share of all requests (`total_rows` logged plus those refused) refused for a missing feature."""
    if not rejections.rows:
        return []
    is_missing = _reasons(rejections) == MISSING_REASON
    return [_refused(rejections, total_rows, is_missing, "refused-for-missing-feature", params)]


def _refused(
    rejections: LogWindow,
    total_rows: int,
    refused: np.ndarray,
    check: str,
    params: MissingFeaturesParams | OutOfRangeParams,
) -> Part:
    """The share of all requests (`total_rows` logged plus those refused) refused for one reason (the
    rejections in `refused`), with the count per feature."""
    total = total_rows + rejections.rows
    part = judge_rate(REFUSED, check, int(np.count_nonzero(refused)), total, params.max_rate, params.min_rows)
    part.evidence["per_feature"] = string_counts(rejections.table, "field", where=refused)
    return part


def flagged_rows(rows: pa.Table) -> tuple[np.ndarray, dict[str, int]]:
    """Rows whose `flags` hold an out_of_range:<feature> flag, and the count per feature (vectorised)."""
    n = rows.num_rows
    mask = np.zeros(n, dtype=bool)
    if "flags" not in rows.column_names or n == 0:
        return mask, {}
    flags = rows.column("flags").combine_chunks()
    if not (pa.types.is_list(flags.type) or pa.types.is_large_list(flags.type)):
        return mask, {}
    flat = pc.list_flatten(flags)
    if len(flat) == 0:
        return mask, {}
    parents = np.asarray(pc.list_parent_indices(flags).to_numpy(zero_copy_only=False), dtype=np.int64)
    hit = pc.fill_null(pc.starts_with(flat, OUT_OF_RANGE_FLAG), False)
    hit_np = np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)
    mask[parents[hit_np]] = True
    names = pc.utf8_slice_codeunits(flat.filter(hit), len(OUT_OF_RANGE_FLAG))
    return mask, value_counts(names)


def out_of_range(
    *,
    predictions: LogWindow,
    rejections: LogWindow,
    versions: dict[int, VersionInfo],
    params: OutOfRangeParams,
) -> list[Part]:
    """Per version, the share of served rows with a value outside the training range: flagged by the serving
    plane (`flags`) or recomputed against the signature's min/max; and the share of requests refused for it."""
    parts: list[Part] = []
    for version, rows, n_failed in _served(predictions):
        info = versions.get(version) if version is not None else None
        n = rows.num_rows
        flagged, flagged_per_feature = flagged_rows(rows)
        recomputed = np.zeros(n, dtype=bool)
        recomputed_per_feature: dict[str, int] = {}
        ranges: dict[str, list[float]] = {}
        if info is not None:
            for feature in info.features:
                lo, hi = info.mins.get(feature), info.maxs.get(feature)
                if lo is None or hi is None:
                    continue
                x = float_column(rows, f"f_{feature}")
                with np.errstate(invalid="ignore"):
                    out = (x < lo) | (x > hi)
                recomputed_per_feature[feature] = int(np.count_nonzero(out))
                recomputed |= out
                ranges[feature] = [lo, hi]
        either = flagged | recomputed
        part = judge_rate(
            version_label(version), "out-of-range", int(np.count_nonzero(either)), n,
            params.max_rate, params.min_rows,
        )  # fmt: skip
        part.evidence.update(
            {
                "flagged_rows": int(np.count_nonzero(flagged)),
                "flagged_rate": _rate(int(np.count_nonzero(flagged)), n),
                "recomputed_rows": int(np.count_nonzero(recomputed)),
                "recomputed_rate": _rate(int(np.count_nonzero(recomputed)), n),
                "flagged_per_feature": flagged_per_feature,
                "recomputed_per_feature": recomputed_per_feature,
                "training_range": ranges,
                "failed_requests_excluded": n_failed,
            }
        )
        if info is None and version is not None:
            part.evidence["note"] = (
                f"version {version} is not in the registry: only the logged flags were counted"
            )
        parts.append(part)
    return parts + refused_out_of_range(rejections=rejections, total_rows=predictions.rows, params=params)


def refused_out_of_range(*, rejections: LogWindow, total_rows: int, params: OutOfRangeParams) -> list[Part]:
    """The share of all requests refused for a value outside the training range (none: no part)."""
    if not rejections.rows:
        return []
    is_oor = _reasons(rejections) == OUT_OF_RANGE_REASON
    if not is_oor.any():
        return []
    return [_refused(rejections, total_rows, is_oor, "refused-out-of-range", params)]


def validation_failures(
    *, served: RowCount, rejections: LogWindow, params: ValidationFailuresParams
) -> list[Part]:
    """The share of requests refused by input validation, over served rows plus refused requests."""
    total = served.rows + rejections.rows
    part = judge_rate(
        "all requests", "validation-failure", rejections.rows, total, params.max_rate, params.min_requests
    )
    part.evidence["served_rows"] = served.rows
    part.evidence["by_reason"] = string_counts(rejections.table, "reason")
    part.evidence["by_field"] = string_counts(rejections.table, "field")
    return [part]


def volume(
    *,
    current: RowCount,
    history: RowCount,
    since: dt.datetime,
    until: dt.datetime,
    params: VolumeParams,
) -> list[Part]:
    """Request rate in the window against the usual rate over the lookback before it ("a source gone quiet").

    The usual rate is measured over the history actually available (from the first logged row in the
    lookback up to the window), so a model live for three hours is compared with those three hours.
    """
    window_s = (until - since).total_seconds()
    rate = current.rows / window_s
    evidence: dict[str, Any] = {
        "rows": current.rows,
        "rate_per_s": rate,
        "history_rows": history.rows,
        "min_ratio": params.min_ratio,
        "max_ratio": params.max_ratio,
        "lookback_s": params.lookback.total_seconds(),
        "min_history_s": params.min_history.total_seconds(),
    }
    since_us = to_us(since)
    if history.first_us is None or history.rows == 0:
        return [
            Part(
                "all versions",
                Outcome.INCONCLUSIVE,
                "no history: nothing was logged in the lookback before the window",
                evidence,
            )
        ]
    span_s = (since_us - history.first_us) / 1e6
    evidence["history_s"] = span_s
    if span_s < max(params.min_history.total_seconds(), 1e-6):
        return [
            Part(
                "all versions", Outcome.INCONCLUSIVE,
                f"not enough history: {span_s:.0f}s logged before the window, at least "
                f"{params.min_history.total_seconds():.0f}s needed", evidence,
            )
        ]  # fmt: skip
    usual = history.rows / span_s
    ratio = rate / usual
    evidence.update({"usual_rate_per_s": usual, "ratio": ratio})
    summary = f"{rate:.3g}/s in the window vs usual {usual:.3g}/s (ratio {ratio:.2f})"
    if ratio < params.min_ratio:
        return [
            Part(
                "all versions", Outcome.FAILED, f"volume dropped: {summary} < {params.min_ratio:g}", evidence
            )
        ]
    if params.max_ratio is not None and ratio > params.max_ratio:
        return [
            Part("all versions", Outcome.FAILED, f"volume surged: {summary} > {params.max_ratio:g}", evidence)
        ]
    return [Part("all versions", Outcome.SUCCESSFUL, f"volume as usual: {summary}", evidence)]

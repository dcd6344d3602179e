"""Accuracy over a window from the late-label index (`mloncall.monitoring.labels`): per closed hour or minute
four small arrays (ts, version, predicted, truth) one index at a time; only the open minute is joined from the
log exactly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mloncall.monitoring.labels import (
    MINUTE_US,
    NO_VERSION,
    HourIndex,
    Span,
    hour_span,
    load_array,
    minute_span,
    read_meta,
    read_watermark,
)
from mloncall.monitoring.performance import AccuracyCounts, bucket_of, count_rows, labelled_rows
from mloncall.monitoring.schemas import AccuracyParams
from mloncall.stores import predlog as logs
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.predlog import LogWindow


def index_arrays(store: ArtifactStore, span: Span) -> Iterator[tuple[HourIndex, dict[str, np.ndarray]]]:
    """The index of one span, if built: its ts, version, predicted and truth arrays (memory-mapped)."""
    index = read_meta(store, span)
    if index is None:
        return
    base = span.base
    try:
        arrays = {
            name: load_array(store, f"{base}/{name}.npy") for name in ("ts", "version", "predicted", "truth")
        }
    except Exception:
        return
    yield index, arrays


@dataclass
class WindowAccuracy:
    counts: dict[int | None, AccuracyCounts]
    indexed_hours: int
    raw_hours: int
    labels_until: str | None
    feedback_rows: int
    windows: list[LogWindow]


def window_accuracy(
    store: ArtifactStore,
    model: str,
    *,
    start: dt.datetime,
    end: dt.datetime,
    until: dt.datetime,
    params: AccuracyParams,
) -> WindowAccuracy:
    """Accuracy counts of the predictions made in [start, end) with the labels known at `until`: closed hours
    and the open hour's closed minutes from their label indexes, one at a time; the rest (the open minute,
    spans without an index) joined from the log."""
    s_us, e_us = logs.to_us(start), logs.to_us(end)
    bucket_us = max((e_us - s_us) // params.buckets, 1)
    mark = read_watermark(store, model)
    out = WindowAccuracy({}, 0, 0, logs.from_us(mark.until_us).isoformat() if mark else None, 0, [])
    raw: list[tuple[int, int]] = []

    def counted(span: Span, lo: int, hi: int) -> bool:
        # an index holds the labels up to the watermark: only usable when judging up to then or later
        if mark is None or not span.end_us <= mark.until_us <= logs.to_us(until) + 1:
            return False
        index = read_meta(store, span)
        if index is None:
            return False
        rest = _count_minutes(store, out.counts, span, index, lo, hi, s_us, bucket_us, params)
        if rest is None:
            return False
        if rest:  # minutes at the window's or a bucket's edge: counted row by row
            for found, arrays in index_arrays(store, span):
                for r_lo, r_hi in rest:
                    _count_index(out.counts, found, arrays, r_lo, r_hi, s_us, bucket_us, params)
        return True

    for hour in range(s_us // logs.HOUR_US, (e_us - 1) // logs.HOUR_US + 1):
        lo, hi = max(s_us, hour * logs.HOUR_US), min(e_us, (hour + 1) * logs.HOUR_US)
        if counted(hour_span(model, hour), lo, hi):
            out.indexed_hours += 1
            continue
        out.raw_hours += 1
        for minute in range(lo // MINUTE_US, (hi - 1) // MINUTE_US + 1):
            m_lo, m_hi = max(lo, minute * MINUTE_US), min(hi, (minute + 1) * MINUTE_US)
            if not counted(minute_span(model, minute), m_lo, m_hi):
                logs.add_range(raw, m_lo, m_hi)
    for lo, hi in raw:
        _count_raw(store, model, out, lo, hi, until, s_us, bucket_us, params)
    return out


def _count_minutes(
    store: ArtifactStore, counts: dict[int | None, AccuracyCounts], span: Span, index: HourIndex,
    lo: int, hi: int, since_us: int, bucket_us: int, params: AccuracyParams,
) -> list[tuple[int, int]] | None:  # fmt: skip
    """Add the span's whole minutes in [lo, hi) that lie in one bucket from its per-minute counts; returns the
    ranges left to count row by row (None: the counts are missing, count everything that way)."""
    try:
        confusion = np.asarray(load_array(store, f"{span.base}/counts.npy"))
        versions = index.meta["versions"]
        classes = index.classes[: index.meta["count_classes"]]
    except Exception:
        return None
    rest: list[tuple[int, int]] = []
    for m in range(confusion.shape[0]):
        m_lo = span.start_us + m * MINUTE_US
        m_hi = min(m_lo + MINUTE_US, span.end_us)
        a, b = max(lo, m_lo), min(hi, m_hi)
        if a >= b:
            continue
        first = min((m_lo - since_us) // bucket_us, params.buckets - 1)
        last = min((m_hi - 1 - since_us) // bucket_us, params.buckets - 1)
        if a == m_lo and b == m_hi and first == last:
            for j, v in enumerate(versions):
                key = None if v == NO_VERSION else int(v)
                counts.setdefault(key, AccuracyCounts(params.buckets)).add_confusion(
                    int(first), confusion[m, j], classes
                )
        else:
            logs.add_range(rest, a, b)
    return rest


def _count_index(
    counts: dict[int | None, AccuracyCounts], index: HourIndex, arrays: dict[str, np.ndarray],
    lo: int, hi: int, since_us: int, bucket_us: int, params: AccuracyParams,
) -> None:  # fmt: skip
    ts = np.asarray(arrays["ts"])
    inside = (ts >= lo) & (ts < hi)
    if not inside.any():
        return
    ts = ts[inside]
    version = np.asarray(arrays["version"])[inside]
    predicted = np.asarray(arrays["predicted"])[inside]
    truth = np.asarray(arrays["truth"])[inside]
    bucket = bucket_of(ts, since_us, bucket_us, params.buckets)
    values = [int(version[0])] if version.min() == version.max() else np.unique(version).tolist()
    for v in values:
        rows = version == v
        key = None if v == NO_VERSION else int(v)
        into = counts.setdefault(key, AccuracyCounts(params.buckets))
        into.add(bucket[rows], predicted[rows], truth[rows], index.classes)


def _count_raw(
    store: ArtifactStore, model: str, out: WindowAccuracy, lo: int, hi: int, until: dt.datetime,
    since_us: int, bucket_us: int, params: AccuracyParams,
) -> None:  # fmt: skip
    preds = logs.read_window(
        store, kind=logs.PREDICTIONS, model=model, since=logs.from_us(lo), until=logs.from_us(hi),
        columns=["id", "version", "label", "error"], synthetic=False,
    )  # fmt: skip
    out.windows.append(preds)
    if preds.table is None or preds.rows == 0:
        return
    feedback = logs.read_window(
        store, kind=logs.FEEDBACK, model=model, since=logs.from_us(lo),
        until=until + dt.timedelta(microseconds=1), columns=["prediction_id", "label"],
    )  # fmt: skip
    out.windows.append(feedback)
    out.feedback_rows += feedback.rows
    count_rows(out.counts, labelled_rows(preds.table, feedback.table), params, since_us, bucket_us)

"""What each version served in a window, read from the summaries: the one path canary analysis, acceptance
and the dashboard's charts read, over the same summaries and label indexes the monitors merge.

**Requests** (rows, server errors, latency sketch, predicted classes, shadow-scored and disagreeing requests,
of all and of the routed requests) come from `incremental.window_summary`: a closed minute (`SUMMARY_GRACE`
after its end) or hour from its stored summary; the window's ragged edges, the open minute and a closed
minute whose summary is not written yet are folded from the log's rows through the same builder
(`summary.summarise`). Each minute is read one way, so nothing is counted twice, and a window of a few
seconds is exact.

**Labels** (labelled and correct answers, and on the requests the stable version shadow-scored, the stable
version's correct answers too) come from the label indexes (`monitoring.labels`) the same way: an indexed hour
or minute from its index, which holds the labels up to the model's watermark, with the feedback logged since
then (at most a background pass plus `SUMMARY_GRACE` of it) applied on the fly to a copy by the index's own
`apply_labels`; the rest from the log's rows through the index's own row step (`labels.rows_arrays`), joined
with the feedback logged until `now`. Either way every label logged until `now` counts. Only routed requests count
here: explicit `/versions/{v}` calls (smoke tests) are not the traffic a rollout compares.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from mloncall.monitoring import labels
from mloncall.monitoring.incremental import MINUTE_US, window_summary
from mloncall.monitoring.reference import VersionInfo
from mloncall.monitoring.stats import Truth, encode
from mloncall.monitoring.summary import VersionSummary, grids_for
from mloncall.stores import predlog as logs
from mloncall.stores.artifacts import ArtifactStore


@dataclass
class LabelCounts:
    """A version's routed, answered requests with a label: right ones, and those the stable version also
    scored (paired), with how many of them each version answered right."""

    labelled: int = 0
    correct: int = 0
    paired: int = 0
    paired_correct: int = 0
    paired_baseline_correct: int = 0

    def merge(self, other: LabelCounts) -> None:
        for name in ("labelled", "correct", "paired", "paired_correct", "paired_baseline_correct"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class VersionServed:
    """One version's requests in a window (`summary.routed`: the routed ones) and its labelled answers."""

    summary: VersionSummary = field(default_factory=VersionSummary)
    labels: LabelCounts = field(default_factory=LabelCounts)


@dataclass
class ServedWindow:
    """Every version that served in [since, until), and what the figures were read from."""

    since: dt.datetime
    until: dt.datetime
    versions: dict[int | None, VersionServed]
    evidence: dict[str, Any]

    def of(self, version: int | None) -> VersionServed | None:
        return self.versions.get(version)

    @property
    def rows(self) -> int:
        return sum(v.summary.rows for v in self.versions.values())

    def then(self, later: ServedWindow) -> ServedWindow:
        """This window followed by the one that starts where it ends, as one window (each row counted once:
        the two never overlap)."""
        assert self.until == later.since, "windows must meet"
        out: dict[int | None, VersionServed] = {}
        for part in (self, later):
            for v, side in part.versions.items():
                mine = out.setdefault(v, VersionServed())
                mine.summary.merge(side.summary)
                mine.labels.merge(side.labels)
        return ServedWindow(self.since, later.until, out, {"parts": [self.evidence, later.evidence]})


def served_window(
    store: ArtifactStore,
    model: str,
    since: dt.datetime,
    until: dt.datetime,
    *,
    now: dt.datetime,
    versions: dict[int, VersionInfo],
    with_labels: bool = True,
) -> ServedWindow:
    """Per version, the requests of [since, until) from the summaries and (`with_labels`) their labelled
    answers from the label indexes, as of `now` (see the module docstring)."""
    ws = window_summary(store, model, since, until, grids_for(store, versions), now=now)
    out: dict[int | None, VersionServed] = {v: VersionServed(summary=s) for v, s in ws.summary.items()}
    evidence: dict[str, Any] = ws.evidence()
    if with_labels:
        counts, evidence["labels"] = window_labels(store, model, since, until, now=now)
        for v, c in counts.items():
            out.setdefault(v, VersionServed()).labels = c
    return ServedWindow(since, until, out, evidence)


# --- labels ------------------------------------------------------------------------------------------------


def window_labels(
    store: ArtifactStore, model: str, since: dt.datetime, until: dt.datetime, *, now: dt.datetime
) -> tuple[dict[int | None, LabelCounts], dict[str, Any]]:
    """Label counts per version of the routed predictions made in [since, until), with every label logged
    until `now`: indexed hours and minutes from their index plus the feedback logged since the watermark
    (applied to a copy, never written), the rest from the log."""
    s_us, u_us = logs.to_us(since), logs.to_us(until)
    mark = labels.read_watermark(store, model)
    usable = mark is not None and mark.until_us <= logs.to_us(now) + 1
    spans: list[tuple[labels.Span, int, int]] = []  # indexed
    raw: list[tuple[int, int]] = []
    for hour in range(s_us // logs.HOUR_US, (u_us - 1) // logs.HOUR_US + 1) if u_us > s_us else ():
        lo, hi = max(s_us, hour * logs.HOUR_US), min(u_us, (hour + 1) * logs.HOUR_US)
        span = labels.hour_span(model, hour)
        if usable and _indexed(store, span, mark):
            spans.append((span, lo, hi))
            continue
        for minute in range(lo // MINUTE_US, (hi - 1) // MINUTE_US + 1):
            m_lo, m_hi = max(lo, minute * MINUTE_US), min(hi, (minute + 1) * MINUTE_US)
            span = labels.minute_span(model, minute)
            if usable and _indexed(store, span, mark):
                spans.append((span, m_lo, m_hi))
            else:
                logs.add_range(raw, m_lo, m_hi)
    # one read of the feedback both need: since the watermark (for the indexes) and since the first raw row;
    # raw ranges where no prediction was logged (quiet minutes have no index) have nothing to label
    logged = any(_logged(store, model, lo, hi) for lo, hi in raw)
    starts = ([mark.until_us] if spans and mark is not None else []) + [lo for lo, _ in raw[:1] if logged]
    feedback = _feedback(store, model, min(starts), now) if starts else None
    counts: dict[int | None, LabelCounts] = {}
    recent = labels.feedback_of(feedback) if spans else None
    failed = [(lo, hi) for span, lo, hi in spans if not _from_index(store, span, lo, hi, recent, counts)]
    truth = Truth(feedback)
    for lo, hi in raw:
        _from_log(store, model, lo, hi, truth, counts)
    if failed:  # an index that could not be read after all: its rows from the log, with all their labels
        truth = Truth(_feedback(store, model, failed[0][0], now))
        for lo, hi in failed:
            _from_log(store, model, lo, hi, truth, counts)
    evidence = {
        "labels_until": now.isoformat(), "indexes_read": len(spans) - len(failed),
        "raw_ranges": len(raw) + len(failed), "feedback_rows": 0 if feedback is None else feedback.num_rows,
    }  # fmt: skip
    return counts, evidence


def _logged(store: ArtifactStore, model: str, lo: int, hi: int) -> bool:
    """Whether any prediction was logged in [lo, hi), from the files' footers."""
    found = logs.count_rows(
        store, kind=logs.PREDICTIONS, model=model, since=logs.from_us(lo), until=logs.from_us(hi)
    )
    return found.rows > 0 or bool(found.skipped)


def _feedback(store: ArtifactStore, model: str, since_us: int, now: dt.datetime) -> pa.Table | None:
    return logs.read_window(
        store, kind=logs.FEEDBACK, model=model, since=logs.from_us(since_us),
        until=now + dt.timedelta(microseconds=1), columns=["prediction_id", "label"],
    ).table  # fmt: skip


def _indexed(store: ArtifactStore, span: labels.Span, mark: labels.Watermark | None) -> bool:
    """The span has an index with its labels applied up to its end, built by a release whose indexes hold
    shadow classes and routes."""
    if mark is None or span.end_us > mark.until_us or labels.read_meta(store, span) is None:
        return False
    return store.exists(f"{span.base}/routed.npy")


def _from_index(
    store: ArtifactStore,
    span: labels.Span,
    lo: int,
    hi: int,
    recent: labels.Feedback | None,
    counts: dict[int | None, LabelCounts],
) -> bool:
    """Count [lo, hi) of one span from its index, with the feedback logged since the watermark (and maybe some
    before it: applying a label again changes nothing) applied to a copy; False when the index is unreadable
    or was built before indexes held shadow classes and routes."""
    index = labels.read_meta(store, span)
    if index is None:
        return False
    try:
        arrays = {
            n: np.asarray(labels.load_array(store, f"{span.base}/{n}.npy"))
            for n in ("ts", "version", "predicted", "shadow", "routed", "truth")
        }
        if recent is not None and recent.ids.size:
            arrays["truth"] = np.array(arrays["truth"])
            hashes, ids = (labels.load_array(store, f"{span.base}/{n}.npy") for n in ("hash", "ids"))
            labels.apply_labels(hashes, ids, arrays["truth"], recent, dict(index.meta))
    except Exception:
        return False
    keep = arrays["routed"].astype(bool)
    if lo > span.start_us or hi < span.end_us:
        ts = arrays["ts"]
        keep &= (ts >= lo) & (ts < hi)
    _count(counts, arrays, keep)
    return True


def _from_log(
    store: ArtifactStore, model: str, lo: int, hi: int, truth: Truth, counts: dict[int | None, LabelCounts]
) -> None:
    """Count [lo, hi) from the log, a file at a time, joined with the feedback logged until now."""
    classes: dict[str, int] = {}
    for table in logs.iter_window(
        store, kind=logs.PREDICTIONS, model=model, since=logs.from_us(lo), until=logs.from_us(hi),
        columns=labels.INDEX_COLUMNS,
    ):  # fmt: skip
        rows = labels.rows_arrays(table, classes)
        if rows is None:
            continue
        ids = pa.array(np.char.decode(rows["ids"], "utf-8"), pa.string())
        rows["truth"] = encode(truth.of(ids), classes)
        _count(counts, rows, rows["routed"])


def _count(
    counts: dict[int | None, LabelCounts], rows: dict[str, np.ndarray], keep: np.ndarray | None = None
) -> None:
    """Add the kept rows (version, predicted, shadow and true class codes) to their versions' counts in one
    bincount: each row's version and which of the four conditions it meets, as one small code."""
    version = rows["version"].astype(np.int64)
    if version.size == 0:
        return
    low = int(version.min())
    k = int(version.max()) - low + 1
    predicted, shadow, truth = rows["predicted"], rows["shadow"], rows["truth"]
    has = truth >= 0
    pair = has & (shadow >= 0)
    code = ((version - low) * 16).astype(np.int32)
    code |= has
    code |= (has & (predicted == truth)).view(np.uint8) << 1
    code |= pair.view(np.uint8) << 2
    code |= (pair & (shadow == truth)).view(np.uint8) << 3
    if keep is not None:
        code[~keep] = k * 16
    table = np.bincount(code, minlength=k * 16 + 1)[: k * 16].reshape(k, 16)
    bits = np.arange(16)
    for i in np.flatnonzero(table.sum(axis=1)).tolist():
        row = table[i]

        def total(mask: int, row: np.ndarray = row) -> int:
            return int(row[(bits & mask) == mask].sum())

        v = i + low
        counts.setdefault(None if v == labels.NO_VERSION else v, LabelCounts()).merge(
            LabelCounts(total(1), total(2), total(4), total(4 | 2), total(8))
        )


# --- charts ------------------------------------------------------------------------------------------------

#: What a chart shows, per bucket of a version's requests (accuracy: of its routed, labelled answers).
SERIES_METRICS = ("requests", "errors", "error_rate", "p50_ms", "p95_ms", "p99_ms", "accuracy")
#: A chart has at most this many points.
MAX_POINTS = 1440


@dataclass(frozen=True)
class Point:
    """One bucket of a chart: [start, end), its value (None without data) and the rows behind it."""

    start: dt.datetime
    end: dt.datetime
    value: float | None
    n: int
    #: the bucket still open: it ends at the chart's end, before its full length
    partial: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(), "end": self.end.isoformat(), "value": self.value, "n": self.n,
            "partial": self.partial,
        }  # fmt: skip


def chart(
    store: ArtifactStore,
    model: str,
    version: int | None,
    metric: str,
    *,
    since: dt.datetime,
    until: dt.datetime,
    step: dt.timedelta,
    versions: dict[int, VersionInfo],
) -> list[Point]:
    """The points of one metric over [since, until) in buckets of `step` (`charts`)."""
    found = charts(store, model, version, (metric,), since=since, until=until, step=step, versions=versions)
    return found[metric]


def charts(
    store: ArtifactStore,
    model: str,
    version: int | None,
    metrics: Sequence[str],
    *,
    since: dt.datetime,
    until: dt.datetime,
    step: dt.timedelta,
    versions: dict[int, VersionInfo],
) -> dict[str, list[Point]]:
    """The points of each metric over [since, until) in buckets of `step`, each bucket one `served_window` as
    of `until` that every metric reads. Buckets are aligned to multiples of `step` from the epoch (a chart
    redrawn a minute later reads the same closed summaries; the first may start before `since`); the last
    ends at `until`, partial. Latency percentiles are within LATENCY_ACCURACY (DDSketch) of the value of their
    rank; the rest is exact."""
    step_us, until_us = max(int(step / dt.timedelta(microseconds=1)), 1), logs.to_us(until)
    points: dict[str, list[Point]] = {metric: [] for metric in metrics}
    for lo in range((logs.to_us(since) // step_us) * step_us, until_us, step_us):
        hi = min(lo + step_us, until_us)
        found = served_window(
            store, model, logs.from_us(lo), logs.from_us(hi), now=until, versions=versions,
            with_labels="accuracy" in metrics,
        )  # fmt: skip
        for metric in metrics:
            value, n = _value(metric, found, version)
            points[metric].append(Point(logs.from_us(lo), logs.from_us(hi), value, n, hi < lo + step_us))
    return points


def value_of(metric: str, found: ServedWindow, version: int | None = None) -> float | None:
    """One metric of `SERIES_METRICS` over a window already read (one version, or every version with None):
    several figures of one window from one read."""
    return _value(metric, found, version)[0]


def _value(metric: str, found: ServedWindow, version: int | None) -> tuple[float | None, int]:
    sides = list(found.versions.values()) if version is None else [found.of(version) or VersionServed()]
    s, got = VersionSummary(), LabelCounts()
    for side in sides:
        # Only what a chart reads: versions' feature sketches have each their reference's grid and do not merge.
        s.rows += side.summary.rows
        s.errors += side.summary.errors
        s.latency.merge(side.summary.latency)
        got.merge(side.labels)
    labelled, correct = got.labelled, got.correct
    if metric == "requests":
        return float(s.rows), s.rows
    if metric == "errors":
        return float(s.errors), s.rows
    if metric == "error_rate":
        return (s.errors / s.rows if s.rows else None), s.rows
    if metric == "accuracy":
        return (correct / labelled if labelled else None), labelled
    q = int(metric.removeprefix("p").removesuffix("_ms"))
    n = s.latency.n
    return (s.latency.quantiles((q,))[q] if n else None), n

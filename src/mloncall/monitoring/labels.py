"""Late labels: accuracy counts per prediction interval, updated when feedback arrives after it was summarised.

For each closed hour of predictions (and each closed minute of the hour still open, under `.../minute=MM/`,
replaced by the hour's index when it closes) the background pass writes a label index under
`labels/model=<m>/date=YYYY-MM-DD/hour=HH/`: the answered predictions sorted by a 64-bit hash of their id
(`hash.npy`; `ids.npy` holds the ids, to confirm a match), and in the same order their `ts` (microseconds),
version, predicted class, true class (`truth.npy`, -1 while unlabelled), the class the stable version's
shadow scoring gave (`shadow.npy`, -1 when none) and whether the router sent it (`routed.npy`), with the class
names in `meta.json`. Building it joins the hour with
the feedback already applied; afterwards each pass applies the feedback logged since the model's watermark
(`labels/model=<m>/watermark.json`): every label is looked up by id (a binary search of its hash in each
memory-mapped index of the lookback, an hour of feedback at a time) and its prediction's true class set, the newest label winning. A label whose id is in
no index is not lost: it is counted as unmatched, and when its prediction's hour closes, the index built then
joins it. Ids never served stay unmatched (`unmatched_labels` in the watermark and the evidence).

Accuracy over a window (`mloncall.monitoring.label_accuracy`) then reads, per closed hour or minute, four small arrays (ts, version, predicted,
truth) one index at a time; only the open minute is joined from the log exactly. Labels count up to the watermark (at most a pass
plus `SUMMARY_GRACE` behind), which the evidence states as `labels_until`. Each step is idempotent: setting a
true class twice gives the same state, and the watermark moves only after every index was updated.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mloncall.monitoring.stats import encode, error_mask, routed_mask
from mloncall.stores import predlog as logs
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.predlog import compact as compaction

LABELS = "labels"
ARRAYS = ("hash", "ids", "ts", "version", "predicted", "truth", "shadow", "routed")
_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)
NO_VERSION = -1


def folder(model: str, hour: int) -> str:
    return f"{LABELS}/model={model}/{logs.partition(hour)}"


MINUTE_US = 60_000_000


@dataclass(frozen=True)
class Span:
    """What one label index covers: a closed hour, or a closed minute of the hour still open."""

    start_us: int
    end_us: int
    base: str


def hour_span(model: str, hour: int) -> Span:
    return Span(hour * logs.HOUR_US, (hour + 1) * logs.HOUR_US, folder(model, hour))


def minute_span(model: str, minute: int) -> Span:
    return Span(
        minute * MINUTE_US,
        (minute + 1) * MINUTE_US,
        f"{folder(model, minute // 60)}/minute={minute % 60:02d}",
    )


def _watermark_key(model: str) -> str:
    return f"{LABELS}/model={model}/watermark.json"


@dataclass
class Watermark:
    until_us: int
    unmatched: int = 0
    applied: int = 0


def read_watermark(store: ArtifactStore, model: str) -> Watermark | None:
    try:
        doc = json.loads(store.get_bytes(_watermark_key(model)))
        return Watermark(int(doc["until_us"]), int(doc.get("unmatched", 0)), int(doc.get("applied", 0)))
    except Exception:
        return None


def _save(store: ArtifactStore, key: str, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    store.put_bytes(key, buf.getvalue())


def load_array(store: ArtifactStore, key: str, *, writable: bool = False) -> np.ndarray:
    """An index array: memory-mapped from a local store, read whole from a remote one."""
    if store.is_local:
        path = posixpath.join(store.base, key)
        return np.load(path, mmap_mode="r+" if writable else "r", allow_pickle=False)
    data: np.ndarray = np.load(io.BytesIO(store.get_bytes(key)), allow_pickle=False)
    return data


@dataclass
class HourIndex:
    hour: int
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])


def read_meta(store: ArtifactStore, span: Span) -> HourIndex | None:
    try:
        return HourIndex(span.start_us // logs.HOUR_US, json.loads(store.get_bytes(f"{span.base}/meta.json")))
    except Exception:
        return None


# --- building and applying ---------------------------------------------------------------------------------


#: The prediction-log columns an index is built from.
INDEX_COLUMNS = ["id", "version", "label", "error", "route", "shadow_label", logs.SYNTHETIC]
#: Per answered prediction, in one order: what an index stores besides the hash and the true class.
ROW_ARRAYS = ("ids", "ts", "version", "predicted", "shadow", "routed")


def rows_arrays(table: pa.Table, classes: dict[str, int]) -> dict[str, np.ndarray] | None:
    """The answered predictions of one batch of log rows as index arrays: id (bytes), ts (us), version
    (NO_VERSION when none), predicted and shadow class codes into `classes` (-1: none) and whether the router
    sent the request (route stable or canary; every row of a log without routes). None without ids. The rows
    of synthetic requests (a load test's) are left out: their labels say nothing of the model.

    The one row-to-index step: label indexes are built with it, and the rows of a span without an index are
    counted through it (`monitoring.served`)."""
    if "id" not in table.column_names:
        return None
    dropped = error_mask(table) | logs.synthetic_mask(table)
    if dropped.any():
        table = table.filter(pa.array(~dropped))
    n = table.num_rows

    def column(name: str, kind: pa.DataType) -> pa.ChunkedArray | pa.Array:
        return table.column(name) if name in table.column_names else pa.nulls(n, kind)

    version = pc.fill_null(pc.cast(column("version", pa.int32()), pa.int32()), NO_VERSION)
    return {
        "ids": np.asarray(pc.cast(table.column("id"), pa.string()).to_numpy(zero_copy_only=False)).astype(
            "S"
        ),
        "ts": logs.ts_us(table),
        "version": np.asarray(version.to_numpy(zero_copy_only=False)).astype(np.int32),
        "predicted": _codes(column("label", pa.string()), classes),
        "shadow": _codes(column("shadow_label", pa.string()), classes),
        "routed": routed_mask(table),
    }


def concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Batches of `rows_arrays` as one (ids padded to one width)."""
    width = max([p["ids"].dtype.itemsize for p in parts] + [1])
    out = {
        "ids": np.concatenate([p["ids"].astype(f"S{width}") for p in parts]) if parts else np.empty(0, "S1")
    }
    empty = {"ts": np.int64, "version": np.int32, "predicted": np.int16, "shadow": np.int16, "routed": bool}
    for name, kind in empty.items():
        out[name] = np.concatenate([p[name] for p in parts]).astype(kind) if parts else np.empty(0, kind)
    return out


def build_index(store: ArtifactStore, model: str, span: Span, *, watermark_us: int) -> HourIndex:
    """Index one closed span's answered predictions and join the feedback logged before the watermark."""
    since, until = logs.from_us(span.start_us), logs.from_us(span.end_us)
    parts: list[dict[str, np.ndarray]] = []
    classes: dict[str, int] = {}
    for table in logs.iter_window(
        store, kind=logs.PREDICTIONS, model=model, since=since, until=until, columns=INDEX_COLUMNS,
    ):  # fmt: skip
        found = rows_arrays(table, classes)
        if found is not None:
            parts.append(found)
    rows = concat_rows(parts)
    hashes = id_hash(rows["ids"])
    order = np.argsort(hashes, kind="stable")
    arrays = {"hash": hashes[order], **{name: rows[name][order] for name in ROW_ARRAYS}}
    arrays["truth"] = np.full(order.size, -1, np.int16)
    meta = {
        "start_us": span.start_us,
        "end_us": span.end_us,
        "rows": int(order.size),
        "classes": _ordered(classes),
        "built_until_us": watermark_us,
    }
    # the feedback applied to older hours before this one was indexed, an hour of feedback at a time
    for feedback, _ in _feedback_chunks(store, model, span.start_us, watermark_us):
        apply_labels(arrays["hash"], arrays["ids"], arrays["truth"], feedback, meta)
    for name in ARRAYS:
        _save(store, f"{span.base}/{name}.npy", arrays[name])
    _save(store, f"{span.base}/counts.npy", _confusion(span, arrays, meta))
    # written last: the index is whole
    store.put_bytes(f"{span.base}/meta.json", json.dumps(meta).encode())
    return HourIndex(span.start_us // logs.HOUR_US, meta)


def _confusion(span: Span, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> np.ndarray:
    """Counts per (minute of the span, version, true class + 1, predicted class + 1): what accuracy over whole
    minutes needs, a few kilobytes per hour; meta records the versions and classes they are over."""
    ts = np.asarray(arrays["ts"])
    version = np.asarray(arrays["version"]).astype(np.int64)
    versions = np.unique(version).tolist() if version.size else []
    k = len(meta["classes"]) + 1
    minutes = max(int((span.end_us - span.start_us) // MINUTE_US), 1)
    width = max(len(versions), 1)
    v_index = np.searchsorted(np.asarray(versions, dtype=np.int64), version) if versions else version
    cell = (
        np.clip((ts - span.start_us) // MINUTE_US, 0, minutes - 1) * (width * k * k)
        + v_index * (k * k)
        + (np.asarray(arrays["truth"]).astype(np.int64) + 1) * k
        + (np.asarray(arrays["predicted"]).astype(np.int64) + 1)
    )
    meta["versions"] = [int(v) for v in versions]
    meta["count_classes"] = k - 1
    counts = np.bincount(cell, minlength=minutes * width * k * k)
    return counts.reshape(minutes, width, k, k)


def _codes(labels: pa.ChunkedArray | pa.Array, classes: dict[str, int]) -> np.ndarray:
    """Each label's code in `classes` (extended with new names), -1 for nulls."""
    return encode(labels, classes)


def _ordered(classes: dict[str, int]) -> list[str]:
    return [c for c, _ in sorted(classes.items(), key=lambda kv: kv[1])]


@dataclass
class Feedback:
    ids: np.ndarray  # fixed-width bytes, oldest first (the newest label of an id comes last)
    codes: np.ndarray  # the label of each, as an index into `names`
    names: list[str]
    hashes: np.ndarray

    def subset(self, keep: np.ndarray) -> Feedback:
        return Feedback(self.ids[keep], self.codes[keep], self.names, self.hashes[keep])


def _feedback_chunks(
    store: ArtifactStore, model: str, since_us: int, until_us: int
) -> Iterator[tuple[Feedback, int]]:
    """The feedback logged in [since, until) and each chunk's end, an hour at a time (memory holds one hour's
    labels)."""
    lo = since_us
    while lo < until_us:
        hi = min(until_us, (lo // logs.HOUR_US + 1) * logs.HOUR_US)
        found = read_feedback(store, model, logs.from_us(lo), logs.from_us(hi))
        if found is not None:
            yield found, hi
        lo = hi


def read_feedback(
    store: ArtifactStore, model: str, since: dt.datetime, until: dt.datetime
) -> Feedback | None:
    """Feedback logged in [since, until), oldest first (so the newest label of an id is applied last)."""
    window = logs.read_window(
        store,
        kind=logs.FEEDBACK,
        model=model,
        since=since,
        until=until,
        columns=["prediction_id", "label"],
    )
    return feedback_of(window.table)


def feedback_of(t: pa.Table | None) -> Feedback | None:
    """Feedback rows (prediction_id, label, ts) as `apply_labels` takes them; None when there are none."""
    if t is None or t.num_rows == 0 or "prediction_id" not in t.column_names:
        return None
    t = t.filter(pc.is_valid(t.column("label")))
    t = t.take(pc.sort_indices(t, sort_keys=[("ts", "ascending")]))
    ids = np.asarray(pc.cast(t.column("prediction_id"), pa.string()).to_numpy(zero_copy_only=False)).astype(
        "S"
    )
    names: dict[str, int] = {}
    codes = encode(t.column("label"), names)
    hashes = id_hash(ids)
    # by hash for fast searches; stable, so the labels of one id stay oldest first
    order = np.argsort(hashes, kind="stable")
    return Feedback(ids[order], codes[order], _ordered(names), hashes[order])


def id_hash(ids: np.ndarray) -> np.ndarray:
    """FNV-1a (64 bits) of each id's bytes, trailing padding ignored, so any fixed width hashes alike."""
    ids = np.ascontiguousarray(ids)
    width = ids.dtype.itemsize
    data = ids.view(np.uint8).reshape(ids.size, width)
    h = np.full(ids.size, _FNV_OFFSET, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(width):
            b = data[:, j]
            h = np.where(b != 0, (h ^ b.astype(np.uint64)) * _FNV_PRIME, h)
    return h


def apply_labels(
    index_hash: np.ndarray, index_ids: np.ndarray, truth: np.ndarray, feedback: Feedback, meta: dict[str, Any]
) -> np.ndarray:
    """Set the true class of every indexed id that has feedback; returns which feedback rows matched.

    Ids are found by their hash (a binary search in the sorted hashes), then compared whole, so a match is
    exact; two ids of one hour sharing a 64-bit hash (odds about 1e-7 per hour at 1,000 predictions/s) would
    leave the second one's labels unmatched."""
    if index_ids.size == 0 or feedback.ids.size == 0:
        return np.zeros(feedback.ids.size, dtype=bool)
    width = index_ids.dtype.itemsize
    pos = np.minimum(np.searchsorted(index_hash, feedback.hashes), index_hash.size - 1)
    hit = np.asarray(index_hash[pos]) == feedback.hashes
    if hit.any():
        rows = np.flatnonzero(hit)
        fits = np.char.str_len(feedback.ids[rows]) <= width
        same = fits & (np.asarray(index_ids[pos[rows]]) == feedback.ids[rows].astype(f"S{width}"))
        hit[rows[~same]] = False
    if not hit.any():
        return hit
    classes: dict[str, int] = {c: i for i, c in enumerate(meta["classes"])}
    to_index = np.array([classes.setdefault(name, len(classes)) for name in feedback.names], np.int16)
    meta["classes"] = _ordered(classes)
    rows = np.flatnonzero(hit)
    codes = to_index[feedback.codes[rows]]
    # the newest label of an id wins: keep the last occurrence of each position
    where = pos[rows]
    _, last = np.unique(where[::-1], return_index=True)
    keep = rows.size - 1 - last
    truth[where[keep]] = codes[keep]
    return hit


def apply_feedback(
    store: ArtifactStore, model: str, *, since_us: int, until_us: int, spans: list[Span]
) -> Watermark:
    """Apply the feedback logged in [since, until) to every index; then move the watermark."""
    previous = read_watermark(store, model)
    mark = Watermark(until_us, previous.unmatched if previous else 0, previous.applied if previous else 0)
    for feedback, chunk_end in _feedback_chunks(store, model, since_us, until_us):
        total = feedback.ids.size
        # newest hours first (most labels are for recent predictions); a label never precedes its prediction
        for span in sorted((x for x in spans if x.start_us < chunk_end), key=lambda x: -x.start_us):
            if feedback.ids.size == 0:
                break
            index = read_meta(store, span)
            if index is None:
                continue
            base = span.base
            truth = load_array(store, f"{base}/truth.npy", writable=True)
            if not store.is_local:
                truth = np.array(truth)
            before = list(index.meta["classes"])
            hit = apply_labels(
                load_array(store, f"{base}/hash.npy"),
                load_array(store, f"{base}/ids.npy"),
                truth,
                feedback,
                index.meta,
            )
            if isinstance(truth, np.memmap):
                truth.flush()
            else:
                _save(store, f"{base}/truth.npy", truth)
            if hit.any():
                arrays = {n: load_array(store, f"{base}/{n}.npy") for n in ("ts", "version", "predicted")}
                _save(store, f"{base}/counts.npy", _confusion(span, {**arrays, "truth": truth}, index.meta))
                store.put_bytes(f"{base}/meta.json", json.dumps(index.meta).encode())
            elif index.meta["classes"] != before:
                store.put_bytes(f"{base}/meta.json", json.dumps(index.meta).encode())
            del truth
            feedback = feedback.subset(~hit)
        mark.applied += total - feedback.ids.size
        mark.unmatched += feedback.ids.size
    store.put_bytes(_watermark_key(model), json.dumps(mark.__dict__).encode())
    return mark


def update_model(
    store: ArtifactStore, model: str, *, now: dt.datetime, closed_us: int, lookback: dt.timedelta
) -> int:
    """One pass for a model: index the closed hours (and the open hour's closed minutes) that have none, then
    apply the new feedback. An hour's index replaces its minutes' once it closes."""
    first_hour = logs.to_us(now - lookback) // logs.HOUR_US
    mark = read_watermark(store, model)
    since_us = mark.until_us if mark is not None else first_hour * logs.HOUR_US
    logged = sorted(
        h
        for h in (compaction.hour_of(f) for f in compaction.hour_folders(store, logs.PREDICTIONS, model))
        if h >= first_hour and h * logs.HOUR_US < closed_us
    )
    spans: list[Span] = []
    built = 0
    for hour in logged:
        if (hour + 1) * logs.HOUR_US <= closed_us:
            span = hour_span(model, hour)
            if read_meta(store, span) is None:
                build_index(store, model, span, watermark_us=since_us)
                for minute in range(hour * 60, hour * 60 + 60):
                    store.delete_prefix(minute_span(model, minute).base)
                built += 1
            spans.append(span)
            continue
        for minute in range(hour * 60, closed_us // MINUTE_US):
            span = minute_span(model, minute)
            if read_meta(store, span) is None:
                build_index(store, model, span, watermark_us=since_us)
                built += 1
            spans.append(span)
    if closed_us > since_us:
        apply_feedback(store, model, since_us=since_us, until_us=closed_us, spans=spans)
    return built

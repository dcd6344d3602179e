"""The prediction log's one reader: windows, row counts and whole logs, skipping unreadable files (see `mloncall.stores.predlog`)."""

from __future__ import annotations

import datetime as dt
import posixpath
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mloncall.core.errors import StoreUnavailable
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.predlog import compact as compaction
from mloncall.stores.predlog.kinds import (
    FILES_SKIPPED,
    FOOTER_CACHE_SIZE,
    HOUR_US,
    OPEN_SINCE,
    OPEN_UNTIL,
    PARTITION_PATTERN,
    SYNTHETIC,
    from_us,
    log,
    partition,
    to_us,
)

# --- reader ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Footer:
    num_rows: int
    names: tuple[str, ...]
    ts_min: int | None
    ts_max: int | None
    #: (min, max) ts of each row group when there are several (a compacted hour), for reading a slice of it
    groups: tuple[tuple[int, int], ...] = ()
    #: whether rows may be synthetic: the file has the column and its statistics do not rule them out
    marked: bool = False


@dataclass
class LogWindow:
    """The rows of one log with since <= ts < until, and what was read or skipped to get them."""

    kind: str
    since: dt.datetime
    until: dt.datetime
    table: pa.Table | None
    files_read: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return 0 if self.table is None else self.table.num_rows

    def has(self, column: str) -> bool:
        return self.table is not None and column in self.table.column_names

    def evidence(self) -> dict[str, Any]:
        return {"files_read": self.files_read, "skipped_files": list(self.skipped)}


@dataclass
class RowCount:
    """How many rows one log holds in a window, counted from footers where a file lies wholly inside it."""

    rows: int
    first_us: int | None
    files_read: int
    skipped: list[dict[str, str]]


_footers: OrderedDict[tuple[str, str, str], _Footer] = OrderedDict()
_footers_lock = threading.Lock()
_seen_bad: set[tuple[str, str]] = set()


def hour_prefixes(kind: str, model: str, since_us: int, until_us: int) -> list[str]:
    """The partition folders of every hour overlapping [since, until)."""
    first = since_us // HOUR_US
    last = (until_us - 1) // HOUR_US
    out = []
    for hour in range(first, last + 1):
        t = from_us(hour * HOUR_US)
        out.append(f"{kind}/model={model}/date={t:%Y-%m-%d}/hour={t:%H}")
    return out


def _listing(store: ArtifactStore, prefix: str) -> list[tuple[str, str]]:
    """(key, version) of the Parquet files under a prefix; the version (size and modification time) keys the
    footer cache, so a file replaced under the same name is read afresh."""
    base = posixpath.join(store.base, prefix)
    try:
        found = store.fs.find(base, detail=True)
    except FileNotFoundError:
        return []
    except Exception as exc:
        raise StoreUnavailable(f"could not list {store.url(prefix)}: {_reason(exc)}") from None
    start = len(store.base.rstrip("/")) + 1
    out = []
    manifests: dict[str, str] = {}
    for path, info in found.items():
        key = path[start:] if path.startswith(store.base) else path
        stamp = (
            f"{info.get('size')}:{info.get('mtime') or info.get('LastModified') or info.get('ETag') or ''}"
        )
        if compaction.is_manifest(key):
            manifests[posixpath.dirname(key)] = stamp
        if not key.endswith(".parquet") or posixpath.basename(key).startswith(".tmp-"):
            continue
        out.append((key, stamp))
    return sorted(_visible(store, out, manifests))


_manifests: OrderedDict[tuple[str, str, str], compaction.Manifest | None] = OrderedDict()


def _visible(
    store: ArtifactStore, keys: list[tuple[str, str]], manifests: dict[str, str]
) -> list[tuple[str, str]]:
    """The files a reader reads: in a compacted hour the manifest's file and raw files flushed after it,
    elsewhere the raw files (a compacted file no manifest names is a leftover of an interrupted run)."""
    by_folder: dict[str, list[tuple[str, str]]] = {}
    for key, stamp in keys:
        by_folder.setdefault(posixpath.dirname(key), []).append((key, stamp))
    out: list[tuple[str, str]] = []
    for folder, entries in by_folder.items():
        manifest = None
        if folder in manifests:
            cache_key = (store.root, folder, manifests[folder])
            with _footers_lock:
                cached = _manifests.get(cache_key, False)
            if cached is False:
                cached = compaction.read_manifest(store, folder)
                with _footers_lock:
                    _manifests[cache_key] = cached
                    if len(_manifests) > 10_000:
                        _manifests.popitem(last=False)
            manifest = cached if isinstance(cached, compaction.Manifest) else None
        stamps = dict(entries)
        out.extend((k, stamps[k]) for k in compaction.visible([k for k, _ in entries], manifest))
    return out


def _keys(store: ArtifactStore, kind: str, model: str, since_us: int, until_us: int) -> list[tuple[str, str]]:
    """(key, version) of the files that may hold rows in [since, until): a bounded window lists only its hour
    partitions; an open one lists the model's folder and keeps the partitions from `since`'s hour on."""
    if until_us != OPEN_UNTIL:
        keys: list[tuple[str, str]] = []
        for prefix in hour_prefixes(kind, model, since_us, until_us):
            keys.extend(_listing(store, prefix))
        return keys
    keys = _listing(store, f"{kind}/model={model}")
    if since_us != OPEN_SINCE:
        first = partition(since_us // HOUR_US)
        keys = [(k, stamp) for k, stamp in keys if _partition_of(k) >= first]
    return keys


def _partition_of(key: str) -> str:
    match = PARTITION_PATTERN.search(key)
    return match.group(0) if match else ""


def _read(store: ArtifactStore, key: str, columns: list[str], groups: list[int] | None = None) -> pa.Table:
    """Only the named columns (and row groups) of one file (a local path is memory-friendly; a remote file
    is streamed)."""
    path = posixpath.join(store.base, key)
    if store.is_local:
        f = pq.ParquetFile(path)
        return f.read(columns=columns) if groups is None else f.read_row_groups(groups, columns=columns)
    with store.fs.open(path, "rb") as fh:
        f = pq.ParquetFile(fh)
        return f.read(columns=columns) if groups is None else f.read_row_groups(groups, columns=columns)


def _groups_in(footer: _Footer, since_us: int, until_us: int) -> list[int] | None:
    """The row groups of a many-group file with rows in [since, until); None: read the whole file."""
    if not footer.groups:
        return None
    return [i for i, (lo, hi) in enumerate(footer.groups) if hi >= since_us and lo < until_us]


def _metadata(store: ArtifactStore, key: str) -> Any:
    path = posixpath.join(store.base, key)
    if store.is_local:
        return pq.read_metadata(path)
    with store.fs.open(path, "rb") as fh:
        return pq.read_metadata(fh)


def _reason(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _skip(
    store: ArtifactStore, kind: str, key: str, exc: BaseException, skipped: list[dict[str, str]]
) -> None:
    """Report an unreadable file; it is logged and counted once, and listed on every read that meets it."""
    reason = _reason(exc)
    ident = (store.root, key)
    with _footers_lock:
        first_time = ident not in _seen_bad
        _seen_bad.add(ident)
    if first_time:
        log.warning("skipping unreadable %s log file %s: %s", kind, key, reason)
        FILES_SKIPPED.labels(kind=kind).inc()
    skipped.append({"file": key, "reason": reason})


def _footer(store: ArtifactStore, key: str, stamp: str) -> _Footer:
    cache_key = (store.root, key, stamp)
    with _footers_lock:
        hit = _footers.get(cache_key)
        if hit is not None:
            _footers.move_to_end(cache_key)
            return hit
    meta = _metadata(store, key)
    names = tuple(meta.schema.to_arrow_schema().names)
    ts_min: int | None = None
    ts_max: int | None = None
    if "ts" in names and meta.num_row_groups:
        j = names.index("ts")
        lows: list[int] = []
        highs: list[int] = []
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(j).statistics
            if stats is None or not stats.has_min_max or not isinstance(stats.min_raw, int):
                lows = highs = []
                break
            lows.append(stats.min_raw)
            highs.append(stats.max_raw)
        if lows:
            ts_min, ts_max = min(lows), max(highs)
    groups = tuple(zip(lows, highs, strict=True)) if "ts" in names and meta.num_row_groups > 1 else ()
    footer = _Footer(
        num_rows=meta.num_rows, names=names, ts_min=ts_min, ts_max=ts_max, groups=groups,
        marked=_may_be_synthetic(meta, names),
    )  # fmt: skip
    with _footers_lock:
        _footers[cache_key] = footer
        if len(_footers) > FOOTER_CACHE_SIZE:
            _footers.popitem(last=False)
    return footer


def _may_be_synthetic(meta: Any, names: tuple[str, ...]) -> bool:
    """Whether a file may hold synthetic rows: it has the column and some row group's statistics do not show
    every value false."""
    if SYNTHETIC not in names:
        return False
    j = names.index(SYNTHETIC)
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(j).statistics
        if stats is None or not stats.has_min_max or stats.max_raw is not False:
            return True
    return False


def _overlap(footer: _Footer, since_us: int, until_us: int) -> str:
    """'none', 'all' or 'some' of the file's rows fall in [since, until) (unknown stats: 'some')."""
    if footer.num_rows == 0:
        return "none"
    if footer.ts_min is None or footer.ts_max is None:
        return "some"
    if footer.ts_max < since_us or footer.ts_min >= until_us:
        return "none"
    if footer.ts_min >= since_us and footer.ts_max < until_us:
        return "all"
    return "some"


def _overlapping(
    store: ArtifactStore,
    kind: str,
    model: str,
    since_us: int,
    until_us: int,
    skipped: list[dict[str, str]],
) -> Iterator[tuple[str, _Footer, str]]:
    """(key, footer, overlap) of every file with rows in the window; a file whose footer cannot be read is
    skipped and listed."""
    for key, stamp in _keys(store, kind, model, since_us, until_us):
        try:
            footer = _footer(store, key, stamp)
        except Exception as exc:  # a bad file is reported, never fatal
            _skip(store, kind, key, exc, skipped)
            continue
        overlap = _overlap(footer, since_us, until_us)
        if overlap != "none":
            yield key, footer, overlap


def ts_us(table: pa.Table) -> np.ndarray:
    """The ts column as int64 microseconds since the epoch."""
    col = table.column("ts")
    if pa.types.is_timestamp(col.type) and col.type.unit != "us":
        col = pc.cast(col, pa.timestamp("us", tz="UTC"))
    return np.asarray(pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def synthetic_mask(table: pa.Table) -> np.ndarray:
    """True for the rows of synthetic requests (a load test's); all False in a file written before the
    `synthetic` column existed, and for its nulls (such a file's rows in a compacted hour)."""
    if SYNTHETIC not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    marked = pc.fill_null(table.column(SYNTHETIC), False)
    return np.asarray(marked.to_numpy(zero_copy_only=False), dtype=bool)


def _in_window(table: pa.Table, since_us: int, until_us: int) -> pa.Table:
    t = ts_us(table)
    return table.filter(pa.array((t >= since_us) & (t < until_us)))


def read_window(
    store: ArtifactStore,
    *,
    kind: str,
    model: str,
    since: dt.datetime,
    until: dt.datetime,
    columns: Sequence[str] | None = None,
    prefixes: Sequence[str] = (),
    synthetic: bool = True,
) -> LogWindow:
    """Rows of `kind` for `model` with since <= ts < until: the named columns plus every column starting with
    one of `prefixes` (all columns when both are empty). With `synthetic=False`, the rows of synthetic
    requests are left out (what the monitors of the inputs read). Unreadable files are skipped and listed."""
    result = LogWindow(kind=kind, since=since, until=until, table=None)
    since_us, until_us = to_us(since), to_us(until)
    if until_us > since_us:
        counter = [0]
        batches = _batches(
            store, kind, model, since_us, until_us, columns, prefixes, result.skipped, counter, synthetic
        )
        result.table = _concat(list(batches))
        result.files_read = counter[0]
    return result


def read_log(
    store: ArtifactStore, kind: str, model: str, *, since: dt.datetime | None = None
) -> pa.Table | None:
    """Every row logged for a model, or None if there is none; with `since`, only the hour partitions from
    its hour on are read, and only rows at or after it kept. Unreadable files are skipped as by
    `read_window` (the same scan)."""
    since_us = OPEN_SINCE if since is None else to_us(since)
    return _concat(list(_batches(store, kind, model, since_us, OPEN_UNTIL, None, (), [], [0], True)))


def _batches(
    store: ArtifactStore,
    kind: str,
    model: str,
    since_us: int,
    until_us: int,
    columns: Sequence[str] | None,
    prefixes: Sequence[str],
    skipped: list[dict[str, str]],
    counter: list[int],
    synthetic: bool,
) -> Iterator[pa.Table]:
    """The rows of one log in [since, until), one file (or a compacted file's row groups in the window) at a
    time: the one code path that reads log files, skipping, listing and counting the unreadable ones; without
    `synthetic`, the rows of synthetic requests left out."""
    wanted = set(columns or ())
    for key, footer, overlap in _overlapping(store, kind, model, since_us, until_us, skipped):
        if wanted or prefixes:
            cols = [c for c in footer.names if c in wanted or c.startswith(tuple(prefixes))]
            if "ts" in footer.names and "ts" not in cols:
                cols.append("ts")
        else:
            cols = list(footer.names)
        # the marks are read to drop the rows they mark, and kept only when asked for; a file whose statistics
        # show no synthetic row (footer.marked false) is read as it is, as count_rows does
        unmark = not synthetic and footer.marked
        extra_mark = unmark and SYNTHETIC not in cols
        if extra_mark:
            cols.append(SYNTHETIC)
        groups = _groups_in(footer, since_us, until_us)
        # a compacted hour is read a row group at a time, so a fold holds one group's rows, not the hour's
        chunks: list[list[int] | None] = [None] if groups is None else [[g] for g in groups]
        for i, chunk in enumerate(chunks):
            try:
                table = _read(store, key, cols, chunk)
            except Exception as exc:  # a bad file is reported, never fatal
                _skip(store, kind, key, exc, skipped)
                break
            counter[0] += i == 0
            if "ts" not in table.column_names:
                _skip(store, kind, key, ValueError("the file has no ts column"), skipped)
                break
            if overlap == "some":
                table = _in_window(table, since_us, until_us)
            if unmark:
                marked = synthetic_mask(table)
                if marked.any():
                    table = table.filter(pa.array(~marked))
                if extra_mark:
                    table = table.drop_columns([SYNTHETIC])
            if table.num_rows:
                yield table


def iter_window(
    store: ArtifactStore,
    *,
    kind: str,
    model: str,
    since: dt.datetime,
    until: dt.datetime,
    columns: Sequence[str] | None = None,
    prefixes: Sequence[str] = (),
    skipped: list[dict[str, str]] | None = None,
    synthetic: bool = True,
) -> Iterator[pa.Table]:
    """The rows `read_window` returns, one file at a time, so a caller that folds them holds one file's rows
    in memory; unreadable files are appended to `skipped`."""
    since_us, until_us = to_us(since), to_us(until)
    if until_us > since_us:
        yield from _batches(
            store, kind, model, since_us, until_us, columns, prefixes,
            [] if skipped is None else skipped, [0], synthetic,
        )  # fmt: skip


def _concat(parts: list[pa.Table]) -> pa.Table | None:
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    try:
        return pa.concat_tables(parts, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.concat_tables(parts, promote_options="permissive")


def count_rows(
    store: ArtifactStore,
    *,
    kind: str,
    model: str,
    since: dt.datetime,
    until: dt.datetime,
    synthetic: bool = True,
) -> RowCount:
    """Rows with since <= ts < until, and the earliest ts among them: files wholly inside the window are
    counted from their footer alone, only files straddling an edge have their ts column read. Without
    `synthetic`, the rows of synthetic requests are not counted (a file that may hold some is read for its
    marks)."""
    since_us, until_us = to_us(since), to_us(until)
    count = RowCount(0, None, 0, [])
    if until_us <= since_us:
        return count
    for key, footer, overlap in _overlapping(store, kind, model, since_us, until_us, count.skipped):
        low: int | None
        unmark = not synthetic and footer.marked
        if overlap == "all" and footer.ts_min is not None and not unmark:
            n, low = footer.num_rows, footer.ts_min
        else:
            try:
                cols = ["ts", SYNTHETIC] if unmark else ["ts"]
                table = _read(store, key, cols, _groups_in(footer, since_us, until_us))
            except Exception as exc:
                _skip(store, kind, key, exc, count.skipped)
                continue
            t = ts_us(table)
            kept = (t >= since_us) & (t < until_us)
            if unmark:
                kept &= ~synthetic_mask(table)
            inside = t[kept]
            n, low = int(inside.size), (int(inside.min()) if inside.size else None)
        count.files_read += 1
        count.rows += n
        if low is not None:
            count.first_us = low if count.first_us is None else min(count.first_us, low)
    return count


def clear_cache() -> None:
    """Forget cached footers (tests)."""
    with _footers_lock:
        _footers.clear()
        _seen_bad.clear()
        _manifests.clear()

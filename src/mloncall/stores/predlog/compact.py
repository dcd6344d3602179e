"""Compaction and retention of the prediction log: each closed hour's small files merged into one, sorted by time.

An hour folder is compacted in four steps, each safe to interrupt:

1. every input is read (the hour's compacted file of the previous generation, if any, and every raw file it
   does not already replace); an unreadable file is skipped, listed with its reason, and never fatal;
2. the rows are written, sorted by `ts`, to `compacted@<generation>.parquet` (temporary name, then rename);
3. `manifest@compaction.json` is written (temporary name, then rename): the commit point. It names the
   compacted file and every raw file it replaces;
4. the replaced raw files and the previous generation are deleted.

Readers (`stores.predlog.reader`) trust the manifest: in a folder that has one they read its compacted file
and only the raw files it does not name (files flushed late, after the compaction); compacted files no
manifest names are leftovers of an interrupted run and are ignored. Without a manifest the raw files are
authoritative. So a reader never sees an hour half-compacted or a row twice, a crash before step 3 leaves
the raw files in charge, and a rerun finishes what a crash interrupted (compaction is idempotent).

The merge streams: inputs are read in the order of their first timestamp, and rows below the next input's
first timestamp are final and written out, so memory holds a few files' rows, not the hour's.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.predlog.kinds import FILES_SKIPPED, HOUR_US, KINDS, PARTITION_PATTERN, from_us, log

MANIFEST = "manifest@compaction.json"
COMPACTED_PREFIX = "compacted@"
ROW_GROUP_ROWS = 65_536
#: A closed hour is compacted once this long has passed since its end (late flushes land first).
GRACE = dt.timedelta(minutes=5)
#: Rows held before sorted rows are written out.
FLUSH_ROWS = 262_144


def is_compacted(key: str) -> bool:
    return posixpath.basename(key).startswith(COMPACTED_PREFIX)


def is_manifest(key: str) -> bool:
    return posixpath.basename(key) == MANIFEST


@dataclass
class Manifest:
    """What one compaction of an hour folder wrote and what it replaces."""

    generation: int = 0
    files: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    rows: int = 0
    compacted_at: str = ""

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=1, sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        doc = json.loads(data)
        if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
            raise ValueError("not a compaction manifest")
        return cls(
            generation=int(doc.get("generation", 0)),
            files=[str(f) for f in doc["files"]],
            replaced=[str(f) for f in doc.get("replaced", [])],
            skipped=[{str(k): str(v) for k, v in s.items()} for s in doc.get("skipped", [])],
            rows=int(doc.get("rows", 0)),
            compacted_at=str(doc.get("compacted_at", "")),
        )

    def hidden(self) -> set[str]:
        """Basenames in the folder a reader must not read: replaced or skipped raw files."""
        return set(self.replaced) | {s["file"] for s in self.skipped}


def read_manifest(store: ArtifactStore, folder: str) -> Manifest | None:
    """The folder's manifest, or None when there is none (a corrupt one counts as none: raw files rule)."""
    try:
        return Manifest.parse(store.get_bytes(f"{folder}/{MANIFEST}"))
    except Exception:
        return None


def visible(keys: Iterable[str], manifest: Manifest | None) -> list[str]:
    """The Parquet keys of one hour folder a reader reads, given its manifest (see the module docstring)."""
    out = []
    if manifest is None:
        return [k for k in keys if not is_compacted(k)]
    hidden = manifest.hidden()
    files = set(manifest.files)
    for key in keys:
        name = posixpath.basename(key)
        if is_compacted(key):
            if name in files:
                out.append(key)
        elif name not in hidden:
            out.append(key)
    return out


# --- compaction ----------------------------------------------------------------------------------------


@dataclass
class HourResult:
    """What compacting one hour folder did."""

    folder: str
    inputs: int = 0
    rows: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    deleted: int = 0
    compacted: bool = False


@dataclass
class CompactionReport:
    hours: list[HourResult] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)

    @property
    def compacted(self) -> int:
        return sum(1 for h in self.hours if h.compacted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hours_compacted": self.compacted,
            "files_merged": sum(h.inputs for h in self.hours if h.compacted),
            "rows": sum(h.rows for h in self.hours if h.compacted),
            "files_deleted": sum(h.deleted for h in self.hours),
            "skipped_files": [{"folder": h.folder, **s} for h in self.hours for s in h.skipped],
            "expired_hours": self.expired,
        }


def hour_folders(store: ArtifactStore, kind: str, model: str | None = None) -> dict[str, list[str]]:
    """Every hour folder of a kind (optionally one model) and the keys in it."""
    prefix = kind if model is None else f"{kind}/model={model}"
    folders: dict[str, list[str]] = {}
    for key in store.list(prefix):
        match = PARTITION_PATTERN.search(key)
        if match is None:
            continue
        folders.setdefault(key[: match.end()], []).append(key)
    return folders


def hour_of(folder: str) -> int:
    """The hour (counted from the epoch) of a `date=YYYY-MM-DD/hour=HH` folder."""
    match = PARTITION_PATTERN.search(folder)
    assert match is not None
    day, hour = match.group(0).split("/")
    when = dt.datetime.strptime(f"{day[5:]} {hour[5:]}", "%Y-%m-%d %H").replace(tzinfo=dt.UTC)
    return int(when.timestamp()) // 3600


def compact(
    store: ArtifactStore,
    *,
    now: dt.datetime,
    kinds: Iterable[str] = KINDS,
    model: str | None = None,
    grace: dt.timedelta = GRACE,
) -> CompactionReport:
    """Compact every closed hour (ended at least `grace` before `now`) that has raw files or leftovers."""
    report = CompactionReport()
    limit = int((now - grace).timestamp()) // 3600  # hours before this one are closed
    for kind in kinds:
        for folder, keys in sorted(hour_folders(store, kind, model).items()):
            if hour_of(folder) >= limit:
                continue
            report.hours.append(compact_hour(store, folder, keys, kind=kind))
    return report


def compact_hour(store: ArtifactStore, folder: str, keys: list[str], *, kind: str) -> HourResult:
    """Compact one closed hour folder (idempotent; see the module docstring for the steps)."""
    result = HourResult(folder=folder)
    old = read_manifest(store, folder)
    parquet = [k for k in keys if k.endswith(".parquet")]
    hidden = old.hidden() if old is not None else set()
    previous = [f"{folder}/{f}" for f in old.files] if old is not None else []
    fresh = [k for k in parquet if not is_compacted(k) and posixpath.basename(k) not in hidden]
    if fresh or (old is None and parquet):
        generation = (old.generation if old is not None else 0) + 1
        manifest = _merge(store, folder, previous + fresh, generation, kind, result)
        manifest.replaced = sorted(set(old.replaced if old else []) | {posixpath.basename(k) for k in fresh})
        manifest.replaced = [r for r in manifest.replaced if r not in {s["file"] for s in manifest.skipped}]
        if old is not None:
            manifest.skipped = old.skipped + manifest.skipped
        store.put_bytes(f"{folder}/{MANIFEST}", manifest.to_json())  # the commit point
        old = manifest
        result.compacted = True
    if old is not None:
        result.deleted = _tidy(store, folder, parquet, old)
    return result


def _merge(
    store: ArtifactStore, folder: str, inputs: list[str], generation: int, kind: str, result: HourResult
) -> Manifest:
    """Stream the inputs into one sorted file; unreadable inputs are skipped and listed."""
    readable: list[tuple[int, str, pa.Schema]] = []
    for key in inputs:
        try:
            meta = pq.read_metadata(_open(store, key))
            schema = meta.schema.to_arrow_schema()
            first = _first_ts(meta, schema)
        except Exception as exc:
            _skipped(result, key, exc, kind)
            continue
        readable.append((first, key, schema))
    readable.sort()
    schema = _unified([s for _, _, s in readable])
    name = f"{COMPACTED_PREFIX}{generation:06d}.parquet"
    with tempfile.TemporaryDirectory(prefix="mloncall-compact-") as tmp:
        path = Path(tmp) / name
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            result.rows = _stream(store, readable, schema, writer, result, kind)
        store.put_file(f"{folder}/{name}", path)
    result.inputs = len(inputs) - len(result.skipped)
    return Manifest(
        generation=generation,
        files=[name],
        skipped=result.skipped,
        rows=result.rows,
        compacted_at=dt.datetime.now(dt.UTC).isoformat(),
    )


def _stream(
    store: ArtifactStore,
    inputs: list[tuple[int, str, pa.Schema]],
    schema: pa.Schema,
    writer: pq.ParquetWriter,
    result: HourResult,
    kind: str,
) -> int:
    """Write the inputs' rows in ts order: rows below the next input's first ts can no longer be preceded."""
    held: list[pa.Table] = []
    held_rows = written = 0
    for i, (_, key, _) in enumerate(inputs):
        try:
            table = pq.read_table(_open(store, key))
        except Exception as exc:
            _skipped(result, key, exc, kind)
            continue
        held.append(_conform(table, schema))
        held_rows += table.num_rows
        if held_rows < FLUSH_ROWS and i + 1 < len(inputs):
            continue
        bound = inputs[i + 1][0] if i + 1 < len(inputs) else None
        rows = pa.concat_tables(held)
        ts = _ts(rows)
        if ts.size > 1 and not bool((ts[1:] >= ts[:-1]).all()):  # files of one writer come in order already
            order = np.argsort(ts, kind="stable")
            rows, ts = rows.take(pa.array(order)), ts[order]
        if bound is not None:
            cut = int(np.searchsorted(ts, bound, side="left"))
            ready, rest = rows.slice(0, cut), rows.slice(cut)
        else:
            ready, rest = rows, rows.slice(0, 0)
        if ready.num_rows:
            writer.write_table(ready, row_group_size=ROW_GROUP_ROWS)
            written += ready.num_rows
        held, held_rows = ([rest] if rest.num_rows else []), rest.num_rows
    return written


def _tidy(store: ArtifactStore, folder: str, parquet: list[str], manifest: Manifest) -> int:
    """Delete what the committed manifest replaced: raw files and earlier generations."""
    keep = set(manifest.files)
    gone = 0
    replaced = set(manifest.replaced)
    for key in parquet:
        name = posixpath.basename(key)
        if (is_compacted(key) and name not in keep) or name in replaced:
            store.delete(key)
            gone += 1
    return gone


def _skipped(result: HourResult, key: str, exc: BaseException, kind: str) -> None:
    reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    log.warning("compaction skips unreadable %s log file %s: %s", kind, key, reason)
    FILES_SKIPPED.labels(kind=kind).inc()
    result.skipped.append({"file": posixpath.basename(key), "reason": reason})


def _open(store: ArtifactStore, key: str) -> Any:
    path = posixpath.join(store.base, key)
    return path if store.is_local else store.fs.open(path, "rb")


def _first_ts(meta: Any, schema: pa.Schema) -> int:
    if "ts" not in schema.names:
        raise ValueError("the file has no ts column")
    j = schema.names.index("ts")
    lows = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(j).statistics
        if stats is not None and stats.has_min_max and isinstance(stats.min_raw, int):
            lows.append(stats.min_raw)
    return min(lows) if lows else -(1 << 62)


def _unified(schemas: list[pa.Schema]) -> pa.Schema:
    if not schemas:
        return pa.schema([("ts", pa.timestamp("us", tz="UTC"))])
    try:
        return pa.unify_schemas(schemas, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.unify_schemas(schemas, promote_options="permissive")


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table with every column of the unified schema (nulls where it had none), in its order and types."""
    columns = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            columns.append(col if col.type == f.type else col.cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _ts(table: pa.Table) -> np.ndarray:
    col = table.column("ts")
    return np.asarray(pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


# --- retention and statistics --------------------------------------------------------------------------


def expire(
    store: ArtifactStore, *, now: dt.datetime, keep: dt.timedelta, kinds: Iterable[str] = KINDS
) -> list[str]:
    """Delete every hour folder that ended more than `keep` before `now`; returns the folders deleted."""
    first_kept = int((now - keep).timestamp()) // 3600
    gone = []
    for kind in kinds:
        for folder in sorted(hour_folders(store, kind)):
            if hour_of(folder) + 1 <= first_kept:
                store.delete_prefix(folder)
                gone.append(folder)
    return gone


@dataclass
class ModelLogStats:
    kind: str
    model: str
    files: int = 0
    raw_files: int = 0
    compacted_hours: int = 0
    hours: int = 0
    rows: int = 0
    bytes: int = 0
    oldest_hour: str | None = None
    newest_hour: str | None = None
    skipped_files: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def log_stats(store: ArtifactStore, *, kinds: Iterable[str] = KINDS) -> list[ModelLogStats]:
    """Files, rows, bytes and the oldest and newest hour of every model's logs (rows from footers)."""
    out: dict[tuple[str, str], ModelLogStats] = {}
    for kind in kinds:
        for folder, keys in sorted(hour_folders(store, kind).items()):
            model = folder.split("/")[1].removeprefix("model=")
            stats = out.setdefault((kind, model), ModelLogStats(kind=kind, model=model))
            manifest = read_manifest(store, folder)
            read = visible([k for k in keys if k.endswith(".parquet")], manifest)
            hour = from_us(hour_of(folder) * HOUR_US).strftime("%Y-%m-%dT%H:00Z")
            stats.hours += 1
            stats.compacted_hours += manifest is not None
            stats.skipped_files += len(manifest.skipped) if manifest is not None else 0
            stats.oldest_hour = min(stats.oldest_hour or hour, hour)
            stats.newest_hour = max(stats.newest_hour or hour, hour)
            for key in read:
                path = posixpath.join(store.base, key)
                try:
                    stats.bytes += int(store.fs.size(path))
                    stats.rows += pq.read_metadata(_open(store, key)).num_rows
                except Exception:
                    stats.skipped_files += 1
                    continue
                stats.files += 1
                stats.raw_files += not is_compacted(key)
    return sorted(out.values(), key=lambda s: (s.model, s.kind))


__all__ = [
    "COMPACTED_PREFIX",
    "MANIFEST",
    "CompactionReport",
    "HourResult",
    "Manifest",
    "ModelLogStats",
    "compact",
    "compact_hour",
    "expire",
    "hour_folders",
    "hour_of",
    "is_compacted",
    "log_stats",
    "read_manifest",
    "visible",
]

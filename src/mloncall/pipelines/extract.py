"""The extract stage's sources: files by glob, objects under an S3 prefix, rows of a SQL query. Each read
returns the frame and every input by name with its sha256, so a re-run can prove the inputs unchanged.

A file that cannot be parsed (empty, truncated, not CSV or Parquet) fails the stage, or, with the source's
`on_corrupt: quarantine`, is handed to `set_aside` (which moves it out of the source with its reason) and
the read goes on with the others; with none left, the stage fails all the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mloncall.core.errors import InvalidInput
from mloncall.data.files import first_line, read_table
from mloncall.pipelines.failures import FailureClass, StageFailure, TransientError, is_transient
from mloncall.pipelines.sources import SourceFile
from mloncall.pipelines.spec import Source

_TABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".parq")


@dataclass
class Extracted:
    frame: pd.DataFrame
    #: each input (a file path, an s3:// URL, `sql:<url>`) with its sha256
    inputs: dict[str, str]
    #: rows each input held
    rows: dict[str, int] = field(default_factory=dict)
    #: the files set aside as corrupted, each with its reason and where it went
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    #: when the newest input was written (files' mtime, S3 objects' LastModified), what freshness is judged by
    newest: dt.datetime | None = None
    #: bytes read
    size: int = 0


#: Moves a corrupted file out of the source (the file, its bytes, why) and says where it went.
SetAside = Callable[[SourceFile, bytes, str], dict[str, Any]]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _glob(source: Source, home: Path) -> tuple[str, list[Path]]:
    assert source.files is not None
    pattern = source.files if Path(source.files).is_absolute() else str(home / source.files)
    anchor = Path(pattern)
    parts = anchor.parts
    root_index = next((i for i, p in enumerate(parts) if any(ch in p for ch in "*?[")), len(parts))
    root = Path(*parts[:root_index]) if root_index else Path("/")
    rest = str(Path(*parts[root_index:])) if root_index < len(parts) else ""
    matches = sorted(p for p in (root.glob(rest) if rest else [root]) if p.is_file())
    return pattern, matches


def _read(path: Path, name: str) -> pd.DataFrame:
    try:
        return read_table(path)
    except InvalidInput as exc:
        failure = (
            FailureClass.MISSING_SOURCE if "does not exist" in exc.message else FailureClass.UNREADABLE_SOURCE
        )
        raise StageFailure(failure, exc.message.replace(str(path), name), {"file": name}) from None


def _combine(frames: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    first_name, first = frames[0]
    for name, frame in frames[1:]:
        if list(frame.columns) != list(first.columns):
            raise StageFailure(
                FailureClass.SCHEMA_MISMATCH,
                f"{name} has columns {', '.join(map(str, frame.columns))} but {first_name} has "
                f"{', '.join(map(str, first.columns))}",
                {"file": name, "columns": [str(c) for c in frame.columns]},
            )
    return pd.concat([f for _, f in frames], ignore_index=True)


def from_files(source: Source, home: Path, set_aside: SetAside | None = None) -> Extracted:
    pattern, paths = _glob(source, home)
    if not paths:
        raise StageFailure(
            FailureClass.MISSING_SOURCE, f"no file matches {pattern}", {"pattern": pattern, "files": []}
        )
    frames: list[tuple[str, pd.DataFrame]] = []
    kept: list[Path] = []
    quarantined: list[dict[str, Any]] = []
    for p in paths:
        try:
            frames.append((str(p), _read(p, str(p))))
            kept.append(p)
        except StageFailure as exc:
            if not _sets_aside(source, set_aside, exc):
                raise
            assert set_aside is not None
            quarantined.append(set_aside(_local_file(p), p.read_bytes(), exc.message))
    _some_left(frames, quarantined, pattern)
    newest = max(p.stat().st_mtime for p in kept)
    return Extracted(
        _combine(frames), {str(p): sha256_file(p) for p in kept}, {n: len(f) for n, f in frames},
        quarantined, dt.datetime.fromtimestamp(newest, tz=dt.UTC), sum(p.stat().st_size for p in kept),
    )  # fmt: skip


def _sets_aside(source: Source, set_aside: SetAside | None, exc: StageFailure) -> bool:
    return (
        source.on_corrupt == "quarantine"
        and set_aside is not None
        and exc.failure == FailureClass.UNREADABLE_SOURCE
    )


def _some_left(frames: list[tuple[str, pd.DataFrame]], quarantined: list[dict[str, Any]], where: str) -> None:
    if not frames:
        raise StageFailure(
            FailureClass.UNREADABLE_SOURCE,
            f"no readable file is left in {where}: {len(quarantined)} moved aside as corrupted ("
            + "; ".join(f"{q['location']}: {q['reason']}" for q in quarantined)
            + ")",
            {"quarantined": quarantined},
        )


def _local_file(p: Path) -> SourceFile:
    st = p.stat()
    return SourceFile(
        str(p), st.st_size, dt.datetime.fromtimestamp(st.st_mtime, tz=dt.UTC), p.read_bytes, p.unlink
    )


def file_hashes(source: Source, home: Path) -> dict[str, str]:
    """The sha256 of each input as it is now (for a re-run's comparison), without parsing it."""
    if source.files is not None:
        return {str(p): sha256_file(p) for p in _glob(source, home)[1]}
    return read(source, home).inputs


def _s3(source: Source) -> Any:
    import s3fs

    options: dict[str, Any] = {"config_kwargs": {"connect_timeout": 2, "read_timeout": 5,
                                                              "retries": {"max_attempts": 1}}}  # fmt: skip
    endpoint = os.environ.get("MLONCALL_S3_ENDPOINT_URL")
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **options)


def _transient_or(exc: BaseException, failure: FailureClass, what: str) -> Exception:
    reason = first_line(exc)
    if is_transient(exc) or "could not connect" in reason.lower() or "connect timeout" in reason.lower():
        return TransientError(failure, f"{what} cannot be reached: {reason}")
    return StageFailure(failure, f"{what}: {reason}")


def from_s3(source: Source, set_aside: SetAside | None = None) -> Extracted:
    assert source.s3 is not None
    prefix = source.s3.removeprefix("s3://").rstrip("/")
    fs = _s3(source)
    try:
        listed: dict[str, Any] = fs.find(prefix, detail=True)
    except FileNotFoundError:
        listed = {}
    except Exception as exc:
        raise _transient_or(exc, FailureClass.MISSING_SOURCE, f"S3 prefix {source.s3}") from None
    keys = sorted(k for k in listed if k.lower().endswith(_TABLE_SUFFIXES))
    written = {k: _last_modified(listed[k]) for k in keys}
    if not keys:
        raise StageFailure(FailureClass.MISSING_SOURCE, f"no CSV or Parquet object under {source.s3}")
    frames, inputs, quarantined, size = [], {}, [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for key in keys:
            url = f"s3://{key}"
            try:
                data = fs.cat_file(key)
            except Exception as exc:
                raise _transient_or(exc, FailureClass.UNREADABLE_SOURCE, url) from None
            local = Path(tmp) / Path(key).name
            local.write_bytes(data)
            try:
                frames.append((url, _read(local, url)))
            except StageFailure as exc:
                if not _sets_aside(source, set_aside, exc):
                    raise
                assert set_aside is not None
                quarantined.append(set_aside(_s3_file(fs, key, data, written[key]), data, exc.message))
                continue
            inputs[url] = hashlib.sha256(data).hexdigest()
            size += len(data)
    _some_left(frames, quarantined, source.s3)
    kept = [at for k in keys if f"s3://{k}" in inputs and (at := written[k]) is not None]
    newest = max(kept) if kept else None  # freshness is judged by the objects' LastModified, as for files
    return Extracted(_combine(frames), inputs, {n: len(f) for n, f in frames}, quarantined, newest, size)


def _last_modified(info: Any) -> dt.datetime | None:
    """When S3 says an object was written (its LastModified), in UTC; None when the listing does not say."""
    at = info.get("LastModified") if isinstance(info, dict) else None
    if not isinstance(at, dt.datetime):
        return None
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


def _s3_file(fs: Any, key: str, data: bytes, written: dt.datetime | None) -> SourceFile:
    def remove() -> None:
        fs.rm(key)

    return SourceFile(f"s3://{key}", len(data), written or dt.datetime.now(dt.UTC), lambda: data, remove)


def from_sql(source: Source) -> Extracted:
    import sqlalchemy as sa

    assert source.sql is not None and source.url is not None
    name = f"sql:{source.url.split('@')[-1]}"
    try:
        engine = sa.create_engine(source.url, connect_args=_connect_args(source.url))
    except Exception as exc:
        raise StageFailure(FailureClass.MISSING_SOURCE, f"{name}: {first_line(exc)}") from None
    try:
        with engine.connect() as conn:
            frame = pd.read_sql_query(sa.text(source.sql), conn)
    except Exception as exc:
        if is_transient(exc):
            raise TransientError(
                FailureClass.MISSING_SOURCE, f"{name} cannot be reached: {first_line(exc)}"
            ) from None
        raise StageFailure(
            FailureClass.MISSING_SOURCE, f"{name}: the query failed: {first_line(exc)}"
        ) from None
    finally:
        engine.dispose()
    if len(frame) == 0:
        raise StageFailure(FailureClass.UNREADABLE_SOURCE, f"{name}: the query returned no rows")
    text = io.StringIO()
    frame.to_csv(text, index=False)
    return Extracted(frame, {name: hashlib.sha256(text.getvalue().encode()).hexdigest()}, {name: len(frame)})


def _connect_args(url: str) -> dict[str, Any]:
    return {"connect_timeout": 3} if url.startswith("postgresql") else {}


def read(source: Source, home: Path, set_aside: SetAside | None = None) -> Extracted:
    if source.files is not None:
        return from_files(source, home, set_aside)
    if source.s3 is not None:
        return from_s3(source, set_aside)
    return from_sql(source)

"""Upstream checks of a source before a pipeline reads it: a file glob, an S3 prefix or a SQL query.

`check_source` finds the source's files (or runs its query), and checks, in order: it exists; every file
parses (CSV or Parquet; an empty or truncated file is corrupted, moved aside into the artifact store's
`quarantine/files/` and recorded with its reason, and the run continues without it or fails, by the
source's `on_corrupt`); it is fresh against its SLA (files' modification times, or a declared timestamp
column); its size and row count are in line with its history (a drop or a jump against the median of the
last runs). Each run's observation is recorded (`pipelines.history`), which is what the `freshness`
monitor reads.

The errors say what to do next: TransientSourceError (a timeout, a refused connection: retry), SourceMissing
(nothing there), CorruptSource (no readable file left, or `on_corrupt: fail`), and a SourceReport whose
`problems` name a stale or out-of-line source, raised by `require_ok` as SourceCheckFailed.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import posixpath
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mloncall.core import clock
from mloncall.core.durations import Duration
from mloncall.core.errors import CheckFailed, InvalidInput
from mloncall.core.names import check_name
from mloncall.data.files import read_table
from mloncall.pipelines import history, sources
from mloncall.pipelines.quality_models import QuarantinedFile, SourceObservation
from mloncall.pipelines.sources import SourceFile, SourceMissing, TransientSourceError
from mloncall.stores.context import Context


class CorruptSource(InvalidInput):
    """The source's files cannot be parsed (empty, truncated, not the declared format)."""


class SourceCheckFailed(CheckFailed):
    """The source is readable but late, or out of line with its history."""


class SourceSpec(BaseModel):
    """A pipeline's declared source. `path`: a file glob (`kind: file`) or `s3://bucket/prefix` (`kind: s3`);
    `url` and `query`: a SQLAlchemy URL and a query (`kind: sql`)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["file", "s3", "sql"]
    path: str | None = None
    url: str | None = None
    query: str | None = None
    format: Literal["auto", "csv", "parquet"] = "auto"
    fresh_within: Duration | None = None
    timestamp_column: str | None = None
    max_drop: float = Field(default=0.5, gt=0, lt=1)
    max_jump: float = Field(default=3.0, gt=1)
    history: int = Field(default=10, ge=1, le=1000)
    min_history: int = Field(default=3, ge=1)
    on_corrupt: Literal["quarantine", "fail"] = "quarantine"
    feeds: list[str] = Field(default_factory=list)
    endpoint_url: str | None = None
    timeout: Duration = dt.timedelta(seconds=10)

    @model_validator(mode="after")
    def _where(self) -> SourceSpec:
        check_name(self.name, "source name")
        if self.kind in ("file", "s3") and not self.path:
            raise ValueError(f"a {self.kind} source needs a path")
        if self.kind == "s3" and not (self.path or "").startswith("s3://"):
            raise ValueError("an s3 source's path is s3://bucket/prefix")
        if self.kind == "sql" and not (self.url and self.query):
            raise ValueError("a sql source needs a url and a query")
        if self.kind == "sql" and self.fresh_within is not None and self.timestamp_column is None:
            raise ValueError("a sql source's freshness needs a timestamp_column")
        return self


@dataclass
class SourceReport:
    """What check_source found: the parsed frames by file, the files set aside, the problems (stale, a
    drop or a jump), the observation recorded."""

    source: str
    frames: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    observation: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def frame(self) -> pd.DataFrame:
        """Every parsed file's rows, in file order."""
        if not self.frames:
            return pd.DataFrame()
        return pd.concat([f for _, f in self.frames], ignore_index=True)

    def require_ok(self) -> None:
        if self.problems:
            raise SourceCheckFailed(
                f"source {self.source!r}: " + "; ".join(self.problems), details=self.to_dict()
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "files": [loc for loc, _ in self.frames],
            "rows": int(sum(len(f) for _, f in self.frames)),
            "quarantined": self.quarantined,
            "problems": list(self.problems),
            "observation": self.observation,
        }


def parse_spec(body: dict[str, Any]) -> SourceSpec:
    """A SourceSpec from its declared dict; InvalidInput names each bad field."""
    from pydantic import ValidationError

    try:
        return SourceSpec.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'source'}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"invalid source: {problems}") from None


def check_source(
    ctx: Context, spec: SourceSpec, *, run_id: str | None = None, now: dt.datetime | None = None
) -> SourceReport:
    """Check the source as the module says and record what was seen; raise for what stops a run."""
    at = now or clock.now()
    report = SourceReport(source=spec.name)
    try:
        if spec.kind == "sql":
            frame = sources.run_query(spec.url or "", spec.query or "", timeout=spec.timeout.total_seconds())
            report.frames.append((f"{spec.name} (query)", frame))
            files: list[SourceFile] = []
        else:
            files = (
                sources.list_s3(
                    spec.path or "", endpoint_url=spec.endpoint_url, timeout=spec.timeout.total_seconds()
                )
                if spec.kind == "s3"
                else _local_files(spec.path or "")
            )
            if not files:
                raise SourceMissing(f"source {spec.name!r}: nothing matches {spec.path}")
            _parse_all(ctx, spec, files, report, run_id=run_id, at=at)
    except TransientSourceError as exc:
        _observe(ctx, spec, at, status="unreachable", detail={"error": exc.message})
        raise
    except SourceMissing as exc:
        _observe(ctx, spec, at, status="missing", detail={"error": exc.message})
        raise
    except CorruptSource as exc:
        _observe(
            ctx, spec, at, status="corrupt", files=len(report.quarantined), detail={"error": exc.message}
        )
        raise
    size = sum(f.size for f in files if f.location in {loc for loc, _ in report.frames})
    rows = int(sum(len(f) for _, f in report.frames))
    newest = _newest(spec, files, report)
    _judge(ctx, spec, report, size=size, rows=rows, newest=newest, at=at)
    status = "ok" if report.ok else ("stale" if any("late" in p for p in report.problems) else "anomalous")
    report.observation = _observe(
        ctx, spec, at, status=status, files=len(report.frames), size=size, rows=rows, newest=newest,
        detail={"problems": report.problems, "quarantined": len(report.quarantined)},
    )  # fmt: skip
    return report


def _local_files(pattern: str) -> list[SourceFile]:
    out: list[SourceFile] = []
    for name in sorted(glob.glob(pattern)):
        p = Path(name)
        if not p.is_file():
            continue
        st = p.stat()
        out.append(
            SourceFile(
                location=str(p),
                size=st.st_size,
                modified=dt.datetime.fromtimestamp(st.st_mtime, tz=dt.UTC),
                fetch=p.read_bytes,
                remove=p.unlink,
            )
        )
    return out


def _parse_all(
    ctx: Context,
    spec: SourceSpec,
    files: list[SourceFile],
    report: SourceReport,
    *,
    run_id: str | None,
    at: dt.datetime,
) -> None:
    """Parse every file; a corrupted one is moved aside and recorded, then skipped or fatal by policy."""
    for f in files:
        data = f.fetch()
        try:
            report.frames.append((f.location, _parse(f.location, data, spec.format)))
        except InvalidInput as exc:
            reason = exc.message
            report.quarantined.append(
                quarantine_file(ctx, spec.name, f, data, reason=reason, run_id=run_id, at=at)
            )
            if spec.on_corrupt == "fail":
                raise CorruptSource(
                    f"source {spec.name!r}: {f.location} is corrupted ({reason}); it was moved aside",
                    details={"quarantined": report.quarantined},
                ) from None
    if not report.frames:
        raise CorruptSource(
            f"source {spec.name!r}: no readable file is left ({len(report.quarantined)} moved aside as corrupted)",
            details={"quarantined": report.quarantined},
        )


def _parse(location: str, data: bytes, fmt: str) -> pd.DataFrame:
    """The file's rows through the project's one reader (`data.files.read_table`), from a private copy."""
    suffix = {"csv": ".csv", "parquet": ".parquet"}.get(fmt) or (os.path.splitext(location)[1] or ".csv")
    with tempfile.TemporaryDirectory(prefix="mloncall-source-") as tmp:
        path = Path(tmp) / f"file{suffix}"
        path.write_bytes(data)
        try:
            return read_table(path)
        except InvalidInput as exc:
            raise InvalidInput(exc.message.replace(str(path), location)) from None


def quarantine_file(
    ctx: Context, source: str, f: SourceFile, data: bytes, *, reason: str, run_id: str | None, at: dt.datetime
) -> dict[str, Any]:
    """Move a corrupted file aside: its bytes into the artifact store (atomically), then the original
    removed, then the record; returns the record as a dict."""
    base = posixpath.basename(f.location.rstrip("/")) or "file"
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in base)[-100:]
    key = f"quarantine/files/{source}/{at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}-{safe}"
    stored = ctx.store.put_bytes(key, data)
    f.remove()
    row = QuarantinedFile(
        source=source, location=f.location, key=stored.key, sha256=stored.sha256, size=stored.size,
        reason=reason, run_id=run_id, created_at=at,
    )  # fmt: skip
    with ctx.db.session() as session:
        session.add(row)
        session.flush()
        return {
            "id": row.id,
            "location": f.location,
            "key": stored.key,
            "reason": reason,
            "size": stored.size,
        }


def _newest(spec: SourceSpec, files: list[SourceFile], report: SourceReport) -> dt.datetime | None:
    """When the source's newest data is from: its timestamp column's maximum, or its newest file's mtime."""
    if spec.timestamp_column is not None:
        frame = report.frame
        if spec.timestamp_column not in frame.columns:
            raise InvalidInput(f"source {spec.name!r}: no timestamp column {spec.timestamp_column!r}")
        stamps = pd.to_datetime(frame[spec.timestamp_column], errors="coerce", utc=True).dropna()
        return stamps.max().to_pydatetime() if len(stamps) else None
    kept = {loc for loc, _ in report.frames}
    times = [f.modified for f in files if f.location in kept]
    return max(times) if times else None


def _judge(
    ctx: Context,
    spec: SourceSpec,
    report: SourceReport,
    *,
    size: int,
    rows: int,
    newest: dt.datetime | None,
    at: dt.datetime,
) -> None:
    if spec.fresh_within is not None:
        if newest is None:
            report.problems.append("late: no timestamp found to judge freshness by")
        elif at - newest > spec.fresh_within:
            age = int((at - newest).total_seconds())
            limit = int(spec.fresh_within.total_seconds())
            report.problems.append(f"late: its newest data is {age}s old (SLA {limit}s)")
    with ctx.db.session() as session:
        past = history.recent(session=session, source=spec.name, limit=spec.history)
        sizes = [float(o.size) for o in past if o.size]
        counts = [float(o.rows) for o in past if o.rows]
    for name, value, seen in (("size", size, sizes), ("row count", rows, counts)):
        if spec.kind == "sql" and name == "size":
            continue
        problem = history.compare(
            name=name,
            value=float(value),
            past=seen,
            max_drop=spec.max_drop,
            max_jump=spec.max_jump,
            min_history=spec.min_history,
        )
        if problem:
            report.problems.append(problem)


def _observe(
    ctx: Context, spec: SourceSpec, at: dt.datetime, *, status: str, files: int = 0, size: int = 0,
    rows: int | None = None, newest: dt.datetime | None = None, detail: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    sla = spec.fresh_within.total_seconds() if spec.fresh_within is not None else None
    row = SourceObservation(
        source=spec.name, observed_at=at, status=status, files=files, size=size, rows=rows, newest_at=newest,
        sla_seconds=sla, feeds=list(spec.feeds), detail=detail or {},
    )  # fmt: skip
    with ctx.db.session() as session:
        history.record(session=session, observation=row)
        return {
            "id": row.id, "status": status, "files": files, "size": size, "rows": rows,
            "newest_at": newest.isoformat() if newest else None, "sla_seconds": sla,
        }  # fmt: skip

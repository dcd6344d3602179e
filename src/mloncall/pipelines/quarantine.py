"""Quarantine: the rows a validate stage set aside, kept whole in the artifact store and indexed in the
metadata database until they are released into a dataset (after passing the checks again) or dropped.

A batch is two Parquet files under `quarantine/rows/PIPELINE/RUN-ID/` (`quarantine_table`: the rows whole,
and every failing cell with its check, column, value and source file), each written to a temporary name and
renamed, and one `quarantine_batches` row, inserted once both files are in place.

Release re-validates the rows (against the checks they failed, or newer ones the caller passes). Those that
pass become part of a new version of the target dataset: its latest version's rows followed by them,
registered through the data service (content-hashed, so releasing the same rows twice makes no second
version), its parent the version it extends. Those that still fail stay quarantined in the same batch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow
import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.core import clock
from mloncall.core.errors import CheckFailed, InvalidInput, NotFound
from mloncall.core.names import check_name
from mloncall.core.outcome import Check, Outcome
from mloncall.core.records import Record
from mloncall.data import service as data_service
from mloncall.pipelines import quarantine_table as tables
from mloncall.pipelines.checks import CheckedSchema, CheckResult, validate_frame
from mloncall.pipelines.quality_models import (
    QUARANTINE_MOVES,
    QuarantineBatchRow,
    QuarantinedFile,
    QuarantineEvent,
    QuarantineState,
)
from mloncall.stores.context import Context
from mloncall.stores.db import get_or_raise

#: A pipeline stage that sets aside more than this share of its rows fails, unless it declares otherwise.
DEFAULT_MAX_SHARE = 0.05


@dataclass
class QuarantineBatch(Record):
    """A batch as callers see it; `id` is None when there was nothing to set aside."""

    id: int | None
    pipeline: str
    run_id: str
    source_file: str
    state: str
    rows: int
    cells: int
    source_rows: int
    counts: dict[str, int]
    dataset: str | None = None
    rows_key: str | None = None
    failures_key: str | None = None
    released_rows: int = 0
    released_to: str | None = None
    created_at: dt.datetime | None = None
    created_by: str = ""

    @property
    def share(self) -> float:
        return self.rows / self.source_rows if self.source_rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "share": self.share}

    @classmethod
    def of(cls, row: QuarantineBatchRow) -> QuarantineBatch:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{n: getattr(row, n) for n in names})


@dataclass
class Release(Record):
    """What a release did: rows released into which dataset version, rows refused and why."""

    batch: QuarantineBatch
    released: int
    refused: int
    dataset_version: str | None
    refused_counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "batch": self.batch.to_dict()}


# --- setting rows aside ------------------------------------------------------------------------------------


def quarantine_rows(
    ctx: Context,
    *,
    pipeline: str,
    run_id: str,
    source_file: str,
    frame: pd.DataFrame,
    result: CheckResult,
    schema: Any = None,
    dataset: str | None = None,
    actor: str = "pipeline",
) -> QuarantineBatch:
    """Set aside the rows result found bad (both files written atomically, then the row indexing them);
    `schema` (what they were checked against) and `dataset` (where a release puts them) are kept with them."""
    check_name(pipeline, "pipeline name")
    if len(frame) != result.rows:
        raise InvalidInput(f"the check result covers {result.rows} rows but the frame has {len(frame)}")
    empty = QuarantineBatch(None, pipeline, run_id, source_file, "empty", 0, 0, result.rows, {})
    if result.bad_rows == 0:
        return empty
    checked = CheckedSchema.parse(schema).to_dict() if schema is not None else {}
    folder = f"quarantine/rows/{pipeline}/{_safe(run_id)}-{uuid.uuid4().hex[:8]}"
    rows = ctx.store.put_bytes(
        f"{folder}/rows.parquet",
        tables.parquet_bytes(tables.bad_rows_table(frame, result, source_file=source_file)),
    )
    cells = ctx.store.put_bytes(
        f"{folder}/failures.parquet",
        tables.parquet_bytes(tables.failures_table(result, source_file=source_file)),
    )
    try:
        with ctx.db.session() as session:
            row = QuarantineBatchRow(
                pipeline=pipeline, run_id=run_id, source_file=source_file, dataset=dataset,
                state=QUARANTINE_MOVES.check("a new batch", None, QuarantineState.HELD), rows=result.bad_rows,
                cells=result.bad_cells, source_rows=result.rows, counts=dict(result.counts), schema=checked,
                rows_key=rows.key, rows_sha256=rows.sha256, failures_key=cells.key, failures_sha256=cells.sha256,
                size=rows.size + cells.size, created_at=clock.now(), created_by=actor,
            )  # fmt: skip
            session.add(row)
            session.flush()
            _event(session, row, None, actor, f"{result.bad_rows} of {result.rows} rows failed their checks")
            return QuarantineBatch.of(row)
    except BaseException:
        ctx.store.delete(rows.key)
        ctx.store.delete(cells.key)
        raise


def share_check(
    result: CheckResult, *, max_share: float = DEFAULT_MAX_SHARE, name: str = "quarantine-share"
) -> Check:
    """The share of rows set aside as a check: FAILED above max_share (the stage should stop there)."""
    if not 0 <= max_share <= 1:
        raise InvalidInput(f"max_share must be between 0 and 1, got {max_share}")
    evidence = {
        "rows": result.rows,
        "bad_rows": result.bad_rows,
        "share": result.share_bad,
        "max_share": max_share,
    }
    if result.share_bad > max_share:
        reason = f"{result.bad_rows} of {result.rows} rows ({result.share_bad:.1%}) failed their checks: above {max_share:.1%}"
        return Check(name, Outcome.FAILED, reason, evidence)
    return Check(
        name,
        Outcome.SUCCESSFUL,
        f"{result.share_bad:.1%} of rows set aside (at most {max_share:.1%})",
        evidence,
    )


def require_share(result: CheckResult, *, max_share: float = DEFAULT_MAX_SHARE) -> Check:
    """share_check, raising CheckFailed when it fails."""
    check = share_check(result, max_share=max_share)
    if check.outcome is Outcome.FAILED:
        raise CheckFailed(check.reason, details=check.to_dict())
    return check


# --- reading -----------------------------------------------------------------------------------------------


def list_batches(
    *, session: Session, pipeline: str | None = None, state: str | None = None, limit: int = 100
) -> Sequence[QuarantineBatchRow]:
    """Batches, newest first, of one pipeline and in one state when named."""
    stmt = sa.select(QuarantineBatchRow).order_by(QuarantineBatchRow.id.desc()).limit(limit)
    if pipeline is not None:
        stmt = stmt.where(QuarantineBatchRow.pipeline == pipeline)
    if state is not None:
        if state not in set(QuarantineState):
            raise InvalidInput(f"unknown quarantine state {state!r}: use one of {', '.join(QuarantineState)}")
        stmt = stmt.where(QuarantineBatchRow.state == state)
    return session.scalars(stmt).all()


def list_files(*, session: Session, source: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Source files moved aside as corrupted, newest first: where each was, where it is kept, and why."""
    stmt = sa.select(QuarantinedFile).order_by(QuarantinedFile.id.desc()).limit(limit)
    if source is not None:
        stmt = stmt.where(QuarantinedFile.source == source)
    names = ("id", "source", "location", "key", "sha256", "size", "reason", "run_id")
    return [
        {**{n: getattr(f, n) for n in names}, "created_at": f.created_at.isoformat()}
        for f in session.scalars(stmt)
    ]


def get_batch(*, session: Session, batch_id: int) -> QuarantineBatchRow:
    return get_or_raise(session, QuarantineBatchRow, batch_id, what="quarantine batch")


def read_rows(ctx: Context, row: QuarantineBatchRow) -> pd.DataFrame:
    """The batch's rows whole, with `_row`, `_source_file` and `_failed`, after checking their sha256."""
    return tables.read_table(ctx.store.read_verified(row.rows_key, row.rows_sha256))


def read_failures(ctx: Context, row: QuarantineBatchRow) -> pd.DataFrame:
    """Every failing cell of the batch (row, column, check, value, source_file)."""
    return tables.read_table(ctx.store.read_verified(row.failures_key, row.failures_sha256))


# --- release and drop --------------------------------------------------------------------------------------


def release(
    ctx: Context, *, batch_id: int, into: str | None = None, schema: Any = None, actor: str = "cli"
) -> Release:
    """Re-validate the batch's rows and append those that pass to a new version of `into` (default: the
    dataset the batch was set aside for); CheckFailed if none pass, and nothing changes then."""
    with ctx.db.session() as session:
        row = get_batch(session=session, batch_id=batch_id)
        QUARANTINE_MOVES.check(f"quarantine batch {batch_id}", row.state, QuarantineState.RELEASED)
        target = into or row.dataset
        if not target:
            raise InvalidInput(f"quarantine batch {batch_id} names no dataset: say which one to release into")
        check_name(target, "dataset name")
        base = _latest(session, target)
        checked = _release_schema(row, schema)
        session.expunge(row)
    stored = read_rows(ctx, row)
    data = tables.data_columns(stored)
    result = validate_frame(data, checked)
    if result.column_problems.shape[0]:
        problems = "; ".join(f"{c.column}: {c.check}" for c in result.column_problems.itertuples())
        raise CheckFailed(f"quarantine batch {batch_id} does not fit the checks: {problems}")
    passing = data[result.valid]
    refused = int((~result.valid).sum())
    refused_counts = {str(k): int(v) for k, v in result.counts.items()}
    if passing.empty:
        raise CheckFailed(
            f"none of the {len(data)} rows of quarantine batch {batch_id} pass their checks yet "
            f"({', '.join(f'{k}: {v}' for k, v in refused_counts.items())}); fix the checks or drop the batch",
            details={"counts": refused_counts},
        )
    version = _append(
        ctx, target=target, base_id=base, rows=passing, checked=checked, batch_id=batch_id, actor=actor
    )
    return Release(
        batch=_after_release(ctx, batch_id, stored, result, released=len(passing), to=version, actor=actor),
        released=len(passing),
        refused=refused,
        dataset_version=version,
        refused_counts=refused_counts,
    )


def drop(ctx: Context, *, batch_id: int, reason: str = "", actor: str = "cli") -> QuarantineBatch:
    """Discard the batch: its row says dropped (and why), then its files are removed."""
    with ctx.db.session() as session:
        row = get_batch(session=session, batch_id=batch_id)
        before = row.state
        row.state = QUARANTINE_MOVES.check(f"quarantine batch {batch_id}", before, QuarantineState.DROPPED)
        _event(session, row, before, actor, reason or f"{row.rows} rows dropped")
        session.flush()
        out = QuarantineBatch.of(row)
    for key in (out.rows_key, out.failures_key):
        if key:
            ctx.store.delete(key)
    return out


def _latest(session: Session, name: str) -> int | None:
    """The id of the dataset's latest version, or None for a dataset with none yet."""
    try:
        return data_service.resolve(session=session, ref=name).id
    except NotFound:  # the dataset's first version
        return None


def _release_schema(row: QuarantineBatchRow, schema: Any) -> CheckedSchema:
    if schema is not None:
        return CheckedSchema.parse(schema)
    if row.schema:
        return CheckedSchema.parse(row.schema)
    raise InvalidInput(
        f"quarantine batch {row.id} was set aside without its checks: pass the checks to release it against"
    )


def _append(
    ctx: Context,
    *,
    target: str,
    base_id: int | None,
    rows: pd.DataFrame,
    checked: CheckedSchema,
    batch_id: int,
    actor: str,
) -> str:
    """Register `target`'s latest rows followed by rows as its next version; `NAME:VERSION` of it."""
    spec = checked.dataset
    if base_id is not None:
        with ctx.db.session() as session:
            base = data_service.get_version_by_id_or_raise(session=session, dataset_version_id=base_id)
            session.refresh(base, ["dataset"])
            session.expunge(base)
        earlier = data_service.read(store=ctx.store, dataset_version=base)
        frame = pd.concat([earlier, rows[list(earlier.columns)]], ignore_index=True)
        schema, parents, origin = base.schema, [base.id], f"{target}:{base.version}"
    else:
        frame, schema, parents, origin = rows[spec.columns], spec.model_dump(mode="json"), [], "nothing"
    dv = data_service.register(
        db=ctx.db, store=ctx.store, name=target, df=frame, schema=schema,
        source=f"quarantine batch {batch_id}: {len(rows)} rows released onto {origin}",
        created_by=actor, parents=parents,
    )  # fmt: skip
    return f"{target}:{dv.version}"


def _after_release(
    ctx: Context,
    batch_id: int,
    stored: pd.DataFrame,
    result: CheckResult,
    *,
    released: int,
    to: str,
    actor: str,
) -> QuarantineBatch:
    """The batch after a release: released, or still held with only the refused rows (files rewritten,
    each row still named by its position in the source file)."""
    refused = int((~result.valid).sum())
    with ctx.db.session() as session:
        row = get_batch(session=session, batch_id=batch_id)
        folder, source_file = row.rows_key.rsplit("/", 1)[0], row.source_file
    new_files: dict[str, Any] = {}
    if refused:
        new_files = _rewrite(ctx, folder, stored, result, source_file=source_file)
    with ctx.db.session() as session:
        row = get_batch(session=session, batch_id=batch_id)
        before = row.state
        state = QuarantineState.HELD if refused else QuarantineState.RELEASED
        row.state = QUARANTINE_MOVES.check(f"quarantine batch {batch_id}", before, state)
        row.released_rows += released
        row.released_to = to
        old = (row.rows_key, row.failures_key)
        if new_files:
            for k, v in new_files.items():
                setattr(row, k, v)
            row.rows, row.cells = refused, result.bad_cells
            row.counts = dict(result.counts)
        _event(session, row, before, actor, f"{released} rows released into {to}; {refused} still fail")
        session.flush()
        out = QuarantineBatch.of(row)
    for key in old if new_files else ():
        ctx.store.delete(key)
    return out


def _rewrite(
    ctx: Context, folder: str, stored: pd.DataFrame, result: CheckResult, *, source_file: str
) -> dict[str, Any]:
    """Files holding only the rows result refused, under new names (the old ones stay until the row moves)."""
    data = tables.data_columns(stored)
    origin = stored[tables.ROW].to_numpy(dtype=np.int64)
    table = tables.bad_rows_table(data, result, source_file=source_file)
    at = table.schema.get_field_index(tables.ROW)
    table = table.set_column(at, tables.ROW, pyarrow.array(origin[table[tables.ROW].to_numpy()]))
    failures = result.failures.copy()
    cells = failures["row"].notna().to_numpy()
    positions = failures["row"].to_numpy(dtype="float64", na_value=np.nan)
    mapped = np.where(cells, origin[np.where(cells, positions, 0).astype(np.int64)], 0)
    failures["row"] = pd.array(np.where(cells, mapped, 0), dtype="Int64")
    failures.loc[~cells, "row"] = pd.NA
    cells_table = tables.failures_table(
        dataclasses.replace(result, failures=failures), source_file=source_file
    )
    suffix = uuid.uuid4().hex[:8]
    rows = ctx.store.put_bytes(f"{folder}/rows-{suffix}.parquet", tables.parquet_bytes(table))
    cells_file = ctx.store.put_bytes(f"{folder}/failures-{suffix}.parquet", tables.parquet_bytes(cells_table))
    return {
        "rows_key": rows.key,
        "rows_sha256": rows.sha256,
        "failures_key": cells_file.key,
        "failures_sha256": cells_file.sha256,
        "size": rows.size + cells_file.size,
    }


def _event(session: Session, row: QuarantineBatchRow, before: str | None, actor: str, reason: str) -> None:
    session.add(
        QuarantineEvent(
            batch=row, at=clock.now(), actor=actor, from_state=before, to_state=row.state, reason=reason
        )
    )


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:64] or "run"

"""mloncall's side of a run: each stage's body with its record (status, timings, rows in and out, input
and output hashes, a log excerpt, the failure's class and fix), and the frames kept between stages.

Every record is written in its own short unit of work, so what a killed run did stays readable.
"""

from __future__ import annotations

import io
import os
import time
from typing import Any

import pandas as pd

from mloncall.core import clock
from mloncall.core.durations import parse_seconds
from mloncall.core.errors import IntegrityError
from mloncall.data.files import first_line
from mloncall.pipelines import extract, history, quarantine, schemadiff, stages, upstream
from mloncall.pipelines.checks import CheckResult, validate_frame
from mloncall.pipelines.failures import FailureClass, StageFailure, TransientError, fix_for
from mloncall.pipelines.quality_models import SourceObservation
from mloncall.pipelines.records import get_run_or_raise, last_good_run, move_stage, stage_of
from mloncall.pipelines.sources import SourceFile
from mloncall.pipelines.spec import Pipeline
from mloncall.pipelines.states import StageKind, StageState
from mloncall.stores.context import Context

#: The log excerpt kept per stage, in characters (the end of the log: where a failure is).
LOG_EXCERPT = 4000


def output_key(pipeline: str, run_id: int, stage: str) -> str:
    return f"pipelines/{pipeline}/runs/{run_id}/{stage}.parquet"


def frame_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue()


class Runner:
    """One run's stages, as the orchestrator calls them."""

    def __init__(self, ctx: Context, pipeline: Pipeline, run_id: int, *, actor: str, start: str) -> None:
        self.ctx = ctx
        self.pipeline = pipeline
        self.run_id = run_id
        self.actor = actor
        self.start = start
        self.events: list[str] = []
        self.logs: dict[str, list[str]] = {}
        self.outcome: dict[str, Any] = {}

    # --- what the orchestrator calls -------------------------------------------------------------------

    def start_frame(self) -> pd.DataFrame | None:
        index = [s.name for s in self.pipeline.stages].index(self.start)
        if index == 0:
            return None
        before = self.pipeline.stages[index - 1].name
        return self.load_output(before)

    def store_output(self, name: str, frame: pd.DataFrame) -> None:
        key = output_key(self.pipeline.name, self.run_id, name)
        stored = self.ctx.store.put_bytes(key, frame_bytes(frame))  # temp then rename: never half-written
        with self.ctx.db.session() as session:
            row = stage_of(get_run_or_raise(session=session, run_id=self.run_id), name)
            row.output_key, row.output_hash = key, stored.sha256

    def load_output(self, name: str) -> pd.DataFrame:
        with self.ctx.db.session() as session:
            row = stage_of(get_run_or_raise(session=session, run_id=self.run_id), name)
            key, digest = row.output_key, row.output_hash
        if key is None or digest is None:
            raise IntegrityError(f"stage {name} of pipeline run #{self.run_id} kept no output")
        return pd.read_parquet(io.BytesIO(self.ctx.store.read_verified(key, digest)), engine="pyarrow")

    def engine_log(self, line: str) -> None:
        self.events.append(line)

    def run_stage(self, name: str, frame: pd.DataFrame | None, *, attempt: int) -> pd.DataFrame:
        spec = self.pipeline.stage(name)
        self._begin(name, attempt, frame)
        started = time.monotonic()
        try:
            done, inputs = self._body(spec.kind, name, frame)
        except TransientError as exc:
            self._log(name, f"attempt {attempt}: transient: {exc.message}")
            if attempt >= self.pipeline.retries.attempts:
                self._fail(name, exc.failure, f"{exc.message} (after {attempt} attempts)", {}, started)
            else:
                self._note(name, "retrying")
            raise
        except StageFailure as exc:
            if spec.kind == StageKind.EXTRACT and exc.failure in _SOURCE_STATUS:
                self._observe(_SOURCE_STATUS[exc.failure], error=exc.message)
            if exc.failure == FailureClass.SCHEMA_MISMATCH and frame is not None:
                self._against_last_good(exc, frame)
            self._fail(name, exc.failure, exc.message, exc.details, started)
            raise
        except Exception as exc:  # an unforeseen error still gets a class: the stage's own
            failure = _class_of(spec.kind)
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {first_line(exc)}"
            self._fail(name, failure, message, {}, started)
            raise
        self._succeed(name, done, inputs, started, frame)
        return done.frame

    # --- the bodies ------------------------------------------------------------------------------------

    def _body(
        self, kind: StageKind, name: str, frame: pd.DataFrame | None
    ) -> tuple[stages.Done, dict[str, str]]:
        spec = self.pipeline.stage(name)
        if kind == StageKind.EXTRACT:
            got = extract.read(self.pipeline.source, self.ctx.settings.home, self._set_file_aside)
            log = [f"{n}: {got.rows.get(n, '?')} rows, sha256 {h[:16]}" for n, h in got.inputs.items()]
            log += [f"{q['location']} moved aside to {q['key']}: {q['reason']}" for q in got.quarantined]
            late = self._late(got.newest)
            if late:
                log.append(late)
            details = {"source_rows": got.rows, "profiles": schemadiff.profile_columns(got.frame)}
            if got.quarantined:
                details["quarantined_files"] = got.quarantined
            self._observe("stale" if late else "ok", got=got)
            return stages.Done(got.frame, log, details), got.inputs
        assert frame is not None
        inputs = self._upstream_inputs(name)
        if kind == StageKind.VALIDATE:
            return stages.validate(frame, self.pipeline, spec, set_aside=self._set_aside), inputs
        if kind == StageKind.TRANSFORM:
            return stages.transform(frame, spec), inputs
        done = stages.load(self.ctx, frame, self.pipeline, source=f"pipeline {self.pipeline.name} run #{self.run_id}",
                           actor=self.actor)  # fmt: skip
        self.outcome.update(done.details)
        return done, inputs

    def _upstream_inputs(self, name: str) -> dict[str, str]:
        names = [s.name for s in self.pipeline.stages]
        before = names[names.index(name) - 1]
        with self.ctx.db.session() as session:
            row = stage_of(get_run_or_raise(session=session, run_id=self.run_id), before)
            return {f"stage:{before}": row.output_hash or ""}

    def _set_file_aside(self, found: SourceFile, data: bytes, reason: str) -> dict[str, Any]:
        """Move a corrupted source file into the quarantine area, recorded with its reason and this run."""
        return upstream.quarantine_file(
            self.ctx, self.pipeline.name, found, data, reason=reason, run_id=str(self.run_id), at=clock.now()
        )

    def _late(self, newest: Any) -> str:
        """Why the source is late against the pipeline's freshness SLA ('' when it is fresh or undated)."""
        if newest is None or self.pipeline.freshness is None:
            return ""
        age = (clock.now() - newest).total_seconds()
        if age <= parse_seconds(self.pipeline.freshness):
            return ""
        return f"late: the newest source data is {age:.0f}s old (freshness SLA {self.pipeline.freshness})"

    def _observe(self, status: str, *, got: extract.Extracted | None = None, error: str = "") -> None:
        """The source as this run saw it, in its history (what freshness and the retraining block read)."""
        sla = parse_seconds(self.pipeline.freshness) if self.pipeline.freshness is not None else None
        detail: dict[str, Any] = {"run": self.run_id}
        if error:
            detail["error"] = error
        if got is not None and got.quarantined:
            detail["quarantined"] = len(got.quarantined)
        row = SourceObservation(
            source=self.pipeline.name, observed_at=clock.now(), status=status,
            files=len(got.inputs) if got else 0, size=got.size if got else 0, rows=len(got.frame) if got else None,
            newest_at=got.newest if got else None, sla_seconds=sla, feeds=[self.pipeline.dataset], detail=detail,
        )  # fmt: skip
        with self.ctx.db.session() as session:
            history.record(session=session, observation=row)

    def _set_aside(
        self, frame: pd.DataFrame, result: CheckResult, schema: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Quarantine the bad rows, one batch per source file they came from (rows numbered in their file)."""
        spans = self._file_spans(len(frame))
        if len(spans) == 1:
            parts = [(spans[0][0], frame, result)]
        else:
            parts = []
            for name, start, end in spans:
                part = frame.iloc[start:end].reset_index(drop=True)
                parts.append((name, part, validate_frame(part, schema)))
        batches = []
        for name, part, found in parts:
            if found.bad_rows == 0:
                continue
            batch = quarantine.quarantine_rows(
                self.ctx, pipeline=self.pipeline.name, run_id=str(self.run_id), source_file=name, frame=part,
                result=found, schema=schema, dataset=self.pipeline.dataset, actor=self.actor,
            )  # fmt: skip
            batches.append({"id": batch.id, "source_file": name, "rows": batch.rows, "cells": batch.cells})
        return batches

    def _file_spans(self, rows: int) -> list[tuple[str, int, int]]:
        """Each source file's rows in the extracted frame (in file order), as recorded by the extract stage."""
        with self.ctx.db.session() as session:
            first = get_run_or_raise(session=session, run_id=self.run_id).stages[0]
            per_file = dict((first.details or {}).get("source_rows") or {})
        if not per_file or sum(per_file.values()) != rows:
            src = self.pipeline.source
            return [(str(src.files or src.s3 or "the source query"), 0, rows)]
        spans, start = [], 0
        for name, n in per_file.items():
            spans.append((str(name), start, start + int(n)))
            start += int(n)
        return spans

    def _against_last_good(self, exc: StageFailure, frame: pd.DataFrame) -> None:
        """Add the schema diff against the last good run's extracted columns to a schema mismatch."""
        with self.ctx.db.session() as session:
            good = last_good_run(session=session, pipeline=self.pipeline.name)
            profiles = (good.stages[0].details or {}).get("profiles") if good is not None else None
            good_id = good.id if good is not None else None
        if not profiles:
            return
        diff = schemadiff.diff_columns(frame, profiles)
        exc.details["schema_diff"] = {**diff.to_dict(), "against_run": good_id}
        if not diff.ok:
            exc.message += f"; against the last good run #{good_id}: " + "; ".join(diff.messages())

    # --- the records -----------------------------------------------------------------------------------

    def _log(self, name: str, line: str) -> None:
        self.logs.setdefault(name, []).append(f"{clock.now().isoformat(timespec='seconds')} {line}")

    def _excerpt(self, name: str) -> str:
        return "\n".join(self.logs.get(name, []))[-LOG_EXCERPT:]

    def _begin(self, name: str, attempt: int, frame: pd.DataFrame | None) -> None:
        self._log(name, f"attempt {attempt} started in pid {os.getpid()}")
        with self.ctx.db.session() as session:
            row = stage_of(get_run_or_raise(session=session, run_id=self.run_id), name)
            fields: dict[str, Any] = {"attempts": attempt, "rows_in": None if frame is None else len(frame)}
            if row.state == StageState.PENDING:
                fields["started_at"] = clock.now()
            move_stage(
                session, row, StageState.RUNNING, actor=self.actor, reason=f"attempt {attempt}", **fields
            )

    def _note(self, name: str, reason: str) -> None:
        with self.ctx.db.session() as session:
            row = stage_of(get_run_or_raise(session=session, run_id=self.run_id), name)
            row.log = self._excerpt(name)
            move_stage(session, row, StageState.RUNNING, actor=self.actor, reason=reason)

    def _succeed(self, name: str, done: stages.Done, inputs: dict[str, str], started: float,
                 frame: pd.DataFrame | None) -> None:  # fmt: skip
        for line in done.log:
            self._log(name, line)
        with self.ctx.db.session() as session:
            row = stage_of(get_run_or_raise(session=session, run_id=self.run_id), name)
            rows_in = sum(done.details.get("source_rows", {}).values()) if frame is None else len(frame)
            move_stage(
                session, row, StageState.SUCCEEDED, actor=self.actor, reason=done.log[-1] if done.log else "",
                finished_at=clock.now(), seconds=time.monotonic() - started, rows_in=rows_in,
                rows_out=len(done.frame), inputs=inputs, log=self._excerpt(name), details={**row.details, **done.details},
            )  # fmt: skip

    def _fail(self, name: str, failure: FailureClass, message: str, details: dict[str, Any],
              started: float) -> None:  # fmt: skip
        fix = fix_for(failure, pipeline=self.pipeline.name, stage=name)
        self._log(name, f"failed ({failure}): {message}")
        self.outcome.update(
            {"failed_stage": name, "failure_class": str(failure), "error": message, "fix": fix}
        )
        with self.ctx.db.session() as session:
            row = stage_of(get_run_or_raise(session=session, run_id=self.run_id), name)
            move_stage(
                session, row, StageState.FAILED, actor=self.actor, reason=message, finished_at=clock.now(),
                seconds=time.monotonic() - started, failure_class=str(failure), error=message,
                details={**row.details, **details, "fix": fix}, log=self._excerpt(name),
            )  # fmt: skip


#: The source's status in its history when the extract stage fails for it.
_SOURCE_STATUS = {FailureClass.MISSING_SOURCE: "missing", FailureClass.UNREADABLE_SOURCE: "corrupt"}


def _class_of(kind: StageKind) -> FailureClass:
    return {
        StageKind.EXTRACT: FailureClass.UNREADABLE_SOURCE,
        StageKind.VALIDATE: FailureClass.CHECK_FAILURE,
        StageKind.TRANSFORM: FailureClass.TRANSFORMATION_ERROR,
        StageKind.LOAD: FailureClass.LOAD_FAILURE,
    }[kind]

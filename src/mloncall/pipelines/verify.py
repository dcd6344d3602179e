"""Read-only checks of a pipeline for runbook 4: try its stages on the source as it is now (nothing
recorded, nothing loaded), and confirm a run's integrity by hashes and row counts against the source."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mloncall.core.errors import MloncallError
from mloncall.data import service as data_service
from mloncall.pipelines import extract, stages
from mloncall.pipelines.failures import StageFailure, TransientError
from mloncall.pipelines.records import get_run_or_raise
from mloncall.pipelines.spec import Pipeline
from mloncall.pipelines.states import StageKind
from mloncall.stores.context import Context


@dataclass
class Probe:
    """How far the stages before the load get on today's source: each stage's rows, or its failure."""

    passed: list[dict[str, Any]] = field(default_factory=list)
    failed_stage: str | None = None
    failure_class: str | None = None
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failed_stage is None


def probe(ctx: Context, pipeline: Pipeline) -> Probe:
    """Extract, validate and transform in memory with the current declaration; stop at the first failure."""
    out = Probe()
    frame: pd.DataFrame | None = None
    for stage in pipeline.stages:
        if stage.kind == StageKind.LOAD:
            break
        try:
            if stage.kind == StageKind.EXTRACT:
                frame = extract.read(pipeline.source, ctx.settings.home).frame
            elif stage.kind == StageKind.VALIDATE:
                assert frame is not None
                frame = stages.validate(frame, pipeline, stage).frame
            else:
                assert frame is not None
                frame = stages.transform(frame, stage).frame
        except (StageFailure, TransientError) as exc:
            out.failed_stage, out.failure_class, out.error = stage.name, str(exc.failure), exc.message
            out.details = getattr(exc, "details", {})
            return out
        out.passed.append({"stage": stage.name, "rows": len(frame)})
    return out


def _source_rows(ctx: Context, pipeline: Pipeline) -> tuple[dict[str, str], int]:
    got = extract.read(pipeline.source, ctx.settings.home)
    return got.inputs, len(got.frame)


def integrity(ctx: Context, pipeline: Pipeline, run_id: int) -> tuple[bool, list[str], dict[str, Any]]:
    """A succeeded run's chain, by hash and row count: the source as it is now is what the extract read
    (same files, same sha256, same rows); each stage read exactly its predecessor's output and row count;
    the dataset version holds the load's rows and its snapshot verifies."""
    problems: list[str] = []
    with ctx.db.session() as session:
        run = get_run_or_raise(session=session, run_id=run_id)
        rows = [(s.name, s.kind, s.inputs, s.output_hash, s.rows_in, s.rows_out) for s in run.stages]
        dataset_version_id = run.dataset_version_id
        dv = (
            data_service.get_version_by_id_or_raise(session=session, dataset_version_id=dataset_version_id)
            if dataset_version_id
            else None
        )
        if dv is not None:
            session.expunge(dv)
    try:
        now_inputs, now_rows = _source_rows(ctx, pipeline)
    except (StageFailure, TransientError) as exc:
        return False, [f"the source cannot be read now: {exc.message}"], {}
    extract_inputs, extract_rows_in = rows[0][2], rows[0][4]
    if now_inputs != extract_inputs:
        problems.append(f"the source now differs from what run #{run_id} read")
    if extract_rows_in != now_rows:
        problems.append(f"the source holds {now_rows} rows, the extract read {extract_rows_in}")
    for (before, _k, _i, out_hash, _ri, rows_out), (
        name,
        _k2,
        inputs,
        _o,
        rows_in,
        _ro,
    ) in itertools.pairwise(rows):
        if inputs.get(f"stage:{before}") != out_hash:
            problems.append(f"stage {name} did not read stage {before}'s output")
        if rows_in != rows_out:
            problems.append(f"stage {name} read {rows_in} rows, {before} wrote {rows_out}")
    evidence: dict[str, Any] = {"source_rows": now_rows, "inputs": now_inputs, "stages": [
        {"stage": r[0], "rows_in": r[4], "rows_out": r[5], "output": (r[3] or "")[:16]} for r in rows]}  # fmt: skip
    if dv is None:
        problems.append(f"run #{run_id} registered no dataset version")
    else:
        try:
            stored = data_service.read(store=ctx.store, dataset_version=dv)
        except MloncallError as exc:
            problems.append(exc.message)
        else:
            if len(stored) != rows[-1][5] or dv.row_count != len(stored):
                problems.append(f"the dataset version holds {len(stored)} rows, the load wrote {rows[-1][5]}")
            evidence["dataset"] = {"version": dv.version, "rows": len(stored), "sha256": dv.sha256[:16]}
    return not problems, problems, evidence

"""What each stage kind does to the frame it is given: validate it against the declared schema and checks,
transform it with the registered functions, load it as the dataset's next content-hashed version.

Each raises `StageFailure` with its class and evidence, or `TransientError` for what is worth retrying.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mloncall.core.errors import InvalidInput, MloncallError, StoreUnavailable
from mloncall.core.outcome import Outcome
from mloncall.data import service as data_service
from mloncall.data import validation as data_validation
from mloncall.data.validation import DataValidationError
from mloncall.pipelines import quarantine, transforms
from mloncall.pipelines.checks import CheckResult, validate_frame
from mloncall.pipelines.failures import FailureClass, StageFailure, TransientError
from mloncall.pipelines.spec import Pipeline, Stage
from mloncall.stores.context import Context

#: At most this many offending rows are kept in a failure's evidence.
MAX_ROWS = 20

#: Sets bad rows aside (the frame checked, what the checks found; the row schema they were checked
#: against) and says where they went, one dict per quarantine batch.
SetAside = Callable[[pd.DataFrame, CheckResult, dict[str, Any]], list[dict[str, Any]]]


@dataclass
class Done:
    """What a stage produced: its output frame, its log lines, and evidence for the record."""

    frame: pd.DataFrame
    log: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def _schema_mismatch(frame: pd.DataFrame, pipeline: Pipeline, stage: Stage) -> None:
    expected = pipeline.schema.columns
    present = [str(c) for c in frame.columns]
    missing = [c for c in expected if c not in present]
    extra = [c for c in present if c not in expected]
    problems = []
    renamed = {}
    for column in missing:
        close = difflib.get_close_matches(column, extra, n=1, cutoff=0.6)
        if close:
            renamed[close[0]] = column
            problems.append(f"column {column!r} is missing and {close[0]!r} is new (renamed?)")
        else:
            problems.append(f"column {column!r} is missing")
    problems += [f"column {c!r} is not in the schema" for c in extra if c not in renamed]
    if problems:
        hint = f"; map it with rename: {renamed} in stage {stage.name}" if renamed else ""
        raise StageFailure(
            FailureClass.SCHEMA_MISMATCH,
            "; ".join(problems) + hint,
            {"missing": missing, "unexpected": extra, "renamed": renamed},
        )
    for feature in pipeline.schema.feature_names:
        values = frame[feature]
        text = values.dropna().astype("str").str.strip()
        text = text[text != ""]
        if len(text) and pd.to_numeric(text, errors="coerce").isna().all():
            raise StageFailure(
                FailureClass.SCHEMA_MISMATCH,
                f"column {feature!r} changed type: numbers expected, found text such as {text.iloc[0]!r}",
                {"changed_type": {feature: {"expected": "float64", "found": str(values.dtype)}}},
            )


def _declared_checks(frame: pd.DataFrame, stage: Stage) -> None:
    for check in stage.checks:
        kind = check.get("check")
        if kind == "min_rows" and len(frame) < int(check.get("value", 1)):
            raise StageFailure(
                FailureClass.CHECK_FAILURE,
                f"check min_rows: {len(frame)} rows, at least {check['value']} declared",
                {"check": "min_rows", "rows": len(frame)},
            )
        if kind not in ("min_rows",):
            raise StageFailure(FailureClass.CHECK_FAILURE, f"unknown check {kind!r} in stage {stage.name}")


def row_schema(pipeline: Pipeline) -> dict[str, Any]:
    """The schema every row is checked against: the declared ranges as they are (no margin), and any label
    (the transforms normalise labels; the load stage checks them)."""
    schema: dict[str, Any] = {**pipeline.schema.model_dump(mode="json"), "range_margin": 0.0}
    if schema.get("target"):
        schema["target"] = {**schema["target"], "classes": None}
    return schema


def validate(
    frame: pd.DataFrame, pipeline: Pipeline, stage: Stage, *, set_aside: SetAside | None = None
) -> Done:
    """The declared schema (columns, types: a mismatch) and every value (ranges, empty cells: a check
    failure, each failing cell named), then the declared checks. With `on_bad_rows: quarantine`, the bad
    rows are set aside instead, and the run goes on with the rest while their share stays within
    `max_quarantined_share` (a check failure above it, nothing set aside)."""
    renamed = frame.rename(columns=stage.rename) if stage.rename else frame
    _schema_mismatch(renamed, pipeline, stage)
    schema = row_schema(pipeline)
    log: list[str] = []
    details: dict[str, Any] = {}
    if stage.on_bad_rows == "quarantine":
        renamed, log, details = _quarantine_bad_rows(renamed, schema, stage, set_aside)
    try:
        clean = data_validation.validate(
            renamed, schema=schema, source="the extracted rows", range_margin=0.0
        )
    except DataValidationError as exc:
        failures = [
            {"row": f.row, "column": f.column, "check": f.reason, "value": f.value} for f in exc.failures
        ]
        raise StageFailure(
            FailureClass.CHECK_FAILURE, exc.message, {"failures": failures[:MAX_ROWS], "total": exc.total}
        ) from None
    _declared_checks(clean, stage)
    log.append(f"{len(clean)} rows match the schema ({', '.join(pipeline.schema.columns)})")
    if stage.rename:
        log.append(f"renamed {stage.rename}")
    return Done(clean, log, details)


def _quarantine_bad_rows(
    frame: pd.DataFrame, schema: dict[str, Any], stage: Stage, set_aside: SetAside | None
) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """The rows that pass, after the others were set aside; the share set aside is itself a check."""
    result = validate_frame(frame, schema)
    share = quarantine.share_check(result, max_share=stage.max_quarantined_share)
    details: dict[str, Any] = {"quarantine_share": share.to_dict()}
    if share.outcome is Outcome.FAILED:
        cells = result.failures[result.failures["row"].notna()].head(MAX_ROWS)
        failures = [
            {"row": int(r.row) + 1, "column": r.column, "check": r.check, "value": r.value}
            for r in cells.itertuples()
        ]
        raise StageFailure(
            FailureClass.CHECK_FAILURE,
            f"check quarantine-share: {share.reason} (on_bad_rows: quarantine in stage {stage.name}); "
            "nothing was set aside",
            {**details, "failures": failures, "total": result.bad_cells},
        )
    if result.bad_rows == 0:
        return frame, [], details
    if set_aside is None:
        raise StageFailure(
            FailureClass.CHECK_FAILURE, f"stage {stage.name} has nowhere to set bad rows aside"
        )
    batches = set_aside(frame, result, schema)
    details["quarantined"] = batches
    log = [
        f"{result.bad_rows} of {result.rows} rows ({result.share_bad:.1%}) failed their checks and were set "
        f"aside in quarantine batch(es) {', '.join(str(b['id']) for b in batches)}"
    ]
    return frame[result.valid].reset_index(drop=True), log, details


def _offending(frame: pd.DataFrame, fn: str, args: dict[str, Any], exc: Exception) -> dict[int, str]:
    """The rows a transform raises on: from a `RowError`, or by trying the first rows one at a time. A
    declaration the transform cannot take (InvalidInput) blames no row: every row would fail alike."""
    if isinstance(exc, transforms.RowError):
        return exc.rows
    if isinstance(exc, InvalidInput):
        return {}
    found: dict[int, str] = {}
    for i in range(min(len(frame), 2000)):
        try:
            transforms.apply(frame.iloc[[i]].reset_index(drop=True), fn, args)
        except Exception as row_exc:
            found[i] = str(row_exc)
            if len(found) >= MAX_ROWS:
                break
    return found


def transform(frame: pd.DataFrame, stage: Stage) -> Done:
    """Each declared step in order; a step raising is a transformation error listing its offending rows."""
    out, log = frame, []
    for step in stage.steps:
        before = len(out)
        try:
            out = transforms.apply(out, step.fn, step.args).reset_index(drop=True)
        except Exception as exc:
            rows = _offending(out, step.fn, step.args, exc)
            shown = [
                {"row": i + 1, "reason": why, "values": _plain(out.iloc[i].to_dict())}
                for i, why in list(rows.items())[:MAX_ROWS]
            ]
            where = f" on {len(rows)} row(s): " + ", ".join(str(r["row"]) for r in shown) if rows else ""
            raise StageFailure(
                FailureClass.TRANSFORMATION_ERROR,
                f"transform {step.fn} failed{where}: {getattr(exc, 'message', exc)}",
                {"fn": step.fn, "rows": shown, "offending": len(rows)},
            ) from None
        log.append(f"{step.fn}: {before} -> {len(out)} rows")
    return Done(out, log)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()}


def load(ctx: Context, frame: pd.DataFrame, pipeline: Pipeline, *, source: str, actor: str) -> Done:
    """Register the rows as the dataset's next version, or find the version that already holds them: a
    re-run never makes a duplicate, and the snapshot is visible only once its row committed."""
    target = pipeline.schema.target.name if pipeline.schema.target is not None else None
    try:
        schema = data_validation.infer_schema(frame, target=target or "", source="the transformed rows")
        dv = data_service.register(
            db=ctx.db, store=ctx.store, name=pipeline.dataset, df=frame, schema=schema, source=source,
            created_by=actor,
        )  # fmt: skip
    except DataValidationError as exc:
        raise StageFailure(FailureClass.CHECK_FAILURE, exc.message, {"failures": exc.details}) from None
    except StoreUnavailable as exc:
        raise TransientError(FailureClass.LOAD_FAILURE, exc.message) from None
    except MloncallError as exc:
        raise StageFailure(FailureClass.LOAD_FAILURE, exc.message) from None
    ref = f"{pipeline.dataset}:{dv.version}"
    return Done(
        frame,
        [f"registered {ref} ({dv.row_count} rows, content hash {dv.content_hash[:16]})"],
        {"dataset_version_id": dv.id, "dataset": ref, "content_hash": dv.content_hash, "rows": dv.row_count},
    )

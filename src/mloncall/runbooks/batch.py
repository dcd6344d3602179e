"""The batch half of runbook 6: a pipeline's source checked as a batch, beside the live traffic checks.

The source is late (its freshness SLA), missing, or corrupted (an unreadable file, set aside with its
reason by the upstream checks), or its rows carry out-of-range or bad values (their share against the
runbook's `max_share`, as the quarantine would count them).
"""

from __future__ import annotations

from typing import Any

from mloncall.core.errors import MloncallError
from mloncall.core.outcome import Check, Outcome
from mloncall.pipelines import checks, upstream
from mloncall.pipelines import spec as pipeline_spec
from mloncall.pipelines.spec import Pipeline
from mloncall.runbooks.runcontext import RunContext


def source_spec(pipeline: Pipeline, home: Any) -> upstream.SourceSpec:
    """The upstream checks' view of a pipeline's declared source."""
    src = pipeline.source
    body: dict[str, Any] = {"name": pipeline.name, "on_corrupt": "quarantine", "feeds": [pipeline.dataset]}
    if src.files is not None:
        path = src.files if src.files.startswith("/") else str(home / src.files)
        body.update(kind="file", path=path)
    elif src.s3 is not None:
        body.update(kind="s3", path=src.s3)
    else:
        body.update(kind="sql", url=src.url, query=src.sql)
    if pipeline.freshness is not None and src.sql is None:
        body["fresh_within"] = pipeline.freshness
    return upstream.parse_spec(body)


def batch(rc: RunContext) -> Check:
    """0. The batch source, when a pipeline is named: fresh, present, parseable, and its bad-row share."""
    name = rc.params.get("pipeline")
    if not name:
        return Check(
            "batch", Outcome.SUCCESSFUL, "no batch source named (--param pipeline=NAME): live checks only"
        )
    pipeline = pipeline_spec.get(rc.ctx.settings, str(name))
    try:
        report = upstream.check_source(rc.ctx, source_spec(pipeline, rc.ctx.settings.home))
    except MloncallError as exc:
        return Check("batch", Outcome.FAILED, f"source of {name}: {exc.message}", {"problems": [exc.message]})
    schema = {**pipeline.data_schema, "range_margin": 0.0}
    if schema.get("target"):
        schema["target"] = {**schema["target"], "classes": None}
    frame = report.frame
    result = checks.validate_frame(frame, schema) if len(frame) else None
    share = result.share_bad if result is not None else 0.0
    problems = list(report.problems)
    problems += [f"{q.get('location', q)} set aside: {q.get('reason', '')}" for q in report.quarantined]
    if share > rc.params["max_share"]:
        problems.append(
            f"{share:.1%} of its {len(frame)} rows fail the schema's checks (max {rc.params['max_share']:.0%})"
        )
    evidence = {**report.to_dict(), "bad_share": share, "problems": problems,
                "failures": result.summary() if result is not None else {}}  # fmt: skip
    if problems:
        return Check("batch", Outcome.FAILED, f"batch source {name}: " + "; ".join(problems), evidence)
    return Check(
        "batch", Outcome.SUCCESSFUL, f"batch source {name}: fresh, readable, {share:.1%} bad rows", evidence
    )

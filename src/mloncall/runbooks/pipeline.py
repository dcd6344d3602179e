"""Runbook 4, `pipeline-failure --param pipeline=NAME`: a data pipeline feeding training or inference failed.

Identify the failure (the failed run, its stage, its class and the fix to try), check the upstream source
(there, unchanged since the failure or not, fresh), validate schema and transformations on today's source
(nothing loaded), re-run from the failed stage once it is repaired (or whole, when the upstream changed and
`full_if_changed` says so), validate the output, and watch the downstream: nothing blocked, and a `retrain`
dry run of every model trained on the dataset reads the new version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mloncall.core.errors import Conflict, MloncallError
from mloncall.core.outcome import Check, Outcome
from mloncall.data import service as data_service
from mloncall.pipelines import downstream, records, service, spec, verify
from mloncall.pipelines.failures import fix_for
from mloncall.pipelines.states import RunState
from mloncall.runbooks.runcontext import RunContext
from mloncall.runbooks.spec import Criterion, Param, Runbook, Step
from mloncall.runbooks.states import StepKind
from mloncall.training.dryrun import retrain_dry_run


def _name(rc: RunContext) -> str:
    return str(rc.params["pipeline"])


def _target(params: Mapping[str, Any]) -> str:
    return f"pipeline:{params['pipeline']}"


def _ok(flag: bool) -> Outcome:
    return Outcome.SUCCESSFUL if flag else Outcome.FAILED


def identify(rc: RunContext) -> Check:
    """1. The latest run of the pipeline: failed or interrupted at which stage, in which class, the fix."""
    spec.get(rc.ctx.settings, _name(rc))
    with rc.ctx.db.session() as s:
        run = records.latest_run(session=s, pipeline=_name(rc))
        if run is None:
            return Check("identify", Outcome.FAILED, f"pipeline {_name(rc)} has never run: nothing failed")
        records.reap(s, run)
        stage = records.stage_of(run, run.failed_stage) if run.failed_stage else None
        evidence = {
            "run": run.id, "state": run.state, "stage": run.failed_stage, "class": run.failure_class,
            "error": run.error, "fix": run.fix, "rows": (stage.details or {}).get("rows", []) if stage else [],
        }  # fmt: skip
        if run.state not in (RunState.FAILED, RunState.INTERRUPTED):
            return Check(
                "identify",
                Outcome.FAILED,
                f"run #{run.id} of {_name(rc)} {run.state}: nothing failed",
                evidence,
            )
    return Check(
        "identify", Outcome.SUCCESSFUL,
        f"run #{evidence['run']} {evidence['state']} at stage {evidence['stage']} "
        f"({evidence['class'] or 'interrupted'}): {evidence['error']}", evidence,
    )  # fmt: skip


def upstream(rc: RunContext) -> Check:
    """2. The source: it exists, whether it changed since the failed run, and whether it is fresh."""
    pipeline = spec.get(rc.ctx.settings, _name(rc))
    run_id = rc.evidence_of("identify").get("run")
    health = downstream.health(rc.ctx, pipeline)
    now_wrong, newest = downstream.live_source(rc.ctx, pipeline)
    stale = now_wrong + [r for r in health.reasons if "freshness" in r and r not in now_wrong]
    changed: list[str] = []
    if run_id:
        with rc.ctx.db.session() as s:
            failed = records.get_run_or_raise(session=s, run_id=int(run_id))
            _ = [st.inputs for st in failed.stages]
            s.expunge(failed)
        if failed.failed_stage and failed.failed_stage != pipeline.stages[0].name:
            changed, _reused = service.changed_inputs(rc.ctx, pipeline, failed)
    evidence = {
        "stale_or_missing": stale,
        "changed_since_failure": changed,
        "newest": newest.isoformat() if newest else health.to_dict()["newest_source"],
    }
    if stale:
        return Check("upstream", Outcome.FAILED, "; ".join(stale), evidence)
    reason = (
        f"source present; changed since the failure: {'; '.join(changed)}" if changed
        else "source present and, for the stages a re-run skips, unchanged since the failure"
    )  # fmt: skip
    return Check("upstream", Outcome.SUCCESSFUL, reason, evidence)


def validate(rc: RunContext) -> Check:
    """3. Schema and transformations on today's source with today's declaration (nothing recorded or loaded)."""
    pipeline = spec.get(rc.ctx.settings, _name(rc))
    found = verify.probe(rc.ctx, pipeline)
    evidence = {"passed": found.passed, "stage": found.failed_stage, "class": found.failure_class,
                "error": found.error, "details": found.details}  # fmt: skip
    if found.ok:
        return Check("validate", Outcome.SUCCESSFUL, f"schema and transforms pass: {found.passed}", evidence)
    fix = fix_for(str(found.failure_class), pipeline=pipeline.name, stage=str(found.failed_stage))
    evidence["fix"] = fix
    return Check(
        "validate",
        Outcome.FAILED,
        f"stage {found.failed_stage} fails ({found.failure_class}): {found.error}",
        evidence,
    )


def _question(rc: RunContext) -> str:
    found = rc.evidence_of("identify")
    return (
        f"Run #{found.get('run')} failed at {found.get('stage')} ({found.get('class') or 'interrupted'}). "
        f"Fix to try: {found.get('fix') or 're-run it'}. Once repaired, re-run {_name(rc)} from the failed stage?"
    )


def rerun(rc: RunContext) -> Check:
    """4. Re-run from the failed stage (its skipped inputs proven unchanged), or whole if they changed and
    `full_if_changed` allows it."""
    failed = rc.evidence_of("identify").get("run")
    try:
        new_id = service.rerun_from_failed(rc.ctx, _name(rc), actor=rc.actor, run_id=failed)
        how = "from the failed stage"
    except Conflict as exc:
        if not rc.params["full_if_changed"] or not (exc.details or {}).get("changed"):
            return Check("rerun", Outcome.FAILED, exc.message, {"refused": exc.details})
        new_id = service.run(rc.ctx, _name(rc), actor=rc.actor)
        how = f"whole ({'; '.join(exc.details['changed'])} changed)"
    rc.progress(run=new_id)
    result = service.run_read(rc.ctx, new_id)
    evidence = {"run": new_id, "state": result.state, "how": how, "failed_stage": result.failed_stage,
                "class": result.failure_class}  # fmt: skip
    if result.state != RunState.SUCCEEDED:
        return Check(
            "rerun",
            Outcome.FAILED,
            f"run #{new_id} {result.state} at {result.failed_stage}: {result.error}",
            evidence,
        )
    return Check("rerun", Outcome.SUCCESSFUL, f"run #{new_id} ({how}) succeeded", evidence)


def _new_run(rc: RunContext) -> int | None:
    run = rc.evidence_of("rerun").get("run")
    return int(run) if run else None


def output(rc: RunContext) -> Check:
    """5. The new run's output: validated, and whole by hashes and row counts against the source."""
    run_id = _new_run(rc)
    if run_id is None:
        return Check("output", Outcome.FAILED, "no re-run to validate")
    pipeline = spec.get(rc.ctx.settings, _name(rc))
    ok, problems, evidence = verify.integrity(rc.ctx, pipeline, run_id)
    reason = "; ".join(problems) or (
        f"source ({evidence['source_rows']} rows) -> dataset version {evidence.get('dataset', {}).get('version')}: "
        "hashes and row counts agree stage by stage"
    )
    return Check("output", _ok(ok), reason, evidence)


def _consumers(rc: RunContext) -> list[str]:
    pipeline = spec.get(rc.ctx.settings, _name(rc))
    with rc.ctx.db.session() as s:
        return sorted(
            {c.model for c in downstream.consumers(session=s, dataset=pipeline.dataset) if c.monitored}
        )


def monitor(rc: RunContext) -> Check:
    """6. Downstream: the source blocks nothing, and a `retrain` dry run of each model trained on the dataset
    reads the new version."""
    pipeline = spec.get(rc.ctx.settings, _name(rc))
    health = downstream.health(rc.ctx, pipeline)
    run_id = _new_run(rc)
    read = service.run_read(rc.ctx, run_id) if run_id else None
    with rc.ctx.db.session() as s:
        dv = None
        if read is not None and read.dataset_version_id:
            dv_row = data_service.get_version_by_id_or_raise(
                session=s, dataset_version_id=read.dataset_version_id
            )
            dv = data_service.ref_of(dv_row)
    dry: dict[str, Any] = {}
    for model in _consumers(rc):
        try:
            dry[model] = retrain_dry_run(ctx=rc.ctx, name=model, dataset=dv)
        except MloncallError as exc:
            dry[model] = {"error": exc.message}
    evidence = {"health": health.to_dict(), "dataset": dv, "dry_runs": dry}
    failed = [m for m, d in dry.items() if "error" in d]
    if health.blocked or dv is None or failed:
        why = (
            health.reasons + [f"{m}: {dry[m]['error']}" for m in failed] + ([] if dv else ["no new version"])
        )
        return Check("monitor", Outcome.FAILED, "; ".join(why), evidence)
    if not dry:
        return Check(
            "monitor", Outcome.INCONCLUSIVE, f"{dv} is ready; no served model trains on it yet", evidence
        )
    return Check(
        "monitor", Outcome.SUCCESSFUL,
        f"{dv} ready; retrain dry runs of {', '.join(dry)} read its {next(iter(dry.values()))['rows']} rows",
        evidence,
    )  # fmt: skip


# --- acceptance: the three seed criteria ------------------------------------------------------------------


def restored(rc: RunContext) -> Check:
    run_id = _new_run(rc)
    if run_id is None:
        return Check("restored", Outcome.FAILED, "the pipeline was not re-run")
    read = service.run_read(rc.ctx, run_id)
    validated = [s.name for s in read.stages if s.kind == "validate" and s.state in ("succeeded", "reused")]
    ok = read.state == RunState.SUCCEEDED and bool(validated)
    with rc.ctx.db.session() as s:
        latest = records.latest_run(session=s, pipeline=_name(rc))
        latest_id = latest.id if latest else None
    ok = ok and latest_id == run_id
    return Check(
        "restored", _ok(ok), f"run #{run_id} {read.state}; validated by {validated}; latest run #{latest_id}"
    )


def integrity_confirmed(rc: RunContext) -> Check:
    run_id = _new_run(rc)
    if run_id is None:
        return Check("integrity", Outcome.FAILED, "the pipeline was not re-run")
    ok, problems, evidence = verify.integrity(rc.ctx, spec.get(rc.ctx.settings, _name(rc)), run_id)
    return Check(
        "integrity", _ok(ok), "; ".join(problems) or "hashes and row counts agree with the source", evidence
    )


def downstream_consuming(rc: RunContext) -> Check:
    c = monitor(rc)
    return Check("downstream", c.outcome, c.reason)


RUNBOOK = Runbook(
    name="pipeline-failure",
    title="Data pipeline failure",
    scenario="The training or inference data pipeline fails, preventing new data from being ingested or processed.",
    objective="Resolve failures in data pipelines that feed training or inference models.",
    params=(
        Param("pipeline", "the pipeline that failed (see `mloncall pipeline list`)", required=True),
        Param(
            "full_if_changed",
            "run the whole pipeline when the upstream changed since the failure",
            type="bool",
            default=False,
        ),
    ),
    steps=(
        Step("identify", "Identify the failure", StepKind.CHECK, identify),
        Step("upstream", "Check the upstream data source", StepKind.CHECK, upstream, stop_on_failure=False),
        Step(
            "validate", "Validate schema and transformations", StepKind.CHECK, validate, stop_on_failure=False
        ),
        Step("rerun", "Re-run or repair the pipeline", StepKind.ACTION, rerun, question=_question),
        Step("output", "Validate the pipeline output", StepKind.CHECK, output),
        Step("monitor", "Monitor downstream effects", StepKind.CHECK, monitor, stop_on_failure=False),
    ),
    acceptance=(
        Criterion("pipeline restored and validated", restored),
        Criterion("data integrity confirmed", integrity_confirmed),
        Criterion("downstream jobs consuming data successfully", downstream_consuming),
    ),
    contacts=("Primary: Data Engineering", "Secondary: ML Engineering"),
    target=_target,
    troubleshooting=("Missing data file.", "Schema mismatch.", "Transformation error."),
)

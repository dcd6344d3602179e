"""Runbook 2, `retraining MODEL --param data=FILE`: validate the new data, retrain, evaluate against the
champion, version it, deploy it (the `deployment` runbook as a linked sub-run) and watch it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mloncall.core.durations import parse_seconds
from mloncall.core.errors import MloncallError
from mloncall.core.outcome import Check, Outcome
from mloncall.data import files as data_files
from mloncall.data import service as data_service
from mloncall.data import validation as data_validation
from mloncall.registry import service as registry
from mloncall.runbooks import health
from mloncall.runbooks.engine import RunContext
from mloncall.runbooks.spec import Criterion, Param, Runbook, Step, model_target
from mloncall.runbooks.states import StepKind
from mloncall.training import service as training

#: The deployment parameters a retraining run passes on to its deployment sub-run.
DEPLOY_PARAMS = ("strategy", "steps", "step_duration", "min_requests", "health_window", "timeout")


def _model(rc: RunContext) -> str:
    return str(rc.params["model"])


def _mark(rc: RunContext) -> str:
    return f"runbook run #{rc.run_id}:"


def validate(rc: RunContext) -> Check:
    """1. The new rows against the production version's dataset schema: every bad cell named."""
    with rc.ctx.db.session() as s:
        prod = registry.resolve(session=s, ref=f"{_model(rc)}@production")
        if prod.dataset_version_id is None:
            return Check(
                "validate", Outcome.FAILED, f"{_model(rc)}:{prod.version} records no training dataset"
            )
        trained_on = data_service.get_version_by_id_or_raise(
            session=s, dataset_version_id=prod.dataset_version_id
        )
        schema, dataset = trained_on.schema, trained_on.dataset.name
    path = Path(rc.params["data"])
    try:
        training.refuse_if_blocked(rc.ctx, model=_model(rc), dataset=dataset)
        frame = data_validation.validate(data_files.read_table(path), schema=schema, source=str(path))
    except MloncallError as exc:
        return Check("validate", Outcome.FAILED, exc.message, {"details": exc.details})
    return Check(
        "validate",
        Outcome.SUCCESSFUL,
        f"{len(frame)} rows of {path.name} match the schema of v{prod.version}",
        {"rows": len(frame), "file": str(path)},
    )


def _made_by_run(rc: RunContext) -> Any:
    with rc.ctx.db.session() as s:
        model = registry.get_model_or_raise(session=s, name=_model(rc))
        found = [v for v in model.versions if (v.description or "").startswith(_mark(rc))]
        return found[-1].version if found else None


def retrain(rc: RunContext) -> Check:
    """2. Retrain on the champion's data plus the new rows (the version is registered with its gate)."""
    run = training.retrain(
        ctx=rc.ctx,
        name=_model(rc),
        data=Path(rc.params["data"]),
        created_by=rc.actor,
        description=f"{_mark(rc)} retrained with {Path(rc.params['data']).name}",
    )
    version = run.model_version.version
    rc.progress(version=version)
    return Check(
        "retrain",
        Outcome.SUCCESSFUL,
        f"{_model(rc)}:{version} trained in {run.seconds:.1f} s",
        {"version": version, "metrics": run.metrics, "gate": run.gate},
    )


def retrain_trace(rc: RunContext) -> str | None:
    version = _made_by_run(rc)
    return None if version is None else f"{_model(rc)}:{version}, registered by this run"


def adopt(rc: RunContext) -> Check:
    version = _made_by_run(rc)
    return Check(
        "retrain",
        Outcome.SUCCESSFUL,
        f"kept {_model(rc)}:{version}, trained before the interruption",
        {"version": version},
    )


def _version(rc: RunContext) -> Any:
    version = rc.evidence_of("retrain").get("version") or _made_by_run(rc)
    with rc.ctx.db.session() as s:
        mv = registry.get_version_or_raise(session=s, name=_model(rc), version=int(version))
        _ = mv.files, mv.model.name
        s.expunge_all()
        return mv


def evaluate(rc: RunContext) -> Check:
    """3. The gate: accuracy at least the champion's on rows neither has seen, no class's recall dropping."""
    gate = _version(rc).gate or {}
    ok = gate.get("verdict") == "pass"
    return Check(
        "evaluate",
        Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        f"gate {gate.get('verdict')}: {gate.get('reason')}",
        {
            "champion": gate.get("champion", {}).get("accuracy"),
            "challenger": gate.get("challenger", {}).get("accuracy"),
        },
    )


def versioned(rc: RunContext) -> Check:
    """4. Version control: registered with metrics, lineage and dataset; every file (the log too) verifies."""
    mv = _version(rc)
    report = registry.verify(store=rc.ctx.store, model_version=mv)
    names = {f.name for f in mv.files}
    missing = [
        k
        for k, v in (("metrics", mv.metrics), ("lineage", mv.lineage), ("dataset", mv.dataset_version_id))
        if not v
    ]
    log_ok = training.LOG_FILE in names
    ok = report.ok and not missing and log_ok
    reason = f"{report.ref}: {report.check.reason}; training log {'archived' if log_ok else 'missing'}"
    if missing:
        reason += f"; missing {', '.join(missing)}"
    return Check(
        "version",
        Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        reason,
        {"version": mv.version, "files": sorted(names), "lineage": mv.lineage},
    )


def deploy(rc: RunContext) -> Check:
    """5. Deploy the retrained version through the deployment runbook (a linked sub-run)."""
    params = {k: rc.params[k] for k in DEPLOY_PARAMS if rc.params.get(k) is not None}
    return rc.subrun("deployment", {"ref": f"{_model(rc)}:{_version(rc).version}", **params})


def monitor(rc: RunContext) -> Check:
    """6. Post-update performance: the production version's service health and accuracy over a window."""
    window = parse_seconds(rc.params.get("health_window") or "30s")
    return health.service_health(rc.ctx, model=_model(rc), window_s=window, name="monitor")


# --- acceptance --------------------------------------------------------------------------------------------


def in_registry(rc: RunContext) -> Check:
    c = versioned(rc)
    return Check("in registry", c.outcome, c.reason)


def accuracy_kept(rc: RunContext) -> Check:
    gate = _version(rc).gate or {}
    new, old = gate.get("challenger", {}).get("accuracy"), gate.get("champion", {}).get("accuracy")
    ok = new is not None and old is not None and new + 1e-12 >= old
    return Check(
        "accuracy",
        Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        f"accuracy {new} vs previous {old}",
        {"new": new, "previous": old},
    )


def logs_archived(rc: RunContext) -> Check:
    mv = _version(rc)
    try:
        text = registry.read_file(store=rc.ctx.store, model_version=mv, name=training.LOG_FILE).decode()
    except MloncallError as exc:
        return Check("logs", Outcome.FAILED, exc.message)
    return Check(
        "logs", Outcome.SUCCESSFUL, f"training log of {len(text.splitlines())} lines verifies its sha256"
    )


def deployed(rc: RunContext) -> Check:
    sub = rc.evidence_of("deploy")
    ok = sub.get("outcome") == "successful"
    return Check(
        "deployment",
        Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        f"deployment run #{sub.get('subrun')} {sub.get('outcome', rc.state_of('deploy'))}",
    )


RUNBOOK = Runbook(
    name="retraining",
    title="Model retraining and update",
    scenario="New samples were collected; the production model may be outdated.",
    objective="Retrain with updated data, evaluate it, and update the deployed version without regressions.",
    params=(
        Param("model", "the model to retrain", required=True, positional=True),
        Param("data", "the new labelled rows (CSV or Parquet)", required=True),
        Param("strategy", "how the deployment goes out", default="canary", choices=("canary", "direct")),
        Param("steps", "canary weights in percent", type="steps", default=[10, 25, 50, 100]),
        Param("step_duration", "how long each canary step runs", type="duration", default="30s"),
        Param("min_requests", "canary requests a step needs", type="int", default=50),
        Param("health_window", "how long to watch health after the rollout", type="duration", default="30s"),
        Param("timeout", "give up following the rollout after this long", type="duration", default="30m"),
    ),
    steps=(
        Step("validate", "Validate new data", StepKind.CHECK, validate),
        Step(
            "retrain",
            "Retrain the model",
            StepKind.ACTION,
            retrain,
            question="Retrain on these rows?",
            idempotent=False,
            trace=retrain_trace,
            resume=adopt,
        ),
        Step("evaluate", "Evaluate model performance", StepKind.CHECK, evaluate),
        Step("version", "Version control", StepKind.CHECK, versioned),
        Step(
            "deploy",
            "Deploy the retrained model (deployment runbook)",
            StepKind.ACTION,
            deploy,
            question="Deploy it through the deployment runbook?",
        ),
        Step("monitor", "Monitor post-update performance", StepKind.CHECK, monitor),
    ),
    acceptance=(
        Criterion("retrained model stored in the registry with metadata", in_registry),
        Criterion("accuracy at least the previous model's", accuracy_kept),
        Criterion("logs archived for reproducibility", logs_archived),
        Criterion("deployment successful", deployed),
    ),
    contacts=("Primary: ML Engineering oncall", "Secondary: Data Engineering"),
    target=model_target,
    troubleshooting=("Training fails.", "Model underperforms.", "Deployment mismatch."),
)

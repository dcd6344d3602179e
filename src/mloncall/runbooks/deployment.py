"""Runbook 1, `deployment REF`: verify, configure, load, smoke-test, roll out gradually, watch the
health, and hold a rollback plan that is verified and, when needed or asked for, exercised."""

from __future__ import annotations

import time
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from mloncall.core import clock
from mloncall.core.durations import parse_seconds
from mloncall.core.names import ModelRef
from mloncall.core.outcome import Check, Outcome, worst
from mloncall.registry import service as registry
from mloncall.rollout import service as rollouts
from mloncall.rollout.acceptance import check_acceptance
from mloncall.rollout.models import Rollout, RolloutState
from mloncall.rollout.prechecks import SMOKE_TOLERANCE, signature_check, smoke_test
from mloncall.rollout.scheduler import evaluate_once
from mloncall.runbooks import health
from mloncall.runbooks.engine import RunContext
from mloncall.runbooks.spec import Criterion, Param, Runbook, Step
from mloncall.runbooks.states import StepKind

#: Libraries whose major version must match the one the model was trained with.
PINNED = ("onnxruntime", "scikit-learn", "skops")


def _name(rc: RunContext) -> str:
    return ModelRef.parse(rc.params["ref"]).name


def _candidate(rc: RunContext, s: Any) -> Any:
    return registry.resolve(session=s, ref=ModelRef.parse(rc.params["ref"]))


def _production(s: Any, name: str) -> Any:
    alias = registry.get_alias(session=s, name=name, alias="production")
    return alias.model_version if alias else None


# --- 1 to 4: before any traffic ---------------------------------------------------------------------------


def verify(rc: RunContext) -> Check:
    """1. The artifact is intact (every sha256) and the version is a new one for production."""
    with rc.ctx.db.session() as s:
        mv = _candidate(rc, s)
        prod = _production(s, mv.model.name)
        report = registry.verify(store=rc.ctx.store, model_version=mv)
        ref = f"{mv.model.name}:{mv.version}"
        files = [{"name": f.name, "sha256": f.expected, "status": f.status} for f in report.files]
    evidence = {"version": mv.version, "production": prod.version if prod else None, "files": files}
    if not report.ok:
        return Check("verify", Outcome.FAILED, f"{ref}: {report.check.reason}", evidence)
    if prod is not None and prod.version == mv.version:
        return Check("verify", Outcome.FAILED, f"{ref} is already production", evidence)
    now = f"production is v{prod.version}" if prod else "nothing is in production yet"
    return Check("verify", Outcome.SUCCESSFUL, f"{ref}: {report.check.reason}; {now}", evidence)


def configure(rc: RunContext) -> Check:
    """2. The signature matches production's (clients need not change) and the serving settings hold."""
    from mloncall.serving import service as routing

    with rc.ctx.db.session() as s:
        mv = _candidate(rc, s)
        prod = _production(s, mv.model.name)
        signature = signature_check(candidate=mv, production=prod)
        try:
            view = routing.effective(session=s, name=mv.model.name).to_dict()
        except Exception:
            view = None
    settings = {k: view[k] for k in ("stable_version", "out_of_range_policy", "max_rows")} if view else {}
    if rc.params["strategy"] == "canary" and prod is None:
        return Check("configure", Outcome.FAILED, "a canary needs a production version: use strategy=direct")
    where = (
        f"serving: stable v{settings['stable_version']}, out-of-range {settings['out_of_range_policy']}, "
        f"max {settings['max_rows']} rows"
        if settings
        else "not served yet"
    )
    return Check(
        "configure",
        signature.outcome,
        f"{signature.reason}; {where}",
        {"signature": signature.to_dict(), "serving": settings},
    )


def load(rc: RunContext) -> Check:
    """3. The ONNX session loads from verified bytes, and the libraries match those of its lineage."""
    with rc.ctx.db.session() as s:
        mv = _candidate(rc, s)
        session = registry.load_onnx(store=rc.ctx.store, model_version=mv)
        trained_with = dict((mv.lineage or {}).get("libraries", {}))
    inputs = [{"name": i.name, "shape": [str(d) for d in i.shape]} for i in session.get_inputs()]
    found: dict[str, str | None] = {}
    drift: list[str] = []
    for lib in PINNED:
        try:
            found[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            found[lib] = None
        want = trained_with.get(lib)
        if want and found[lib] and want.split(".")[0] != str(found[lib]).split(".")[0]:
            drift.append(f"{lib} {found[lib]} here, {want} at training")
    evidence = {"inputs": inputs, "installed": found, "lineage": trained_with}
    if drift:
        return Check("load", Outcome.FAILED, "dependency conflict: " + "; ".join(drift), evidence)
    libs = ", ".join(f"{k} {v}" for k, v in found.items() if v)
    return Check(
        "load", Outcome.SUCCESSFUL, f"ONNX session loads ({len(inputs)} input); {libs} as trained", evidence
    )


def smoke(rc: RunContext) -> Check:
    """4. The golden set scores as recorded, with probabilities that are distributions."""
    with rc.ctx.db.session() as s:
        mv = _candidate(rc, s)
        check = smoke_test(store=rc.ctx.store, model_version=mv, tolerance=SMOKE_TOLERANCE)
    return Check("smoke", check.outcome, check.reason, check.evidence)


# --- 5: the gradual rollout --------------------------------------------------------------------------------


def _no_rollout_in_progress(rc: RunContext) -> Check:
    with rc.ctx.db.session() as s:
        active = rollouts.get_active(session=s, name=_name(rc))
        if active is not None:
            return Check(
                "rollout", Outcome.FAILED, f"rollout #{active.id} of v{active.to_version} is {active.state}"
            )
    return Check("rollout", Outcome.SUCCESSFUL, f"no rollout of {_name(rc)} in progress")


def _rollout_question(rc: RunContext) -> str:
    p = rc.params
    how = (
        f"{p['strategy']} rollout ({' → '.join(f'{w}%' for w in p['steps'])}, {p['step_duration']} each)"
        if p["strategy"] == "canary"
        else "direct deployment (all traffic at once)"
    )
    return f"Start a {how} of {p['ref']}?"


def roll_out(rc: RunContext) -> Check:
    spec = rollouts.DeploySpec(
        strategy=rc.params["strategy"],
        steps=rc.params["steps"],
        step_duration_s=parse_seconds(rc.params["step_duration"]),
        min_requests=rc.params["min_requests"],
        thresholds=dict(rc.params.get("thresholds") or {}),
    )
    with rc.ctx.db.session() as s:
        r = rollouts.deploy(session=s, store=rc.ctx.store, ref=rc.params["ref"], spec=spec, actor=rc.actor)
        rid = r.id
    rc.progress(rollout=rid)
    return follow(rc)


def _rollout_of_step(rc: RunContext) -> Rollout | None:
    """The rollout this step started: the one it recorded, else one of the version made since it began."""
    rid = rc.evidence_of(rc.step_name).get("rollout")
    with rc.ctx.db.session() as s:
        if rid is None:
            version = _candidate(rc, s).version
            started = _step_started(rc, s)
            rid = next(
                (
                    r.id
                    for r in reversed(rollouts.history(session=s, name=_name(rc)))
                    if r.to_version == version and started is not None and r.created_at >= started
                ),
                None,
            )
        r = s.get(Rollout, rid) if rid is not None else None
        if r is not None:
            s.expunge(r)
        return r


def _step_started(rc: RunContext, s: Any) -> Any:
    from mloncall.runbooks import service

    run = service.get_run_or_raise(session=s, run_id=rc.run_id)
    return service.step_of(run, rc.step_name).started_at


def rollout_trace(rc: RunContext) -> str | None:
    r = _rollout_of_step(rc)
    return None if r is None else f"rollout #{r.id} of v{r.to_version} ({r.state})"


def follow(rc: RunContext) -> Check:
    """Drive the step's rollout until it leaves `running` (the server's scheduler may take steps too)."""
    r = _rollout_of_step(rc)
    if r is None:
        return Check("rollout", Outcome.FAILED, "no rollout was started")
    rc.progress(rollout=r.id)
    deadline = time.monotonic() + parse_seconds(rc.params["timeout"])
    while r.state == RolloutState.RUNNING and time.monotonic() < deadline:
        evaluate_once(rc.ctx, r.id, actor=rc.actor)
        with rc.ctx.db.session() as s:
            fresh = s.get(Rollout, r.id)
            assert fresh is not None
            s.expunge(fresh)
            r = fresh
        if r.state == RolloutState.RUNNING:
            time.sleep(0.5)
    evidence = {
        "rollout": r.id,
        "state": r.state,
        "steps": r.steps,
        "analyses": [{k: a.get(k) for k in ("step", "weight", "outcome", "reason")} for a in r.analyses],
        "prechecks": r.prechecks,
    }
    outcome = {RolloutState.PROMOTED: Outcome.SUCCESSFUL, RolloutState.RUNNING: Outcome.INCONCLUSIVE}.get(
        RolloutState(r.state), Outcome.FAILED
    )
    return Check("rollout", outcome, f"rollout #{r.id} {r.state}: {r.reason}", evidence)


# --- 6 and 7: after the rollout ----------------------------------------------------------------------------


def post_health(rc: RunContext) -> Check:
    """6. Service health of what production serves now, over a window after the rollout ended."""
    window = parse_seconds(rc.params["health_window"])
    time.sleep(window)
    return health.service_health(rc.ctx, model=_name(rc), window_s=window)


def rollback_plan(rc: RunContext) -> Check:
    """7. Decide: verify the rollback that happened, exercise one, or verify the plan and keep it ready."""
    rolled = rc.evidence_of("rollout")
    state = rolled.get("state")
    healthy = rc.state_of("health") == "successful"
    if state == RolloutState.ABORTED:
        chosen, why = ["rollback-verified"], "the rollout was aborted: traffic went back to stable; verify it"
    elif state in (RolloutState.RUNNING, RolloutState.PAUSED):
        chosen, why = ["rollback-exercised"], f"the rollout is {state} and did not pass: abort it"
    elif not healthy:
        chosen, why = ["rollback-exercised"], "the new version went live but its health check did not pass"
    elif rc.params["exercise_rollback"]:
        chosen, why = (
            ["rollback-verified", "rollback-exercised"],
            "healthy; the rollback is exercised on request",
        )
    else:
        chosen, why = ["rollback-verified"], "healthy: verify the rollback plan and keep it ready"
    return Check(
        "rollback plan",
        Outcome.SUCCESSFUL,
        why,
        {"chosen": chosen, "rollout_state": state, "healthy": healthy},
    )


def rollback_verified(rc: RunContext) -> Check:
    """The version production would return to (or returned to) is intact, loads and scores its golden set."""
    from mloncall.serving import service as routing

    rolled = rc.evidence_of("rollout")
    name = _name(rc)
    with rc.ctx.db.session() as s:
        view = routing.effective(session=s, name=name)
        prev_alias = registry.get_alias(session=s, name=name, alias="previous")
        aborted = rolled.get("state") == RolloutState.ABORTED
        target = _production(s, name) if aborted else (prev_alias.model_version if prev_alias else None)
        if target is None:
            return Check(
                "rollback verified", Outcome.INCONCLUSIVE, f"{name} has no previous version to return to"
            )
        checks = [registry.verify(store=rc.ctx.store, model_version=target).check]
        checks.append(smoke_test(store=rc.ctx.store, model_version=target, tolerance=SMOKE_TOLERANCE))
        version = target.version
    evidence = {
        "version": version,
        "routing": {"stable": view.stable_version, "canary": view.canary_version},
        "checks": [c.to_dict() for c in checks],
        "rollback_done": aborted,
    }
    detail = "; ".join(c.reason for c in checks)
    if aborted:
        serving = view.stable_version == version and view.canary_version is None
        ok = serving and all(c.passed for c in checks)
        reason = (
            f"rollback done: v{version} serves all traffic again, canary removed; {detail}"
            if ok
            else f"rollback incomplete: routing stable v{view.stable_version}, canary {view.canary_version}"
        )
        return Check("rollback verified", Outcome.SUCCESSFUL if ok else Outcome.FAILED, reason, evidence)
    return Check(
        "rollback verified", worst(c.outcome for c in checks), f"previous v{version}: {detail}", evidence
    )


def _rollback_possible(rc: RunContext) -> Check:
    with rc.ctx.db.session() as s:
        name = _name(rc)
        if rollouts.get_active(session=s, name=name) is not None:
            return Check("rollback", Outcome.SUCCESSFUL, "a rollout is in progress: it can be aborted")
        if registry.get_alias(session=s, name=name, alias="previous") is None:
            return Check("rollback", Outcome.FAILED, f"{name} has no 'previous' version to roll back to")
    return Check("rollback", Outcome.SUCCESSFUL, "'previous' exists")


def exercise_rollback(rc: RunContext) -> Check:
    name, why = _name(rc), f"runbook run #{rc.run_id}: rollback plan"
    with rc.ctx.db.session() as s:
        active = rollouts.get_active(session=s, name=name)
        if active is not None:
            rollouts.abort(session=s, rollout=active, actor=rc.actor, reason=why)
            done = f"rollout #{active.id} aborted: v{active.from_version} serves all traffic"
        else:
            r = rollouts.rollback(session=s, store=rc.ctx.store, name=name, actor=rc.actor, reason=why)
            done = f"rolled back from v{r.from_version} to v{r.to_version} (rollout #{r.id})"
    return Check("rollback exercised", Outcome.SUCCESSFUL, f"rollback done: {done}", {"done": done})


def rollback_trace(rc: RunContext) -> str | None:
    with rc.ctx.db.session() as s:
        started = _step_started(rc, s)
        newest = rollouts.latest(session=s, name=_name(rc))
        if newest is not None and newest.strategy == "rollback" and started and newest.created_at >= started:
            return f"rollback #{newest.id} to v{newest.to_version}"
    return None


def _rollback_recorded(rc: RunContext) -> Check:
    return Check(
        "rollback exercised",
        Outcome.SUCCESSFUL,
        f"rollback done before the interruption: {rollback_trace(rc)}",
    )


# --- acceptance: the four seed criteria ---------------------------------------------------------------------


def _rollout_acceptance(rc: RunContext) -> dict[str, Check]:
    def judge() -> dict[str, Check]:
        rid = rc.evidence_of("rollout").get("rollout")
        with rc.ctx.db.session() as s:
            r = s.get(Rollout, rid) if rid is not None else None
            if r is None or r.state != RolloutState.PROMOTED:
                return {}
            checks, _ = check_acceptance(session=s, store=rc.ctx.store, rollout=r, now=clock.now())
        return {c.name: c for c in checks}

    found: dict[str, Check] = rc.remember("rollout acceptance", judge)
    return found


def _not_live(rc: RunContext) -> str:
    rolled = rc.evidence_of("rollout")
    return f"the new version is not live: rollout {rolled.get('state', 'not started')}"


def live(rc: RunContext) -> Check:
    c = _rollout_acceptance(rc).get("traffic on new version")
    return c or Check("live", Outcome.FAILED, _not_live(rc))


def validated(rc: RunContext) -> Check:
    found = _rollout_acceptance(rc)
    parts = [found[k] for k in ("smoke tests", "canary rollout") if k in found]
    if not parts:
        smoke_state, rolled = rc.state_of("smoke"), rc.evidence_of("rollout")
        return Check(
            "validated", Outcome.FAILED, f"smoke tests {smoke_state}; rollout {rolled.get('state', '-')}"
        )
    return Check(
        "validated", worst(c.outcome for c in parts), "; ".join(f"{c.name}: {c.reason}" for c in parts)
    )


def no_anomaly(rc: RunContext) -> Check:
    c = _rollout_acceptance(rc).get("no anomaly vs previous")
    return c or Check("no anomaly", Outcome.FAILED, _not_live(rc))


def rollback_ready(rc: RunContext) -> Check:
    verified = rc.evidence_of("rollback-verified")
    exercised = rc.evidence_of("rollback-exercised")
    states = {k: rc.state_of(k) for k in ("rollback-verified", "rollback-exercised")}
    ok = "successful" in states.values() and "failed" not in states.values()
    reason = "; ".join(f"{k} {v}" for k, v in states.items())
    return Check(
        "rollback plan",
        Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        reason,
        {"verified": verified.get("checks"), "exercised": exercised.get("done")},
    )


def _target(params: Mapping[str, Any]) -> str:
    return f"model:{ModelRef.parse(params['ref']).name}"


RUNBOOK = Runbook(
    name="deployment",
    title="Model deployment",
    scenario="A new model version has passed validation and needs to replace the production version.",
    objective="Deploy a new or updated model into production, validate it, and roll back if issues occur.",
    params=(
        Param("ref", "the version to deploy, NAME:VERSION", required=True, positional=True),
        Param(
            "strategy",
            "canary (stepwise, analysed) or direct",
            default="canary",
            choices=("canary", "direct"),
        ),
        Param("steps", "canary weights in percent, ending at 100", type="steps", default=[10, 25, 50, 100]),
        Param("step_duration", "how long each canary step runs", type="duration", default="30s"),
        Param("min_requests", "canary requests a step needs before it is judged", type="int", default=50),
        Param(
            "thresholds",
            "canary analysis thresholds to override, NAME=VALUE[,NAME=VALUE] (as deploy --threshold)",
            type="thresholds",
            default={},
        ),
        Param("health_window", "how long to watch health after the rollout", type="duration", default="30s"),
        Param("exercise_rollback", "roll back even when healthy (a drill)", type="bool", default=False),
        Param("timeout", "give up following the rollout after this long", type="duration", default="30m"),
    ),
    steps=(
        Step("verify", "Verify model artifact integrity and version", StepKind.CHECK, verify),
        Step("configure", "Configure the deployment environment", StepKind.CHECK, configure),
        Step("load", "Load the model and its dependencies", StepKind.CHECK, load),
        Step("smoke", "Smoke tests and inference checks on the golden set", StepKind.CHECK, smoke),
        Step(
            "rollout",
            "Gradual rollout",
            StepKind.ACTION,
            roll_out,
            question=lambda rc: _rollout_question(rc),
            idempotent=False,
            precondition=_no_rollout_in_progress,
            trace=rollout_trace,
            resume=follow,
            stop_on_failure=False,
        ),
        Step("health", "Monitor post-deployment health", StepKind.CHECK, post_health, stop_on_failure=False),
        Step(
            "rollback-plan",
            "Rollback plan",
            StepKind.DECISION,
            rollback_plan,
            chooses_among=("rollback-verified", "rollback-exercised"),
        ),
        Step("rollback-verified", "Rollback plan verified", StepKind.CHECK, rollback_verified),
        Step(
            "rollback-exercised",
            "Rollback exercised",
            StepKind.ACTION,
            exercise_rollback,
            question="Roll back now?",
            idempotent=False,
            precondition=_rollback_possible,
            trace=rollback_trace,
            resume=_rollback_recorded,
        ),
    ),
    acceptance=(
        Criterion("new model live, serving >95% of traffic", live),
        Criterion("smoke tests and canary rollout validate", validated),
        Criterion("no anomalies compared to the previous version", no_anomaly),
        Criterion("rollback plan validated", rollback_ready),
    ),
    contacts=("Primary: ML Engineering oncall", "Secondary: DevOps / Platform Engineering"),
    target=_target,
    troubleshooting=(
        "Deployment error: container fails on startup.",
        "Dependency conflict.",
        "Resource limits.",
    ),
)

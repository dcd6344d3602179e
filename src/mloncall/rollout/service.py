"""Deployments as small state machines: pre-checks, canary steps judged by analysis, promote, abort,
rollback, and the runbook-1 acceptance criteria checked from live serving data.

    deploy --strategy direct ─────────────────────────────────────────────► promoted
    deploy --strategy canary ─► running ─(step passes)─► running … ─(last)─► promoted
                                  │  ▲                         │
                   (inconclusive) ▼  │ resume        (failed)  ▼
                                paused ─────(abort)────────► aborted
    rollback ─────────────────────────────────────────────────────────────► rolled_back

Every transition is a `RolloutEvent` with actor, reason and evidence. Functions take a session and never
commit; the optimistic lock on `Rollout.revision` lets the server's scheduler and a CLI both drive a rollout
without a step being taken twice.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.core import clock
from mloncall.core.durations import parse_seconds
from mloncall.core.errors import Conflict, InvalidInput
from mloncall.core.names import ModelRef
from mloncall.core.outcome import Check, Outcome, worst
from mloncall.registry import service as registry
from mloncall.registry.models import ModelVersion
from mloncall.rollout.analysis import Analysis, Thresholds, analyse_canary, compare, window
from mloncall.rollout.models import ACTIVE_STATES, Rollout, RolloutEvent
from mloncall.serving import service as routing
from mloncall.stores.artifacts import ArtifactStore

DEFAULT_STEPS = (10, 25, 50, 100)
DEFAULT_STEP_SECONDS = 30.0
DEFAULT_MIN_REQUESTS = 50
#: The golden-set accuracy may trail the version's recorded accuracy by this much before the smoke test fails.
SMOKE_TOLERANCE = 0.02
#: Share of traffic the new version must serve after promotion (runbook 1 acceptance).
MIN_TRAFFIC_SHARE = 0.95
HOLDOUT_FILE = "holdout.parquet"
#: Before calling a step inconclusive for too little traffic, wait this long past its end: serving workers
#: flush prediction logs every ~2 s, so the step's last requests may not be readable yet.
JUDGE_GRACE_S = 5.0

#: The longest step or wait a rollout takes.
MAX_DURATION = dt.timedelta(days=7)


def step_seconds(value: str | float, what: str = "step duration") -> float:
    """A step duration or wait in seconds, in the project's duration grammar, at most a week."""
    return parse_seconds(value, maximum=MAX_DURATION, what=what)


def parse_steps(steps: Sequence[int] | str | None) -> list[int]:
    """Canary weights in percent, strictly increasing, ending at 100."""
    if steps is None:
        return list(DEFAULT_STEPS)
    if isinstance(steps, str):
        try:
            values = [int(s) for s in steps.split(",") if s.strip()]
        except ValueError:
            raise InvalidInput(f"invalid steps {steps!r}: use percentages like 10,25,50,100") from None
    else:
        values = [int(s) for s in steps]
    if not values or values[-1] != 100 or any(not 0 < v <= 100 for v in values):
        raise InvalidInput(f"invalid steps {values}: percentages between 1 and 100, ending at 100")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise InvalidInput(f"invalid steps {values}: each step must be larger than the one before")
    return values


@dataclass
class DeploySpec:
    """How to deploy: strategy, canary steps and their duration, traffic needed, analysis thresholds."""

    strategy: str = "canary"
    steps: list[int] = field(default_factory=lambda: list(DEFAULT_STEPS))
    step_duration_s: float = DEFAULT_STEP_SECONDS
    min_requests: int = DEFAULT_MIN_REQUESTS
    thresholds: dict[str, Any] = field(default_factory=dict)
    smoke_tolerance: float = SMOKE_TOLERANCE

    def __post_init__(self) -> None:
        if self.strategy not in ("canary", "direct"):
            raise InvalidInput(f"unknown strategy {self.strategy!r}: use canary or direct")
        self.steps = parse_steps(self.steps)
        self.step_duration_s = step_seconds(self.step_duration_s)
        if not 1 <= self.min_requests <= 10_000_000:
            raise InvalidInput(f"min requests must be between 1 and 10,000,000, got {self.min_requests}")
        if not 0 <= self.smoke_tolerance <= 1:
            raise InvalidInput(f"smoke tolerance must be between 0 and 1, got {self.smoke_tolerance}")
        Thresholds.from_overrides(self.thresholds)


# --- reading ---------------------------------------------------------------------------------------------


def get_active(*, session: Session, name: str) -> Rollout | None:
    """The model's running or paused rollout, if any."""
    return session.scalars(
        sa.select(Rollout).where(Rollout.model_name == name, Rollout.state.in_(ACTIVE_STATES))
    ).one_or_none()


def get_active_or_raise(*, session: Session, name: str) -> Rollout:
    registry.get_model_or_raise(session=session, name=name)
    r = get_active(session=session, name=name)
    if r is None:
        raise Conflict(f"model {name!r} has no rollout in progress")
    return r


def latest(*, session: Session, name: str) -> Rollout | None:
    """The model's newest rollout of any state."""
    registry.get_model_or_raise(session=session, name=name)
    return session.scalars(
        sa.select(Rollout).where(Rollout.model_name == name).order_by(Rollout.id.desc()).limit(1)
    ).one_or_none()


def history(*, session: Session, name: str) -> Sequence[Rollout]:
    """Every rollout of a model with its transitions, oldest first."""
    registry.get_model_or_raise(session=session, name=name)
    return session.scalars(sa.select(Rollout).where(Rollout.model_name == name).order_by(Rollout.id)).all()


def list_active(*, session: Session) -> Sequence[Rollout]:
    return session.scalars(
        sa.select(Rollout).where(Rollout.state.in_(ACTIVE_STATES)).order_by(Rollout.id)
    ).all()


# --- pre-checks ------------------------------------------------------------------------------------------


def smoke_test(*, store: ArtifactStore, model_version: ModelVersion, tolerance: float) -> Check:
    """Load the verified ONNX model and score its golden set: accuracy within tolerance of the recorded one."""
    import pandas as pd

    from mloncall.registry.formats import onnx_predict

    ref = f"{model_version.model.name}:{model_version.version}"
    try:
        session = registry.load_onnx(store=store, model_version=model_version)
        golden = pd.read_parquet(
            io.BytesIO(registry.read_file(store=store, model_version=model_version, name=HOLDOUT_FILE))
        )
    except Exception as exc:  # any failure to load is the smoke test's verdict, not a crash
        return Check("smoke test", Outcome.FAILED, f"{ref} cannot be loaded: {getattr(exc, 'message', exc)}")
    features = [f["name"] for f in model_version.signature.get("features", [])]
    target = model_version.signature.get("target")
    if golden.empty or not features or target not in golden.columns:
        return Check("smoke test", Outcome.FAILED, f"{ref} has no usable golden set")
    labels, probs = onnx_predict(session, golden[features].to_numpy(np.float64))
    accuracy = float(np.mean(labels.astype(str) == golden[target].astype(str).to_numpy()))
    recorded = float(model_version.metrics.get("accuracy", 0.0))
    sums_ok = bool(np.all(np.isfinite(probs)) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3))
    ok = accuracy + tolerance + 1e-12 >= recorded and sums_ok
    reason = (
        f"golden set of {len(golden)} rows: accuracy {accuracy:.4f} vs recorded {recorded:.4f} "
        f"(tolerance {tolerance})" + ("" if sums_ok else "; probabilities are not a distribution")
    )
    return Check(
        "smoke test",
        Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        reason,
        {"rows": len(golden), "accuracy": accuracy, "recorded": recorded, "tolerance": tolerance},
    )


def signature_check(*, candidate: ModelVersion, production: ModelVersion | None) -> Check:
    """Same features in the same order and the same classes as production: clients need not change."""
    if production is None:
        return Check("signature", Outcome.SUCCESSFUL, "no production version to compare with")
    a = [f["name"] for f in candidate.signature.get("features", [])]
    b = [f["name"] for f in production.signature.get("features", [])]
    ca, cb = candidate.signature.get("classes"), production.signature.get("classes")
    problems = []
    if a != b:
        problems.append(f"features {a} differ from production's {b}")
    if ca != cb:
        problems.append(f"classes {ca} differ from production's {cb}")
    if problems:
        return Check("signature", Outcome.FAILED, "; ".join(problems))
    return Check(
        "signature", Outcome.SUCCESSFUL, f"same {len(a)} features and {len(ca or [])} classes as production"
    )


def prechecks(
    *, store: ArtifactStore, candidate: ModelVersion, production: ModelVersion | None, tolerance: float
) -> list[Check]:
    """Integrity, signature compatibility and the golden-set smoke test, in that order."""
    report = registry.verify(store=store, model_version=candidate)
    checks = [report.check, signature_check(candidate=candidate, production=production)]
    if report.ok:
        checks.append(smoke_test(store=store, model_version=candidate, tolerance=tolerance))
    else:
        checks.append(Check("smoke test", Outcome.FAILED, "not run: the artifacts are not intact"))
    return checks


# --- transitions -----------------------------------------------------------------------------------------


def _event(
    session: Session,
    r: Rollout,
    *,
    to_state: str,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
    from_state: str | None = None,
) -> None:
    now = clock.now()
    session.add(
        RolloutEvent(
            rollout=r,
            at=now,
            actor=actor,
            from_state=from_state if from_state is not None else r.state,
            to_state=to_state,
            step_index=r.step_index,
            weight=r.weight if to_state in ACTIVE_STATES else 0.0,
            reason=reason,
            evidence=evidence or {},
        )
    )
    r.state = to_state
    r.reason = reason
    r.updated_at = now
    if to_state not in ACTIVE_STATES:
        r.active_model = None
        r.finished_at = now


def _move_production(
    session: Session, *, name: str, new: int, old: int | None, actor: str, reason: str
) -> None:
    """production -> new, previous -> old, canary alias removed, routing stable -> new with no canary."""
    routing.set_stable(session=session, name=name, version=new, actor=actor)
    if old is not None and old != new:
        registry.set_alias(
            session=session, name=name, alias="previous", version=old, actor=actor, reason=reason
        )
    registry.set_alias(
        session=session, name=name, alias="production", version=new, actor=actor, reason=reason
    )
    if registry.get_alias(session=session, name=name, alias="canary") is not None:
        registry.remove_alias(session=session, name=name, alias="canary", actor=actor, reason=reason)


def deploy(*, session: Session, store: ArtifactStore, ref: str, spec: DeploySpec, actor: str) -> Rollout:
    """Start a deployment. Failing pre-checks record an aborted rollout with the reason (check `state`)."""
    parsed = ModelRef.parse(ref)
    mv = registry.resolve(session=session, ref=parsed)
    name = mv.model.name
    active = get_active(session=session, name=name)
    if active is not None:
        raise Conflict(
            f"rollout #{active.id} of {name}:{active.to_version} is {active.state}; promote or abort it first"
        )
    production_alias = registry.get_alias(session=session, name=name, alias="production")
    production = production_alias.model_version if production_alias else None
    if production is not None and production.version == mv.version:
        raise Conflict(f"{name}:{mv.version} is already production")
    strategy = spec.strategy
    if strategy == "canary" and production is None:
        raise InvalidInput(
            f"{name} has no production version to canary against: deploy with --strategy direct"
        )
    now = clock.now()
    checks = prechecks(store=store, candidate=mv, production=production, tolerance=spec.smoke_tolerance)
    r = Rollout(
        model_name=name,
        active_model=name,
        strategy=strategy,
        from_version=production.version if production else None,
        to_version=mv.version,
        state="pending",
        steps=spec.steps if strategy == "canary" else [100],
        step_index=0,
        step_duration_s=spec.step_duration_s,
        min_requests=spec.min_requests,
        thresholds=Thresholds.from_overrides(spec.thresholds).to_dict(),
        prechecks=[c.to_dict() for c in checks],
        analyses=[],
        step_started_at=now,
        created_at=now,
        created_by=actor,
        updated_at=now,
    )
    session.add(r)
    verdict = worst(c.outcome for c in checks)
    if verdict is not Outcome.SUCCESSFUL:
        failed = "; ".join(f"{c.name}: {c.reason}" for c in checks if not c.passed)
        _event(
            session,
            r,
            to_state="aborted",
            actor=actor,
            reason=f"pre-check failed: {failed}",
            evidence={"prechecks": r.prechecks},
            from_state="pending",
        )
        session.flush()
        return r
    if strategy == "direct":
        _move_production(
            session,
            name=name,
            new=mv.version,
            old=r.from_version,
            actor=actor,
            reason=f"direct deployment #{r.id or ''}".strip(),
        )
        _event(
            session,
            r,
            to_state="promoted",
            actor=actor,
            reason="direct deployment: pre-checks passed",
            evidence={"prechecks": r.prechecks},
            from_state="pending",
        )
    else:
        routing.set_canary(
            session=session, name=name, version=mv.version, weight=r.steps[0] / 100, actor=actor
        )
        registry.set_alias(
            session=session,
            name=name,
            alias="canary",
            version=mv.version,
            actor=actor,
            reason="canary rollout started",
        )
        _event(
            session,
            r,
            to_state="running",
            actor=actor,
            reason=f"pre-checks passed; canary at {r.steps[0]}%",
            evidence={"prechecks": r.prechecks},
            from_state="pending",
        )
    session.flush()
    return r


def promote(*, session: Session, rollout: Rollout, actor: str, reason: str = "") -> Rollout:
    """Make the canary production now: 100% of traffic, aliases moved."""
    if not rollout.active:
        raise Conflict(f"rollout #{rollout.id} is {rollout.state}: nothing to promote")
    _move_production(
        session,
        name=rollout.model_name,
        new=rollout.to_version,
        old=rollout.from_version,
        actor=actor,
        reason=reason or f"rollout #{rollout.id} promoted",
    )
    _event(session, rollout, to_state="promoted", actor=actor, reason=reason or "promoted")
    session.flush()
    return rollout


def abort(
    *, session: Session, rollout: Rollout, actor: str, reason: str, evidence: dict[str, Any] | None = None
) -> Rollout:
    """Send all traffic back to stable at once (a weight change: stable never stopped serving)."""
    if not rollout.active:
        raise Conflict(f"rollout #{rollout.id} is {rollout.state}: nothing to abort")
    name = rollout.model_name
    routing.clear_canary(session=session, name=name, actor=actor)
    canary = registry.get_alias(session=session, name=name, alias="canary")
    if canary is not None:
        registry.remove_alias(session=session, name=name, alias="canary", actor=actor, reason=reason)
    _event(session, rollout, to_state="aborted", actor=actor, reason=reason, evidence=evidence)
    session.flush()
    return rollout


def pause(*, session: Session, rollout: Rollout, actor: str, reason: str = "paused by hand") -> Rollout:
    """Hold the canary at its current weight until resumed."""
    if rollout.state != "running":
        raise Conflict(f"rollout #{rollout.id} is {rollout.state}: only a running rollout can be paused")
    _event(session, rollout, to_state="paused", actor=actor, reason=reason)
    session.flush()
    return rollout


def resume(*, session: Session, rollout: Rollout, actor: str, reason: str = "resumed") -> Rollout:
    """Continue a paused rollout; its current step starts again so it is judged on fresh traffic."""
    if rollout.state != "paused":
        raise Conflict(f"rollout #{rollout.id} is {rollout.state}: only a paused rollout can be resumed")
    rollout.step_started_at = clock.now()
    _event(session, rollout, to_state="running", actor=actor, reason=reason)
    session.flush()
    return rollout


def rollback(*, session: Session, store: ArtifactStore, name: str, actor: str, reason: str = "") -> Rollout:
    """Production back to `previous`, after verifying and smoke-testing it; an active rollout is aborted."""
    current_alias = registry.get_alias(session=session, name=name, alias="production")
    previous_alias = registry.get_alias(session=session, name=name, alias="previous")
    if previous_alias is None:
        raise Conflict(f"model {name!r} has no 'previous' version to roll back to")
    if current_alias is None:
        raise Conflict(f"model {name!r} has no production version to roll back from")
    previous = previous_alias.model_version
    current = current_alias.model_version
    checks = [registry.verify(store=store, model_version=previous).check]
    if checks[0].passed:
        checks.append(smoke_test(store=store, model_version=previous, tolerance=SMOKE_TOLERANCE))
    if not all(c.passed for c in checks):
        raise Conflict(
            f"cannot roll back to {name}:{previous.version}: "
            + "; ".join(f"{c.name}: {c.reason}" for c in checks if not c.passed)
        )
    active = get_active(session=session, name=name)
    why = reason or f"rollback from v{current.version} to v{previous.version}"
    if active is not None:
        abort(session=session, rollout=active, actor=actor, reason=f"aborted by rollback: {why}")
    now = clock.now()
    r = Rollout(
        model_name=name,
        active_model=None,
        strategy="rollback",
        from_version=current.version,
        to_version=previous.version,
        state="pending",
        steps=[100],
        prechecks=[c.to_dict() for c in checks],
        step_started_at=now,
        created_at=now,
        created_by=actor,
        updated_at=now,
    )
    session.add(r)
    _move_production(session, name=name, new=previous.version, old=current.version, actor=actor, reason=why)
    _event(
        session,
        r,
        to_state="rolled_back",
        actor=actor,
        reason=why,
        evidence={"checks": r.prechecks},
        from_state="pending",
    )
    session.flush()
    return r


# --- analysis steps --------------------------------------------------------------------------------------


def _logs(store: ArtifactStore, name: str, since: dt.datetime) -> tuple[Any, Any]:
    from mloncall.stores.predlog import FEEDBACK, PREDICTIONS, read_log

    return read_log(store, PREDICTIONS, name, since=since), read_log(store, FEEDBACK, name, since=since)


def analyse(*, session: Session, store: ArtifactStore, rollout: Rollout, now: dt.datetime) -> Analysis:
    """The current step's analysis of a canary rollout."""
    assert rollout.from_version is not None
    mv = registry.get_version_or_raise(session=session, name=rollout.model_name, version=rollout.to_version)
    predictions, feedback = _logs(store, rollout.model_name, rollout.created_at)
    return analyse_canary(
        predictions=predictions,
        feedback=feedback,
        stable=rollout.from_version,
        canary=rollout.to_version,
        classes=list(mv.signature.get("classes", [])),
        step_since=rollout.step_started_at,
        rollout_since=rollout.created_at,
        until=now,
        min_requests=rollout.min_requests,
        thresholds=Thresholds.from_overrides(rollout.thresholds),
    )


def evaluate(
    *, session: Session, store: ArtifactStore, rollout: Rollout, now: dt.datetime, actor: str = "analysis"
) -> str | None:
    """One look at a running canary: abort at once on failure; at the step's end advance, promote or pause.

    Returns the transition taken ('aborted', 'advanced', 'promoted', 'paused') or None.
    """
    if rollout.state != "running" or rollout.strategy != "canary":
        return None
    analysis = analyse(session=session, store=store, rollout=rollout, now=now)
    step_done = (now - rollout.step_started_at).total_seconds() >= rollout.step_duration_s
    if analysis.outcome is Outcome.FAILED:
        record = {"step": rollout.step_index, "weight": rollout.weight, **analysis.to_dict()}
        rollout.analyses = [*rollout.analyses, record]
        abort(
            session=session,
            rollout=rollout,
            actor=actor,
            reason=f"canary analysis failed at {rollout.weight:.0%}: {analysis.reason}",
            evidence=record,
        )
        return "aborted"
    if not step_done:
        return None
    elapsed = (now - rollout.step_started_at).total_seconds()
    if analysis.outcome is Outcome.INCONCLUSIVE and elapsed < rollout.step_duration_s + JUDGE_GRACE_S:
        return None  # the serving workers flush their logs every couple of seconds: wait for the last rows
    record = {"step": rollout.step_index, "weight": rollout.weight, **analysis.to_dict()}
    rollout.analyses = [*rollout.analyses, record]
    if analysis.outcome is Outcome.INCONCLUSIVE:
        _event(
            session,
            rollout,
            to_state="paused",
            actor=actor,
            reason=f"analysis inconclusive at {rollout.weight:.0%}: {analysis.reason}; resume or abort",
            evidence=record,
        )
        session.flush()
        return "paused"
    if rollout.step_index >= len(rollout.steps) - 1:
        promote(
            session=session,
            rollout=rollout,
            actor=actor,
            reason=f"all {len(rollout.steps)} canary steps passed analysis",
        )
        return "promoted"
    rollout.step_index += 1
    rollout.step_started_at = now
    routing.set_weight(session=session, name=rollout.model_name, weight=rollout.weight, actor=actor)
    _event(
        session,
        rollout,
        to_state="running",
        actor=actor,
        reason=f"step passed ({analysis.reason}); canary now at {rollout.weight:.0%}",
        evidence=record,
    )
    session.flush()
    return "advanced"


# --- acceptance ------------------------------------------------------------------------------------------


def acceptance(*, session: Session, store: ArtifactStore, rollout: Rollout, now: dt.datetime) -> list[Check]:
    """Runbook 1's acceptance criteria, judged from what was served since the promotion."""
    name = rollout.model_name
    if rollout.state != "promoted" or rollout.finished_at is None:
        raise Conflict(f"rollout #{rollout.id} is {rollout.state}: acceptance is checked after promotion")
    new, old = rollout.to_version, rollout.from_version
    predictions, feedback = _logs(store, name, rollout.created_at)
    since = rollout.finished_at
    after = window(predictions, since, now)
    total = 0 if after is None else after.num_rows
    on_new = 0
    if after is not None and total:
        on_new = int((after.column("version").to_numpy() == new).sum())
    checks: list[Check] = []
    if total < rollout.min_requests:
        checks.append(
            Check(
                "traffic on new version",
                Outcome.INCONCLUSIVE,
                f"only {total} requests since promotion ({rollout.min_requests} needed)",
                {"requests": total},
            )
        )
    else:
        share = on_new / total
        checks.append(
            Check(
                "traffic on new version",
                Outcome.SUCCESSFUL if share > MIN_TRAFFIC_SHARE else Outcome.FAILED,
                f"v{new} served {share:.1%} of {total} requests since promotion (needs > {MIN_TRAFFIC_SHARE:.0%})",
                {"share": share, "requests": total},
            )
        )
    smoke_ok = all(c["outcome"] == "successful" for c in rollout.prechecks)
    checks.append(
        Check(
            "smoke tests",
            Outcome.SUCCESSFUL if smoke_ok else Outcome.FAILED,
            "; ".join(f"{c['name']}: {c['outcome']}" for c in rollout.prechecks),
        )
    )
    if rollout.strategy == "canary":
        passed = [a for a in rollout.analyses if a["outcome"] == "successful"]
        ok = len(passed) == len(rollout.steps) and len(passed) == len(rollout.analyses)
        checks.append(
            Check(
                "canary rollout",
                Outcome.SUCCESSFUL if ok else Outcome.FAILED,
                f"{len(passed)} of {len(rollout.steps)} steps passed analysis "
                f"({', '.join(f'{s}%' for s in rollout.steps)})",
            )
        )
    else:
        checks.append(Check("canary rollout", Outcome.INCONCLUSIVE, "direct deployment: no canary ran"))
    if old is None:
        checks.append(Check("no anomaly vs previous", Outcome.INCONCLUSIVE, "no previous version to compare"))
        checks.append(
            Check("rollback validated", Outcome.INCONCLUSIVE, "no previous version to roll back to")
        )
        return checks
    from mloncall.rollout.analysis import feedback_truth

    mv = registry.get_version_or_raise(session=session, name=name, version=new)
    before = window(predictions, rollout.created_at, since)
    baseline = None if before is None else before.filter(_eq(before, old))
    candidate = None if after is None else after.filter(_eq(after, new))
    if baseline is None or baseline.num_rows == 0 or candidate is None or candidate.num_rows == 0:
        checks.append(
            Check(
                "no anomaly vs previous",
                Outcome.INCONCLUSIVE,
                f"need traffic on v{old} before and on v{new} after the promotion",
            )
        )
    else:
        compared, skipped = compare(
            candidate=candidate,
            baseline=baseline,
            candidate_name=f"v{new}",
            baseline_name=f"v{old}",
            classes=list(mv.signature.get("classes", [])),
            truth=feedback_truth(feedback),
            thresholds=Thresholds.from_overrides(rollout.thresholds),
            disagreement=False,
        )
        verdict = worst(c.outcome for c in compared)
        checks.append(
            Check(
                "no anomaly vs previous",
                verdict,
                "; ".join(f"{c.name}: {c.reason}" for c in compared),
                {"checks": [c.to_dict() for c in compared], "skipped": skipped},
            )
        )
    prev = registry.get_version_or_raise(session=session, name=name, version=old)
    integrity = registry.verify(store=store, model_version=prev).check
    smoke = (
        smoke_test(store=store, model_version=prev, tolerance=SMOKE_TOLERANCE)
        if integrity.passed
        else integrity
    )
    ok = integrity.passed and smoke.passed
    checks.append(
        Check(
            "rollback validated",
            Outcome.SUCCESSFUL if ok else Outcome.FAILED,
            f"previous v{old}: {integrity.reason}; {smoke.reason}",
        )
    )
    return checks


def _eq(table: Any, version: int) -> Any:
    import pyarrow.compute as pc

    return pc.equal(table.column("version"), version)


def check_acceptance(
    *, session: Session, store: ArtifactStore, rollout: Rollout, now: dt.datetime
) -> tuple[list[Check], Outcome]:
    """Judge the acceptance criteria and keep the verdict with the rollout."""
    checks = acceptance(session=session, store=store, rollout=rollout, now=now)
    verdict = worst(c.outcome for c in checks)
    rollout.acceptance = {
        "outcome": verdict.label,
        "checks": [c.to_dict() for c in checks],
        "checked_at": now.isoformat(),
    }
    session.flush()
    return checks, verdict


def latest_promoted_or_raise(*, session: Session, name: str) -> Rollout:
    """The model's newest promoted rollout (the one acceptance is about)."""
    registry.get_model_or_raise(session=session, name=name)
    r = session.scalars(
        sa.select(Rollout)
        .where(Rollout.model_name == name, Rollout.state == "promoted")
        .order_by(Rollout.id.desc())
        .limit(1)
    ).one_or_none()
    if r is None:
        raise Conflict(f"model {name!r} has no promoted rollout yet")
    return r

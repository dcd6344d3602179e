"""Deployments as small state machines: pre-checks, canary steps judged by analysis, promote, abort,
rollback.

    deploy --strategy direct ─────────────────────────────────────────────► promoted
    deploy --strategy canary ─► running ─(step passes)─► running … ─(last)─► promoted
                                  │  ▲                         │
                   (inconclusive) ▼  │ resume        (failed)  ▼
                                paused ─────(abort)────────► aborted
    rollback ─────────────────────────────────────────────────────────────► rolled_back

The states and the moves between them are `models.RolloutState` and `models.TRANSITIONS`; every transition
is a `RolloutEvent` with actor, reason and evidence. The pre-checks are `prechecks`, runbook 1's acceptance
criteria `acceptance`. Functions take a session and never commit; the optimistic lock on `Rollout.revision` lets the server's scheduler and a CLI both drive a rollout
without a step being taken twice.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.core import clock
from mloncall.core.durations import parse_seconds
from mloncall.core.errors import Conflict, InvalidInput
from mloncall.core.names import ModelRef
from mloncall.core.outcome import Check, Outcome, worst
from mloncall.monitoring import service as monitoring
from mloncall.registry import service as registry
from mloncall.registry.models import ModelVersion
from mloncall.rollout.analysis import Analysis, Thresholds, analyse_canary
from mloncall.rollout.models import (
    ACTIVE_STATES,
    TRANSITIONS,
    Rollout,
    RolloutEvent,
    RolloutState,
    StepTaken,
    Strategy,
)
from mloncall.rollout.prechecks import SMOKE_TOLERANCE, prechecks, smoke_test
from mloncall.serving import service as routing
from mloncall.stores.artifacts import ArtifactStore

DEFAULT_STEPS = (10, 25, 50, 100)
DEFAULT_STEP_SECONDS = 30.0
DEFAULT_MIN_REQUESTS = 50
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

    strategy: str = Strategy.CANARY
    steps: list[int] = field(default_factory=lambda: list(DEFAULT_STEPS))
    step_duration_s: float = DEFAULT_STEP_SECONDS
    min_requests: int = DEFAULT_MIN_REQUESTS
    thresholds: dict[str, Any] = field(default_factory=dict)
    smoke_tolerance: float = SMOKE_TOLERANCE

    def __post_init__(self) -> None:
        if self.strategy not in (Strategy.CANARY, Strategy.DIRECT):
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


# --- transitions -----------------------------------------------------------------------------------------


def _event(
    session: Session,
    r: Rollout,
    *,
    to_state: RolloutState,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
) -> None:
    """Move r to to_state (one of TRANSITIONS' moves from where it is) and record the move as an event."""
    TRANSITIONS.check(f"rollout #{r.id}", r.state, to_state)
    now = clock.now()
    session.add(
        RolloutEvent(
            rollout=r,
            at=now,
            actor=actor,
            from_state=r.state,
            to_state=to_state,
            step_index=r.step_index,
            weight=r.weight_in(to_state),
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


def _leave_pending(session: Session, r: Rollout, *, to_state: RolloutState, actor: str, reason: str) -> None:
    """The first move of a new rollout, made on its pre-checks: they are the move's evidence."""
    _event(session, r, to_state=to_state, actor=actor, reason=reason, evidence={"prechecks": r.prechecks})


def _promote_target(session: Session, r: Rollout, *, actor: str, reason: str) -> None:
    """Production moves from the rollout's stable version to the version it deploys."""
    _move_production(
        session, name=r.model_name, new=r.to_version, old=r.from_version, actor=actor, reason=reason
    )


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
    mv, production = _deploy_target(session=session, ref=ref, strategy=spec.strategy)
    checks = prechecks(store=store, candidate=mv, production=production, tolerance=spec.smoke_tolerance)
    r = _new_rollout(candidate=mv, production=production, spec=spec, checks=checks, actor=actor)
    session.add(r)
    if worst(c.outcome for c in checks) is not Outcome.SUCCESSFUL:
        failed = "; ".join(f"{c.name}: {c.reason}" for c in checks if not c.passed)
        _leave_pending(
            session, r, to_state=RolloutState.ABORTED, actor=actor, reason=f"pre-check failed: {failed}"
        )
    elif r.strategy == Strategy.DIRECT:
        _promote_directly(session, r, actor=actor)
    else:
        _start_canary(session, r, actor=actor)
    session.flush()
    return r


def _deploy_target(*, session: Session, ref: str, strategy: str) -> tuple[ModelVersion, ModelVersion | None]:
    """The version ref names and the current production one; Conflict or InvalidInput if it cannot deploy."""
    mv = registry.resolve(session=session, ref=ModelRef.parse(ref))
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
    if strategy == Strategy.CANARY and production is None:
        raise InvalidInput(
            f"{name} has no production version to canary against: deploy with --strategy direct"
        )
    return mv, production


def _new_rollout(
    *,
    candidate: ModelVersion,
    production: ModelVersion | None,
    spec: DeploySpec,
    checks: list[Check],
    actor: str,
) -> Rollout:
    """A pending rollout of candidate with its pre-checks recorded; it holds the model's one active slot."""
    now = clock.now()
    name = candidate.model.name
    return Rollout(
        model_name=name,
        active_model=name,
        strategy=spec.strategy,
        from_version=production.version if production else None,
        to_version=candidate.version,
        state=RolloutState.PENDING,
        steps=spec.steps if spec.strategy == Strategy.CANARY else [100],
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


def _promote_directly(session: Session, r: Rollout, *, actor: str) -> None:
    """A direct deployment whose pre-checks passed: production moves at once."""
    _promote_target(session, r, actor=actor, reason=f"direct deployment #{r.id or ''}".strip())
    _leave_pending(
        session, r, to_state=RolloutState.PROMOTED, actor=actor, reason="direct deployment: pre-checks passed"
    )


def _start_canary(session: Session, r: Rollout, *, actor: str) -> None:
    """A canary whose pre-checks passed: its first step's weight routed to it, the `canary` alias on it."""
    name = r.model_name
    routing.set_canary(session=session, name=name, version=r.to_version, weight=r.steps[0] / 100, actor=actor)
    registry.set_alias(
        session=session,
        name=name,
        alias="canary",
        version=r.to_version,
        actor=actor,
        reason="canary rollout started",
    )
    _leave_pending(
        session,
        r,
        to_state=RolloutState.RUNNING,
        actor=actor,
        reason=f"pre-checks passed; canary at {r.steps[0]}%",
    )


def promote(*, session: Session, rollout: Rollout, actor: str, reason: str = "") -> Rollout:
    """Make the canary production now: 100% of traffic, aliases moved."""
    if not rollout.active:
        raise Conflict(f"rollout #{rollout.id} is {rollout.state}: nothing to promote")
    _promote_target(session, rollout, actor=actor, reason=reason or f"rollout #{rollout.id} promoted")
    _event(session, rollout, to_state=RolloutState.PROMOTED, actor=actor, reason=reason or "promoted")
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
    _event(session, rollout, to_state=RolloutState.ABORTED, actor=actor, reason=reason, evidence=evidence)
    session.flush()
    return rollout


def pause(*, session: Session, rollout: Rollout, actor: str, reason: str = "paused by hand") -> Rollout:
    """Hold the canary at its current weight until resumed."""
    if rollout.state != RolloutState.RUNNING:
        raise Conflict(f"rollout #{rollout.id} is {rollout.state}: only a running rollout can be paused")
    _event(session, rollout, to_state=RolloutState.PAUSED, actor=actor, reason=reason)
    session.flush()
    return rollout


def resume(*, session: Session, rollout: Rollout, actor: str, reason: str = "resumed") -> Rollout:
    """Continue a paused rollout; its current step starts again so it is judged on fresh traffic."""
    if rollout.state != RolloutState.PAUSED:
        raise Conflict(f"rollout #{rollout.id} is {rollout.state}: only a paused rollout can be resumed")
    rollout.step_started_at = clock.now()
    _event(session, rollout, to_state=RolloutState.RUNNING, actor=actor, reason=reason)
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
        strategy=Strategy.ROLLBACK,
        from_version=current.version,
        to_version=previous.version,
        state=RolloutState.PENDING,
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
        to_state=RolloutState.ROLLED_BACK,
        actor=actor,
        reason=why,
        evidence={"checks": r.prechecks},
    )
    session.flush()
    return r


# --- analysis steps --------------------------------------------------------------------------------------


def analyse(*, session: Session, store: ArtifactStore, rollout: Rollout, now: dt.datetime) -> Analysis:
    """The current step's analysis of a canary rollout, from the summaries the monitors read."""
    assert rollout.from_version is not None
    mv = registry.get_version_or_raise(session=session, name=rollout.model_name, version=rollout.to_version)

    def served(since: dt.datetime, until: dt.datetime) -> monitoring.ServedWindow:
        return monitoring.served(
            session=session, store=store, model=rollout.model_name, since=since, until=until, now=now
        )

    # the rollout's window is the earlier steps followed by this one: the open minute is read once
    step = served(rollout.step_started_at, now)
    return analyse_canary(
        step=step,
        rollout=served(rollout.created_at, rollout.step_started_at).then(step),
        stable=rollout.from_version,
        canary=rollout.to_version,
        classes=list(mv.signature.get("classes", [])),
        min_requests=rollout.min_requests,
        thresholds=Thresholds.from_overrides(rollout.thresholds),
    )


def evaluate(
    *, session: Session, store: ArtifactStore, rollout: Rollout, now: dt.datetime, actor: str = "analysis"
) -> StepTaken | None:
    """One look at a running canary: abort at once on failure; at the step's end advance, promote or pause.

    Returns the step taken, or None.
    """
    if rollout.state != RolloutState.RUNNING or rollout.strategy != Strategy.CANARY:
        return None
    analysis = analyse(session=session, store=store, rollout=rollout, now=now)
    step_done = (now - rollout.step_started_at).total_seconds() >= rollout.step_duration_s
    if analysis.outcome is Outcome.FAILED:
        record = _keep_analysis(rollout, analysis)
        abort(
            session=session,
            rollout=rollout,
            actor=actor,
            reason=f"canary analysis failed at {rollout.weight:.0%}: {analysis.reason}",
            evidence=record,
        )
        return StepTaken.ABORTED
    if not step_done:
        return None
    elapsed = (now - rollout.step_started_at).total_seconds()
    if analysis.outcome is Outcome.INCONCLUSIVE and elapsed < rollout.step_duration_s + JUDGE_GRACE_S:
        return None  # the serving workers flush their logs every couple of seconds: wait for the last rows
    record = _keep_analysis(rollout, analysis)
    if analysis.outcome is Outcome.INCONCLUSIVE:
        to_state, taken = RolloutState.PAUSED, StepTaken.PAUSED
        reason = f"analysis inconclusive at {rollout.weight:.0%}: {analysis.reason}; resume or abort"
    elif rollout.step_index >= len(rollout.steps) - 1:
        promote(
            session=session,
            rollout=rollout,
            actor=actor,
            reason=f"all {len(rollout.steps)} canary steps passed analysis",
        )
        return StepTaken.PROMOTED
    else:
        rollout.step_index += 1
        rollout.step_started_at = now
        routing.set_weight(session=session, name=rollout.model_name, weight=rollout.weight, actor=actor)
        to_state, taken = RolloutState.RUNNING, StepTaken.ADVANCED
        reason = f"step passed ({analysis.reason}); canary now at {rollout.weight:.0%}"
    _event(session, rollout, to_state=to_state, actor=actor, reason=reason, evidence=record)
    session.flush()
    return taken


def _keep_analysis(rollout: Rollout, analysis: Analysis) -> dict[str, Any]:
    """Append the analysis to the rollout's record of judged steps and return the entry kept."""
    record = {"step": rollout.step_index, "weight": rollout.weight, **analysis.to_dict()}
    rollout.analyses = [*rollout.analyses, record]
    return record

"""Runbook 1's acceptance criteria for a promoted rollout, judged from what was served since the promotion
(read from the summaries the monitors and the canary analysis read, `monitoring.service.served`).

Five checks, each with its outcome and reason: the new version serves the traffic, the pre-checks passed,
every canary step passed analysis, nothing got worse than the previous version, and a rollback to the
previous version would work. The verdict (the worst of them) is kept with the rollout.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.core.errors import Conflict
from mloncall.core.outcome import Check, Outcome, worst
from mloncall.monitoring import service as monitoring
from mloncall.monitoring.served import ServedWindow, VersionServed
from mloncall.registry import service as registry
from mloncall.rollout.analysis import Sides, Thresholds, compare
from mloncall.rollout.models import Rollout, RolloutState, Strategy
from mloncall.rollout.prechecks import SMOKE_TOLERANCE, smoke_test
from mloncall.stores.artifacts import ArtifactStore

#: Share of traffic the new version must serve after promotion (runbook 1 acceptance).
MIN_TRAFFIC_SHARE = 0.95


def acceptance(*, session: Session, store: ArtifactStore, rollout: Rollout, now: dt.datetime) -> list[Check]:
    """Runbook 1's acceptance criteria, judged from what was served since the promotion."""
    if rollout.state != RolloutState.PROMOTED or rollout.finished_at is None:
        raise Conflict(f"rollout #{rollout.id} is {rollout.state}: acceptance is checked after promotion")
    new, old = rollout.to_version, rollout.from_version

    def served(since: dt.datetime, until: dt.datetime) -> ServedWindow:
        return monitoring.served(
            session=session, store=store, model=rollout.model_name, since=since, until=until, now=now
        )

    after = served(rollout.finished_at, now)
    checks = [_traffic_on_new(rollout, after), _smoke_tests(rollout), _canary_rollout(rollout)]
    if old is None:
        checks.append(Check("no anomaly vs previous", Outcome.INCONCLUSIVE, "no previous version to compare"))
        checks.append(
            Check("rollback validated", Outcome.INCONCLUSIVE, "no previous version to roll back to")
        )
        return checks
    mv = registry.get_version_or_raise(session=session, name=rollout.model_name, version=new)
    before = served(rollout.created_at, rollout.finished_at)
    checks.append(
        _no_anomaly(
            rollout=rollout,
            baseline=before.of(old),
            candidate=after.of(new),
            classes=list(mv.signature.get("classes", [])),
        )
    )
    checks.append(_rollback_validated(session=session, store=store, name=rollout.model_name, old=old))
    return checks


def _traffic_on_new(rollout: Rollout, after: ServedWindow) -> Check:
    """More than MIN_TRAFFIC_SHARE of the requests since promotion (every request logged, routed or not)
    went to the new version."""
    total = after.rows
    if total < rollout.min_requests:
        return Check(
            "traffic on new version",
            Outcome.INCONCLUSIVE,
            f"only {total} requests since promotion ({rollout.min_requests} needed)",
            {"requests": total},
        )
    new = rollout.to_version
    served_new = after.of(new)
    share = (served_new.summary.rows if served_new is not None else 0) / total
    return Check(
        "traffic on new version",
        Outcome.SUCCESSFUL if share > MIN_TRAFFIC_SHARE else Outcome.FAILED,
        f"v{new} served {share:.1%} of {total} requests since promotion (needs > {MIN_TRAFFIC_SHARE:.0%})",
        {"share": share, "requests": total},
    )


def _smoke_tests(rollout: Rollout) -> Check:
    """Every pre-check recorded at deploy time passed."""
    smoke_ok = all(c["outcome"] == "successful" for c in rollout.prechecks)
    return Check(
        "smoke tests",
        Outcome.SUCCESSFUL if smoke_ok else Outcome.FAILED,
        "; ".join(f"{c['name']}: {c['outcome']}" for c in rollout.prechecks),
    )


def _canary_rollout(rollout: Rollout) -> Check:
    """Every canary step was analysed once and passed; a direct deployment has nothing to show."""
    if rollout.strategy != Strategy.CANARY:
        return Check("canary rollout", Outcome.INCONCLUSIVE, "direct deployment: no canary ran")
    passed = [a for a in rollout.analyses if a["outcome"] == "successful"]
    ok = len(passed) == len(rollout.steps) and len(passed) == len(rollout.analyses)
    return Check(
        "canary rollout",
        Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        f"{len(passed)} of {len(rollout.steps)} steps passed analysis "
        f"({', '.join(f'{s}%' for s in rollout.steps)})",
    )


def _no_anomaly(
    *, rollout: Rollout, baseline: VersionServed | None, candidate: VersionServed | None, classes: list[str]
) -> Check:
    """The new version's routed requests after promotion against the previous one's before it, by the
    canary's own comparison."""
    new, old = rollout.to_version, rollout.from_version
    if (
        baseline is None
        or baseline.summary.routed.rows == 0
        or candidate is None
        or candidate.summary.routed.rows == 0
    ):
        return Check(
            "no anomaly vs previous",
            Outcome.INCONCLUSIVE,
            f"need traffic on v{old} before and on v{new} after the promotion",
        )
    sides = Sides(candidate, baseline, f"v{new}", f"v{old}", Thresholds.from_overrides(rollout.thresholds))
    compared, skipped = compare(sides, classes=classes, disagreement=False)
    return Check(
        "no anomaly vs previous",
        worst(c.outcome for c in compared),
        "; ".join(f"{c.name}: {c.reason}" for c in compared),
        {"checks": [c.to_dict() for c in compared], "skipped": skipped},
    )


def _rollback_validated(*, session: Session, store: ArtifactStore, name: str, old: int) -> Check:
    """The previous version is intact and passes its smoke test, so a rollback to it would work."""
    prev = registry.get_version_or_raise(session=session, name=name, version=old)
    integrity = registry.verify(store=store, model_version=prev).check
    smoke = (
        smoke_test(store=store, model_version=prev, tolerance=SMOKE_TOLERANCE)
        if integrity.passed
        else integrity
    )
    ok = integrity.passed and smoke.passed
    return Check(
        "rollback validated",
        Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        f"previous v{old}: {integrity.reason}; {smoke.reason}",
    )


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
        .where(Rollout.model_name == name, Rollout.state == RolloutState.PROMOTED)
        .order_by(Rollout.id.desc())
        .limit(1)
    ).one_or_none()
    if r is None:
        raise Conflict(f"model {name!r} has no promoted rollout yet")
    return r

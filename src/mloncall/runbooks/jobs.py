"""Background work for runbooks, in the server's scheduler: when an alert of a rule with `auto_run: checks`
fires, run its runbook's read-only triage checks and attach their evidence to the alert.

Alerts know nothing of runbooks: this job reads the alerts that fire and the rules in force. Each firing
(the alert's latest `firing` or `reopened` event) gets one checks-only run (`RunMode.CHECKS`, kept with
the other runs, so `runbook status` and `runbook export` show every check's evidence) and one `checks`
event in the alert's history that names the run and sums up its checks. A second pass finds the event and
does nothing; an alert that resolves and fires again gets its checks again. One process per installation
runs the job (the loop's lock).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.alerts import lifecycle, rulesets
from mloncall.alerts.models import Alert, AlertEvent
from mloncall.alerts.states import AlertSource, AlertState, EventKind
from mloncall.core import clock
from mloncall.core.errors import MloncallError
from mloncall.core.outcome import Outcome
from mloncall.core.records import Record
from mloncall.runbooks import engine, service
from mloncall.runbooks.states import RunMode
from mloncall.stores.context import Context
from mloncall.stores.jobs import LockedLoop

log = logging.getLogger("mloncall.runbooks")

ACTOR = "auto-run"
DEFAULT_INTERVAL = dt.timedelta(seconds=30)
_FIRINGS = (EventKind.FIRING, EventKind.REOPENED)


@dataclass
class AutoRun(Record):
    """The checks one firing alert got: the run (None when the runbook could not run) and the verdict."""

    alert_id: int
    runbook: str
    run_id: int | None
    outcome: str
    reason: str


@dataclass(frozen=True)
class _Due:
    alert_id: int
    runbook: str
    firing_event: int


def due_alerts(*, session: Session) -> list[_Due]:
    """Firing alerts of `auto_run: checks` rules whose current firing has no checks attached yet."""
    rules = {
        r.name: r.runbook
        for r in rulesets.active_rules(session=session).rules.rules
        if r.auto_run == RunMode.CHECKS
    }
    if not rules:
        return []
    alerts = session.scalars(
        sa.select(Alert)
        .where(
            Alert.state == AlertState.FIRING,
            Alert.source == AlertSource.MLONCALL,
            Alert.rule.in_(sorted(rules)),
        )
        .order_by(Alert.id)
    ).all()
    due: list[_Due] = []
    for alert in alerts:
        firing = _latest(session, alert.id, _FIRINGS)
        if firing is None:
            continue
        checked = _latest(session, alert.id, (EventKind.CHECKS,))
        if checked is None or checked < firing:
            due.append(_Due(alert.id, rules[alert.rule], firing))
    return due


def _latest(session: Session, alert_id: int, kinds: tuple[str, ...]) -> int | None:
    found: int | None = session.scalar(
        sa.select(sa.func.max(AlertEvent.id)).where(
            AlertEvent.alert_id == alert_id, AlertEvent.kind.in_(kinds)
        )
    )
    return found


def run_once(ctx: Context) -> list[AutoRun]:
    """One pass: the checks of every alert that is due, each attached to its alert."""
    with ctx.db.session() as session:
        due = due_alerts(session=session)
    done = []
    for item in due:
        result = _check(ctx, item)
        log.info("alert #%s: %s checks %s", item.alert_id, item.runbook, result.outcome)
        done.append(result)
    return done


def _check(ctx: Context, item: _Due) -> AutoRun:
    """Run the checks of one due alert and attach their evidence (a runbook that cannot run is said so)."""
    checks: list[dict[str, Any]] = []
    try:
        run_id: int | None = engine.create(
            ctx, runbook=item.runbook, params={}, actor=ACTOR, alert_id=item.alert_id, mode=RunMode.CHECKS
        )
    except MloncallError as exc:  # no such runbook yet, or it needs more than the alert gives
        run_id, outcome = None, Outcome.INCONCLUSIVE.label
        reason = f"the checks of runbook {item.runbook} could not run: {exc.message}"
    else:
        assert run_id is not None
        outcome = engine.run_checks(ctx, run_id, actor=ACTOR)
        checks = _summary(ctx, run_id)
        ran = [f"{c['step']} {c['state']}" for c in checks if c["state"] != "skipped"]
        reason = f"{item.runbook} checks {outcome} (run #{run_id}): {', '.join(ran) or 'none ran'}"
    evidence = {
        "runbook": item.runbook,
        "run": run_id,
        "outcome": outcome,
        "firing_event": item.firing_event,
        "checks": checks,
    }
    if run_id is not None:
        evidence["command"] = f"mloncall runbook status {run_id}"
    with ctx.db.session() as session:
        alert = session.get(Alert, item.alert_id)
        if alert is not None:
            lifecycle.record(
                session,
                alert,
                kind=EventKind.CHECKS,
                from_state=alert.state,
                actor=ACTOR,
                reason=reason,
                at=clock.now(),
                evidence=evidence,
            )
    return AutoRun(
        alert_id=item.alert_id, runbook=item.runbook, run_id=run_id, outcome=outcome, reason=reason
    )


def _summary(ctx: Context, run_id: int) -> list[dict[str, Any]]:
    """Each step of the checks run: its state and reason, and the evidence of those that ran."""
    with ctx.db.session() as session:
        run = service.get_run_or_raise(session=session, run_id=run_id)
        return [
            {
                "step": s.name,
                "title": s.title,
                "state": s.state,
                "reason": s.reason[:500],
                **({"evidence": _small(s.evidence)} if s.state != "skipped" else {}),
            }
            for s in run.steps
        ]


def _small(evidence: dict[str, Any], limit: int = 4000) -> dict[str, Any]:
    """The step's evidence, or only its scalar facts when the whole is large (the run keeps it all)."""
    if len(json.dumps(evidence, default=str)) <= limit:
        return evidence
    return {k: v for k, v in evidence.items() if isinstance(v, str | int | float | bool) or v is None}


class Scheduler(LockedLoop):
    """Runs `run_once` every `[runbooks] auto_run_interval` (default 30s) in one process per installation."""

    name = "runbooks"
    lock_file = "runbooks-auto-run.lock"
    setting = ("runbooks", "auto_run_interval", DEFAULT_INTERVAL)

    def run_pass(self) -> None:
        run_once(self.ctx)

"""Runbook 3, `monitoring --alert ID`: review the alert, investigate inputs and outputs, tell drift from
degradation, decide (the `decision` table), carry the action out, and close the alert with its resolution."""

from __future__ import annotations

from typing import Any

from mloncall.alerts import notify
from mloncall.alerts import service as alerts
from mloncall.core.durations import parse_duration
from mloncall.core.outcome import Check, Outcome, worst
from mloncall.incidents import outbox
from mloncall.incidents import service as incidents
from mloncall.incidents.states import OPEN_STATES, IncidentState
from mloncall.runbooks import report
from mloncall.runbooks.engine import RunContext
from mloncall.runbooks.investigate import Investigation, alert_facts, investigate
from mloncall.runbooks.spec import Criterion, Param, Runbook, Step, model_target
from mloncall.runbooks.states import StepKind

#: The action steps the decision chooses among, by the recommended action.
ACTION_STEPS = {"rollback": "rollback", "retrain": "retraining", "silence as false alarm": "silence"}
FIX_BY_HAND = "fix-by-hand"


def _inv(rc: RunContext) -> Investigation:
    def make() -> Investigation:
        found = investigate(ctx=rc.ctx, alert_id=rc.alert_id, window=None)
        return found

    inv: Investigation = rc.remember("investigation", make)
    return inv


def _alert(rc: RunContext) -> Any:
    with rc.ctx.db.session() as s:
        a = alerts.get_alert_or_raise(session=s, alert_id=rc.alert_id or 0)
        s.expunge(a)
        return a


def review(rc: RunContext) -> Check:
    """1. The alert: rule, state, severity, when it fired and what it said."""
    a = _alert(rc)
    evidence = {"alert": a.id, **alert_facts(a)}
    if a.state == "closed":
        return Check("review", Outcome.FAILED, f"alert {a.id} is already closed: {a.root_cause}", evidence)
    return Check(
        "review",
        Outcome.SUCCESSFUL,
        f"alert {a.id} {a.rule} on {a.model}: {a.state}, {a.severity}; {evidence['summary'] or evidence['reason'] or ''}".strip(),
        evidence,
    )


def inputs(rc: RunContext) -> Check:
    """2. Inputs: drift per feature against the training data, and data quality; the HTML report attached."""
    inv = _inv(rc)
    rc.attach("investigation.html", report.render(inv).encode(), "text/html")
    outcome = worst([inv.drift.outcome, *(c.outcome for c in inv.quality if c.name != "volume")])
    bad = [f"{c.name}: {c.reason}" for c in inv.quality if c.outcome is not Outcome.SUCCESSFUL]
    return Check(
        "inputs",
        outcome,
        "; ".join([inv.drift.reason, *bad]),
        {"drift": inv.drift.to_dict(histograms=False), "quality": [c.to_dict() for c in inv.quality]},
    )


def outputs(rc: RunContext) -> Check:
    """3. Outputs: the predicted class mix per version, and the last canary's disagreement."""
    inv = _inv(rc)
    mixes = [f"v{v.version}: {v.prediction.reason}" for v in inv.drift.versions if v.prediction is not None]
    drifted = [v.prediction.drifted for v in inv.drift.versions if v.prediction is not None]
    outcome = (
        Outcome.FAILED
        if any(drifted)
        else Outcome.SUCCESSFUL
        if drifted and all(d is False for d in drifted)
        else Outcome.INCONCLUSIVE
    )
    if not mixes:
        return Check("outputs", Outcome.INCONCLUSIVE, "no predictions in the window", {"canary": inv.canary})
    return Check("outputs", outcome, "; ".join(mixes), {"canary": inv.canary})


def degradation(rc: RunContext) -> Check:
    """4. Drift or degradation: accuracy with late labels, service health, and the assessment."""
    inv = _inv(rc)
    checks = [inv.accuracy, *inv.service]
    return Check(
        "degradation",
        worst(c.outcome for c in checks),
        f"assessment: {inv.assessment}; " + "; ".join(f"{c.name}: {c.reason}" for c in checks),
        {
            "assessment": inv.assessment,
            "checks": [c.to_dict() for c in checks],
            "findings": inv.findings,
            "previous": inv.previous,
            "recent_deploy": inv.recent_deploy,
        },
    )


def decide(rc: RunContext) -> Check:
    """5. The recommended action from the decision table, and why; the steps that carry it out."""
    inv = _inv(rc)
    r = inv.recommendation
    chosen = [ACTION_STEPS.get(r.action, FIX_BY_HAND)]
    return Check(
        "decide",
        Outcome.SUCCESSFUL,
        f"{inv.assessment} → {r.action}: {r.why}",
        {
            "assessment": inv.assessment,
            "action": r.action,
            "why": r.why,
            "command": r.command,
            "chosen": chosen,
        },
    )


def _silence_comment(rc: RunContext) -> str:
    return f"runbook run #{rc.run_id}: alert {rc.alert_id} was a false alarm"


def silence(rc: RunContext) -> Check:
    a = _alert(rc)
    span = parse_duration(rc.params["silence_for"], what="silence_for")
    with rc.ctx.db.session() as s:
        made = alerts.create_silence(
            session=s,
            matchers=[f"rule={a.rule}", f"model={a.model}"],
            duration=span,
            comment=_silence_comment(rc),
            actor=rc.actor,
        )
        sid, ends = made.id, made.ends_at.isoformat()
    return Check(
        "silence",
        Outcome.SUCCESSFUL,
        f"silence #{sid} on rule={a.rule}, model={a.model} until {ends}",
        {"silence": sid, "ends_at": ends},
    )


def silence_trace(rc: RunContext) -> str | None:
    with rc.ctx.db.session() as s:
        found = [x for x in alerts.list_silences(session=s) if x.comment == _silence_comment(rc)]
        return f"silence #{found[0].id}" if found else None


def _silence_kept(rc: RunContext) -> Check:
    return Check("silence", Outcome.SUCCESSFUL, f"kept {silence_trace(rc)}, made before the interruption")


def rollback(rc: RunContext) -> Check:
    from mloncall.rollout import service as rollouts

    a = _alert(rc)
    with rc.ctx.db.session() as s:
        r = rollouts.rollback(
            session=s,
            store=rc.ctx.store,
            name=a.model,
            actor=rc.actor,
            reason=f"runbook run #{rc.run_id}: alert {a.id}",
        )
        done = f"rolled back {a.model} from v{r.from_version} to v{r.to_version} (rollout #{r.id})"
    return Check("rollback", Outcome.SUCCESSFUL, done, {"rollout": r.id})


def _retraining_data(rc: RunContext) -> Check:
    if not rc.params.get("data"):
        return Check(
            "retraining",
            Outcome.FAILED,
            "retraining needs recent labelled data: start the run with --param data=FILE",
        )
    return Check("retraining", Outcome.SUCCESSFUL, f"labelled data {rc.params['data']}")


def retraining(rc: RunContext) -> Check:
    return rc.subrun("retraining", {"model": _alert(rc).model, "data": rc.params["data"]})


def _step_summary(rc: RunContext, name: str) -> dict[str, Any]:
    from mloncall.runbooks import service

    with rc.ctx.db.session() as s:
        step = service.step_of(service.get_run_or_raise(session=s, run_id=rc.run_id), name)
        return {"step": name, "reason": step.reason}


def communicate(rc: RunContext) -> Check:
    """6. Close the alert with its root cause and the action taken, and tell the notification channels."""
    decided = rc.evidence_of("decide")
    inv_findings = rc.evidence_of("degradation").get("findings", [])
    root_cause = rc.params.get("root_cause") or f"{decided['assessment']}: " + "; ".join(inv_findings[:3])
    taken = next(
        (
            _step_summary(rc, n)
            for n in (*ACTION_STEPS.values(), FIX_BY_HAND)
            if rc.state_of(n) == "successful"
        ),
        {},
    )
    action = str(decided["action"]) + (f": {taken['reason']}" if taken.get("reason") else "")
    with rc.ctx.db.session() as s:
        a = alerts.close(
            session=s,
            alert_id=rc.alert_id or 0,
            root_cause=root_cause[:2000],
            action=action,
            note=f"runbook run #{rc.run_id}",
            actor=rc.actor,
        )
        closed = {"alert": a.id, "state": a.state, "root_cause": a.root_cause, "action": a.action}
        settled = _settle_incident(rc, s, root_cause=root_cause, action=action, corrective=bool(taken))
    sent = notify.send_pending(rc.ctx)
    if settled is not None:
        settled["told"] = [r.to_dict() for r in outbox.send_pending(rc.ctx) if r.incident_id == settled["id"]]
    return Check(
        "communicate",
        Outcome.SUCCESSFUL,
        f"alert {closed['alert']} closed: {root_cause[:200]}" + (f"; {settled['text']}" if settled else ""),
        {**closed, "taken": bool(taken), "incident": settled, "notified": str(sent)[:500]},
    )


def _settle_incident(
    rc: RunContext, s: Any, *, root_cause: str, action: str, corrective: bool
) -> dict[str, Any] | None:
    """The alert's incident follows the run: a corrective action mitigates it with the run's root cause, and
    once every alert it holds is closed that way the problem is over, so the run resolves it (its subscribers
    are told through the incident outbox). Runbook 8 then closes the loop: the post-mortem and the closing."""
    incident = incidents.incident_of_alert(session=s, alert_id=rc.alert_id or 0)
    if incident is None or incident.state not in OPEN_STATES:
        return None
    note = f"runbook run #{rc.run_id} (monitoring): {action}"
    if corrective and incident.state != IncidentState.MITIGATED:
        incidents.mitigate(session=s, incident_id=incident.id, actor=rc.actor, note=note[:2000])
    incident.root_cause = incident.root_cause or root_cause[:2000]
    still_open = [
        link.alert_id
        for link in incidents.links(session=s, incident_id=incident.id, include_detached=False)
        if alerts.get_alert_or_raise(session=s, alert_id=link.alert_id).state != "closed"
    ]
    if corrective and not still_open:
        summary = f"{action} (runbook run #{rc.run_id}, every alert closed): {root_cause}"
        incidents.resolve(
            session=s,
            incident_id=incident.id,
            actor=rc.actor,
            summary=summary[:2000],
            cause=root_cause[:2000],
        )
    text = f"incident {incident.id} {incident.state}" + (
        f"; alerts {', '.join(map(str, still_open))} still open" if still_open else "; every alert closed"
    )
    return {"id": incident.id, "state": str(incident.state), "open_alerts": still_open, "text": text}


def _alert_open(rc: RunContext) -> Check:
    a = _alert(rc)
    if a.state == "closed":
        return Check("communicate", Outcome.FAILED, f"alert {a.id} was closed by {a.closed_by}")
    return Check("communicate", Outcome.SUCCESSFUL, f"alert {a.id} is {a.state}")


def _closed_trace(rc: RunContext) -> str | None:
    a = _alert(rc)
    return f"alert {a.id} closed at {a.closed_at}" if a.state == "closed" else None


def _closed_kept(rc: RunContext) -> Check:
    a = _alert(rc)
    return Check(
        "communicate",
        Outcome.SUCCESSFUL,
        f"alert {a.id} was closed before the interruption",
        {"root_cause": a.root_cause, "action": a.action},
    )


# --- acceptance --------------------------------------------------------------------------------------------


def root_cause_recorded(rc: RunContext) -> Check:
    a = _alert(rc)
    ok = bool((a.root_cause or "").strip())
    return Check(
        "root cause",
        Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        f"root cause: {a.root_cause}" if ok else "no root cause recorded",
        {"root_cause": a.root_cause},
    )


def action_taken(rc: RunContext) -> Check:
    states = {n: rc.state_of(n) for n in (*ACTION_STEPS.values(), FIX_BY_HAND)}
    done = [n for n, st in states.items() if st == "successful"]
    return Check(
        "corrective action",
        Outcome.SUCCESSFUL if done else Outcome.FAILED,
        f"{', '.join(done)} done" if done else "no corrective action was taken",
        {"steps": states},
    )


def alert_closed(rc: RunContext) -> Check:
    a = _alert(rc)
    ok = a.state == "closed" and bool(a.action)
    return Check(
        "alert closed",
        Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        f"alert {a.id} {a.state}" + (f" by {a.closed_by}: action {a.action}" if ok else ""),
        {"state": a.state, "action": a.action, "closed_at": str(a.closed_at)},
    )


RUNBOOK = Runbook(
    name="monitoring",
    title="Model monitoring and alerting",
    scenario="An alert fires: the deployed model shows an accuracy drop or unexpected input distributions.",
    objective="Investigate and resolve alerts on performance degradation, data drift or inference issues.",
    params=(
        Param("model", "the alert's model (taken from the alert)"),
        Param("root_cause", "the root cause to record (default: the assessment and its findings)"),
        Param("silence_for", "how long a false alarm's silence lasts", type="duration", default="2h"),
        Param("data", "recent labelled data, should the decision be to retrain"),
    ),
    steps=(
        Step("review", "Review alert details", StepKind.CHECK, review),
        Step("inputs", "Investigate input data", StepKind.CHECK, inputs, stop_on_failure=False),
        Step("outputs", "Check model outputs", StepKind.CHECK, outputs, stop_on_failure=False),
        Step(
            "degradation",
            "Evaluate drift and degradation",
            StepKind.CHECK,
            degradation,
            stop_on_failure=False,
        ),
        Step(
            "decide",
            "Decide action",
            StepKind.DECISION,
            decide,
            chooses_among=(*ACTION_STEPS.values(), FIX_BY_HAND),
        ),
        Step(
            "rollback",
            "Roll back to the previous version",
            StepKind.ACTION,
            rollback,
            idempotent=False,
            question="Roll back to the previous version?",
        ),
        Step(
            "retraining",
            "Retrain on recent labelled data (the retraining runbook)",
            StepKind.ACTION,
            retraining,
            question="Retrain through the retraining runbook?",
            precondition=_retraining_data,
        ),
        Step(
            "silence",
            "Silence the false alarm",
            StepKind.ACTION,
            silence,
            idempotent=False,
            question=lambda rc: f"Silence this rule on this model for {rc.params['silence_for']}?",
            trace=silence_trace,
            resume=_silence_kept,
        ),
        Step(
            FIX_BY_HAND,
            "Fix it by hand (the recommended command)",
            StepKind.MANUAL,
            lambda rc: Check("fix", Outcome.SUCCESSFUL),
            question=lambda rc: f"Done: {rc.evidence_of('decide').get('command')}?",
        ),
        Step(
            "communicate",
            "Communicate incident status and close the alert",
            StepKind.ACTION,
            communicate,
            question="Close the alert with its root cause and notify?",
            idempotent=False,
            precondition=_alert_open,
            trace=_closed_trace,
            resume=_closed_kept,
        ),
    ),
    acceptance=(
        Criterion("root cause identified and documented", root_cause_recorded),
        Criterion("corrective action taken", action_taken),
        Criterion("alert closed with resolution details", alert_closed),
    ),
    contacts=("Primary: ML Engineering oncall", "Secondary: Data Engineering"),
    target=model_target,
    needs_alert=True,
    troubleshooting=("False alarm.", "Bad input data.", "Performance regression."),
)

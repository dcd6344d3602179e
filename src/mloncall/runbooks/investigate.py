"""Runbook 3 as one command: review an alert, investigate inputs and outputs, tell drift from degradation
from bad input data from a false alarm, and recommend the action.

The assessment and the action follow the table in `runbooks.decision` (drift, an accuracy drop, data
quality, service health, a recent deploy, a previous version that verifies and was healthy, whether labels
arrive). Rollback is recommended only when such a previous version exists.

Everything is judged on the version in production (the routed stable version): an aborted canary's rows in
the same window are shown but do not decide. A recent deploy means a rollout promoted within
`RECENT_DEPLOY` before the window ended; it is blamed only for a degradation without drift, or for service
problems (error rate, latency), since drifting inputs explain a drop the deploy did not cause.

`investigate` runs three steps, each callable on its own: `gather_evidence` (every monitor over the window
and the recent rollouts), `assess_evidence` (the table above) and `recommend` (the action and its command).
They read and never write: closing the alert is the caller's unit of work.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from typing import Any

from mloncall.alerts import service as alerts
from mloncall.alerts.models import Alert
from mloncall.core import clock
from mloncall.core.errors import InvalidInput, NotFound
from mloncall.core.outcome import Check, Outcome
from mloncall.monitoring import service as monitoring
from mloncall.monitoring.drift_report import DriftReport, VersionDrift
from mloncall.rollout import service as rollouts
from mloncall.rollout.models import Rollout
from mloncall.runbooks import decision
from mloncall.serving import service as routing
from mloncall.stores.context import Context

RECENT_DEPLOY = dt.timedelta(hours=24)
DEFAULT_WINDOW = dt.timedelta(hours=1)
QUALITY_KINDS = ("missing_features", "out_of_range", "validation_failures", "volume")
SERVICE_KINDS = ("error_rate", "latency")


@dataclass
class Recommendation:
    action: str
    why: str
    command: str

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "why": self.why, "command": self.command}


@dataclass
class Evidence:
    """What the runbook gathers before it judges: every monitor over the window, and the recent rollouts."""

    model: str
    since: dt.datetime
    until: dt.datetime
    production: int | None  # the routed stable version: the one that decides
    drift: DriftReport
    quality: list[Check]
    accuracy: Check
    service: list[Check]
    recent_deploy: dict[str, Any] | None
    canary: dict[str, Any] | None
    #: the version a rollback would return to: {"version", "ok", "why"} (`decision`: rollback needs ok)
    previous: dict[str, Any]

    @property
    def production_drift(self) -> VersionDrift | None:
        """The drift verdict of the production version, if it served in the window."""
        return next((v for v in self.drift.versions if v.version == self.production), None)


@dataclass
class Investigation(Evidence):
    """Everything `investigate` found, in the order the runbook asks for it: the evidence and its judgement."""

    alert: dict[str, Any]
    assessment: str
    recommendation: Recommendation
    findings: list[str] = field(default_factory=list)
    report: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert": self.alert,
            "model": self.model,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "drift": self.drift.to_dict(histograms=False),
            "quality": [c.to_dict() for c in self.quality],
            "accuracy": self.accuracy.to_dict(),
            "service": [c.to_dict() for c in self.service],
            "canary": self.canary,
            "recent_deploy": self.recent_deploy,
            "previous": self.previous,
            "assessment": self.assessment,
            "recommendation": self.recommendation.to_dict(),
            "findings": self.findings,
            "report": self.report,
        }


def investigate(
    *,
    ctx: Context,
    alert_id: int | None = None,
    model: str | None = None,
    window: dt.timedelta | None = None,
    now: dt.datetime | None = None,
) -> Investigation:
    """Gather the evidence for an alert (or a model with no alert), assess it and recommend the action."""
    alert = _load_alert(ctx, alert_id)
    model = model or (alert.model if alert is not None else None)
    if not model:
        raise InvalidInput("name a model: this alert carries no model label")
    since, until = _window_of(alert, window, now or clock.now())
    evidence = gather_evidence(
        ctx=ctx, model=model, since=since, until=until, drift_params=_rule_params(alert)
    )
    assessment, action = assess_evidence(evidence)
    return Investigation(
        **{f.name: getattr(evidence, f.name) for f in fields(Evidence)},
        alert=_alert_dict(alert) if alert is not None else {},
        assessment=assessment,
        recommendation=recommend(action=action, evidence=evidence, alert=alert),
        findings=_findings(evidence),
    )


# --- 1. gather the evidence --------------------------------------------------------------------------------


def gather_evidence(
    *,
    ctx: Context,
    model: str,
    since: dt.datetime,
    until: dt.datetime,
    drift_params: dict[str, Any] | None = None,
) -> Evidence:
    """Every monitor of the model over [since, until), judged on the production version, and its rollouts."""
    span = until - since
    production = _production_version(ctx, model)

    def run(kind: str) -> Check:
        check = monitoring.run_monitor(ctx=ctx, kind=kind, model=model, window=span, params={}, now=until)
        return focus_on(check, production)

    drift = monitoring.drift_report(ctx=ctx, model=model, window=span, now=until, params=drift_params)
    quality = [run(k) for k in QUALITY_KINDS]
    accuracy = run("accuracy")
    service = [run(k) for k in SERVICE_KINDS]
    recent = _recent_rollouts(ctx, model)
    deploy = _recent_deploy(recent, until)
    return Evidence(
        model=model,
        since=since,
        until=until,
        production=production,
        drift=drift,
        quality=quality,
        accuracy=accuracy,
        service=service,
        recent_deploy=deploy,
        canary=_last_canary(recent),
        previous=previous_version(
            ctx=ctx, model=model, deploy=deploy, production=production, span=span, until=until
        ),
    )


def _load_alert(ctx: Context, alert_id: int | None) -> Alert | None:
    if alert_id is None:
        return None
    with ctx.db.session() as s:
        alert = alerts.get_alert_or_raise(session=s, alert_id=alert_id)
        s.expunge(alert)
    return alert


def _evidence_of(alert: Alert | None) -> dict[str, Any]:
    """The evidence of the alert's last check, or nothing."""
    return (alert.last_check or {}).get("evidence", {}) if alert is not None else {}


def _rule_params(alert: Alert | None) -> dict[str, Any] | None:
    """A drift alert's own rule parameters, so the report judges drift as the alert did."""
    evidence = _evidence_of(alert)
    return evidence.get("params") if evidence.get("kind") == "drift" else None


def _window_of(
    alert: Alert | None, window: dt.timedelta | None, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """The alert's own evaluation window when it recorded one, else `window` (default 1 h) before now."""
    evidence = _evidence_of(alert)
    if alert is not None and window is None and evidence.get("since") and evidence.get("until"):
        try:
            since = dt.datetime.fromisoformat(evidence["since"])
            until = dt.datetime.fromisoformat(evidence["until"])
            if until > since:
                return since, max(until, now) if alert.state in ("pending", "firing") else until
        except (TypeError, ValueError):
            pass
    span = window or DEFAULT_WINDOW
    return now - span, now


def alert_facts(alert: Alert) -> dict[str, Any]:
    """An alert as the oncall engineer reviews it: rule, model, state, severity, when it fired, what it said."""
    return {
        "rule": alert.rule,
        "model": alert.model,
        "state": alert.state,
        "severity": alert.severity,
        "fired_at": alert.fired_at.isoformat() if alert.fired_at else None,
        "summary": (alert.annotations or {}).get("summary"),
        "reason": (alert.last_check or {}).get("reason"),
    }


def _alert_dict(alert: Alert) -> dict[str, Any]:
    return {"id": alert.id, **alert_facts(alert), "runbook": alert.runbook, "value": alert.value}


def _production_version(ctx: Context, model: str) -> int | None:
    """The version the routing serves as stable (what users get), or None if the model is not served."""
    with ctx.db.session() as s:
        try:
            return routing.effective(session=s, name=model).stable_version
        except NotFound:
            return None


def _recent_rollouts(ctx: Context, model: str) -> list[Rollout]:
    """The model's newest 20 rollouts, newest first, detached from the session that read them."""
    with ctx.db.session() as s:
        newest = list(reversed(rollouts.history(session=s, name=model)))[:20]
        for r in newest:
            s.expunge(r)
    return newest


def _recent_deploy(recent: list[Rollout], until: dt.datetime) -> dict[str, Any] | None:
    """The newest rollout that finished within RECENT_DEPLOY before the window ended (rollbacks excepted)."""
    deploy = next(
        (
            r
            for r in recent
            if r.state in ("promoted", "rolled_back")
            and r.finished_at is not None
            and until - RECENT_DEPLOY <= r.finished_at <= until
            and r.strategy != "rollback"
        ),
        None,
    )
    if deploy is None:
        return None
    return {
        "rollout": deploy.id,
        "from_version": deploy.from_version,
        "to_version": deploy.to_version,
        "at": deploy.finished_at.isoformat() if deploy.finished_at else None,
    }


def _last_canary(recent: list[Rollout]) -> dict[str, Any] | None:
    """The newest analysed canary and its last disagreement check."""
    canary = next((r for r in recent if r.strategy == "canary" and r.analyses), None)
    if canary is None:
        return None
    last = canary.analyses[-1]
    disagreement = next((c for c in last.get("checks", []) if c["name"] == "disagreement"), None)
    return {
        "rollout": canary.id,
        "versions": [canary.from_version, canary.to_version],
        "state": canary.state,
        "disagreement": disagreement,
    }


def focus_on(check: Check, version: int | None) -> Check:
    """The check as judged for one version (its `parts` evidence), or unchanged if it has no such part."""
    parts = check.evidence.get("parts") or {}
    part = parts.get(f"v{version}") if version is not None else None
    if not part:
        return check
    return Check(check.name, Outcome.parse(part["outcome"]), f"v{version}: {part['reason']}", check.evidence)


# --- 2. assess ---------------------------------------------------------------------------------------------


def assess_evidence(evidence: Evidence) -> tuple[str, str]:
    """(assessment, action) of the gathered evidence, drift judged on the production version."""
    judged = evidence.production_drift
    n_features = max(len(judged.features), 1) if judged is not None else 1
    return assess(
        drift=judged.outcome if judged is not None else evidence.drift.outcome,
        accuracy=evidence.accuracy.outcome,
        quality=evidence.quality,
        service=evidence.service,
        recent_deploy=evidence.recent_deploy is not None,
        drifted_share=len(drifted_features(evidence.drift, evidence.production)) / n_features,
        previous_ok=bool(evidence.previous.get("ok")),
        labels_arriving=bool(evidence.accuracy.evidence.get("feedback_rows", 1)),
        previous_why=str(evidence.previous.get("why", "")),
    )


def assess(
    *,
    drift: Outcome,
    accuracy: Outcome,
    quality: list[Check],
    service: list[Check],
    recent_deploy: bool,
    drifted_share: float = 0.0,
    previous_ok: bool = False,
    labels_arriving: bool = True,
    previous_why: str = "",
) -> tuple[str, str]:
    """(assessment, action) from the monitors' outcomes, following `decision`'s table."""
    found = decision.decide(
        decision.Facts(
            data_quality_failing=any(c.outcome is Outcome.FAILED and c.name != "volume" for c in quality),
            service_failing=any(c.outcome is Outcome.FAILED for c in service),
            drift=drift is Outcome.FAILED,
            accuracy_drop=accuracy is Outcome.FAILED,
            recent_deploy=recent_deploy,
            previous_ok=previous_ok,
            labels_arriving=labels_arriving,
            drifted_share=drifted_share,
            traffic_dropped=any(c.outcome is Outcome.FAILED and c.name == "volume" for c in quality),
            previous_why=previous_why or "no previous version verified healthy",
        )
    )
    return found.assessment, found.action


def previous_version(
    *,
    ctx: Context,
    model: str,
    deploy: dict[str, Any] | None,
    production: int | None,
    span: dt.timedelta,
    until: dt.datetime,
) -> dict[str, Any]:
    """The version a rollback would return to, whether its artifacts verify, and whether it was healthy
    on comparable traffic (its own, over the same span, before the deploy)."""
    from mloncall.registry import service as registry

    with ctx.db.session() as s:
        alias = registry.get_alias(session=s, name=model, alias="previous")
        version = deploy["from_version"] if deploy else (alias.model_version.version if alias else None)
        if version is None or version == production:
            return {
                "version": None,
                "ok": False,
                "why": f"there is no previous version: v{production} is the only one ever in production",
            }
        mv = registry.get_version_or_raise(session=s, name=model, version=version)
        intact = registry.verify(store=ctx.store, model_version=mv).check
    if not intact.passed:
        return {
            "version": version,
            "ok": False,
            "why": f"previous v{version} does not verify: {intact.reason}",
        }
    before = dt.datetime.fromisoformat(deploy["at"]) if deploy and deploy.get("at") else until - span
    checks = [
        focus_on(
            monitoring.run_monitor(ctx=ctx, kind=k, model=model, window=span, params={}, now=before), version
        )
        for k in ("accuracy", "error_rate")
    ]
    healthy = all(c.outcome is not Outcome.FAILED for c in checks) and any(c.passed for c in checks)
    why = "; ".join(f"{c.name}: {c.reason}" for c in checks)
    return {
        "version": version,
        "ok": healthy,
        "why": f"previous v{version} "
        + ("was healthy" if healthy else "was not shown healthy")
        + f" ({why})",
    }


def drifted_features(drift: DriftReport, version: int | None = None) -> list[str]:
    """Features that drifted, for one version or for any."""
    names: list[str] = []
    for v in drift.versions:
        if version is not None and v.version != version:
            continue
        for f in v.features:
            if f.drifted and f.feature not in names:
                names.append(f.feature)
    return names


def _findings(evidence: Evidence) -> list[str]:
    judged = evidence.production_drift
    out = [
        f"inputs of production v{evidence.production}: {judged.reason}"
        if judged is not None
        else f"inputs: {evidence.drift.reason}"
    ]
    moved = drifted_features(evidence.drift)
    if moved:
        out.append(f"drifted features: {', '.join(moved)}")
    out.append(f"accuracy: {evidence.accuracy.reason}")
    out.extend(f"{c.name}: {c.reason}" for c in evidence.quality if c.outcome is not Outcome.SUCCESSFUL)
    out.extend(f"{c.name}: {c.reason}" for c in evidence.service if c.outcome is Outcome.FAILED)
    deploy = evidence.recent_deploy
    if deploy:
        out.append(f"recent deploy: v{deploy['from_version']} → v{deploy['to_version']} at {deploy['at']}")
    return out


# --- 3. recommend ------------------------------------------------------------------------------------------


def recommend(*, action: str, evidence: Evidence, alert: Alert | None = None) -> Recommendation:
    """Why the action fits this evidence, and the command that takes it."""
    model, deploy = evidence.model, evidence.recent_deploy
    moved = drifted_features(evidence.drift, evidence.production)
    ref = f"alert {alert.id}" if alert is not None else model
    close = (
        f"mloncall investigate {alert.id} --root-cause '...' --action '{action}'" if alert is not None else ""
    )
    if action == "rollback":
        previous = evidence.previous  # rollback is decided only when a verified, healthy previous exists
        went_live = f"v{deploy['to_version']} went live before the problem; " if deploy else ""
        return Recommendation(
            action,
            f"{went_live}v{previous['version']} verifies and {previous['why'].split(' ', 2)[-1]}",
            f"mloncall rollback {model} --reason '{ref}'",
        )
    if action == "fix upstream data":
        bad = ", ".join(
            c.name for c in evidence.quality if c.outcome is Outcome.FAILED and c.name != "volume"
        )
        return Recommendation(
            action,
            f"the inputs themselves are wrong ({bad}); the model is not the cause"
            if bad
            else f"only {', '.join(moved)} moved and accuracy fell with it: a changed upstream source (units, "
            "calibration, a broken transform) rather than a changed world; retraining would learn the bug",
            "check the upstream source and pipeline, then " + (close or "re-run the monitors"),
        )
    if action == "retrain":
        no_rollback = f"; no rollback: {evidence.previous['why']}" if deploy else ""
        return Recommendation(
            action,
            "accuracy dropped on current data; a model trained on it should recover" + no_rollback,
            f"mloncall retrain {model} --data RECENT_LABELLED.csv",
        )
    if action == "check upstream data":
        waiting = evidence.accuracy.outcome is Outcome.INCONCLUSIVE
        return Recommendation(
            action,
            f"{', '.join(moved) or 'inputs'} moved away from the training data while accuracy "
            + ("cannot be judged yet (waiting for labels)" if waiting else "holds")
            + ": a changed upstream source (units, encoding, a new population) is the usual cause",
            f"check the upstream source of {', '.join(moved) or 'the inputs'}; retrain if accuracy drops; {close}".strip(
                "; "
            ),
        )
    if action == "silence as false alarm":
        return Recommendation(
            action,
            "no drift, no accuracy drop, no bad data in the window",
            f"mloncall alerts silence -m model={model} --duration 2h --comment '{ref}: false alarm'",
        )
    return Recommendation(action, "service checks fail without a recent deploy", "see the scaling runbook")

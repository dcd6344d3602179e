"""The post-mortem: a Markdown draft from the timeline and the stored evidence (summary, impact from the
prediction log, detection with the times to detect, acknowledge, mitigate and resolve, trigger, root cause,
resolution, action items), completed by people with what went well and badly. The incident closes only once
it is complete; action items are tracked until done.

Times are measured from the first signal (when the condition behind the first alert started to hold):
detect = alert fired - first signal; acknowledge = acknowledged - alert fired; mitigate and resolve = that
moment - first signal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.access import service as access
from mloncall.alerts.models import Alert
from mloncall.core import clock
from mloncall.core.durations import format_duration
from mloncall.core.errors import Conflict, InvalidInput, NotFound
from mloncall.incidents import timeline as timeline_mod
from mloncall.incidents.lifecycle import get_incident_or_raise
from mloncall.incidents.models import ActionItem, Incident, IncidentAlert, Postmortem, TimelineEntry
from mloncall.incidents.roles import current_roles
from mloncall.incidents.states import ActionItemStatus, IncidentState, PostmortemStatus, TimelineKind
from mloncall.incidents.timeline import add_entry, clip
from mloncall.stores import predlog
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.db import get_or_raise

_DONE_STATES = (IncidentState.RESOLVED, IncidentState.CLOSED)


def _alerts(session: Session, incident_id: int) -> list[Alert]:
    return list(
        session.scalars(
            sa.select(Alert)
            .join(IncidentAlert, IncidentAlert.alert_id == Alert.id)
            .where(IncidentAlert.incident_id == incident_id, IncidentAlert.detached_at.is_(None))
            .order_by(Alert.fired_at, Alert.id)
        ).unique()
    )


def _span(a: dt.datetime | None, b: dt.datetime | None) -> str | None:
    return format_duration(b - a) if a is not None and b is not None else None


def facts(session: Session, store: ArtifactStore | None, incident: Incident) -> dict[str, Any]:
    """The figures of the post-mortem: the moments, the times between them, the impact."""
    alerts = _alerts(session, incident.id)
    first_signal = min([incident.detected_at, *(a.active_since for a in alerts)])
    fired = min((a.fired_at for a in alerts if a.fired_at is not None), default=incident.opened_at)
    out: dict[str, Any] = {
        "first_signal": first_signal.isoformat(),
        "alert_fired": fired.isoformat(),
        "opened": incident.opened_at.isoformat(),
        "acknowledged": incident.acknowledged_at.isoformat() if incident.acknowledged_at else None,
        "mitigated": incident.mitigated_at.isoformat() if incident.mitigated_at else None,
        "resolved": incident.resolved_at.isoformat() if incident.resolved_at else None,
        "time_to_detect": _span(first_signal, fired),
        "time_to_acknowledge": _span(fired, incident.acknowledged_at),
        "time_to_mitigate": _span(first_signal, incident.mitigated_at),
        "time_to_resolve": _span(first_signal, incident.resolved_at),
        "alerts": len(alerts),
        "trigger": None,
    }
    if alerts:
        first = alerts[0]
        out["trigger"] = {"alert": first.id, "rule": first.rule, "severity": first.severity,
                          "reason": str((first.last_check or {}).get("reason") or "")}  # fmt: skip
    out["impact"] = _impact(store, incident.model, first_signal, incident.resolved_at or clock.now())
    return out


def _impact(
    store: ArtifactStore | None, model: str | None, since: dt.datetime, until: dt.datetime
) -> dict[str, Any]:
    """Requests and predictions of the model while the incident lasted, from the prediction log."""
    if store is None or model is None:
        return {"predictions": None, "rejected": None, "requests": None}
    predictions = predlog.count_rows(store, kind=predlog.PREDICTIONS, model=model, since=since, until=until)
    rejected = predlog.count_rows(store, kind=predlog.REJECTIONS, model=model, since=since, until=until)
    return {
        "predictions": predictions.rows,
        "rejected": rejected.rows,
        "requests": predictions.rows + rejected.rows,
        "files_skipped": len(predictions.skipped) + len(rejected.skipped),
    }


def _root_causes(session: Session, incident: Incident, alerts: list[Alert]) -> list[str]:
    causes = [incident.root_cause] if incident.root_cause else []
    causes += [f"alert #{a.id} ({a.rule}): {a.root_cause}" for a in alerts if a.root_cause]
    runbook = session.scalars(
        sa.select(TimelineEntry).where(
            TimelineEntry.incident_id == incident.id,
            TimelineEntry.kind == TimelineKind.RUNBOOK,
        )
    ).all()
    causes += [f"runbook: {e.text}" for e in runbook if _finding(e)]
    return causes


#: The step results of a runbook run that say what was found (its other moves stay on the timeline only).
_FINDINGS = ("successful", "failed", "inconclusive")


def _finding(entry: TimelineEntry) -> bool:
    detail = entry.detail or {}
    return "step" not in detail or (detail.get("step") is not None and detail.get("to") in _FINDINGS)


def _md_items(items: Sequence[ActionItem]) -> list[str]:
    if not items:
        return ["- (none yet: `mloncall incident action add ID TITLE --owner P --due YYYY-MM-DD`)"]
    return [
        f"- [{'x' if i.status == ActionItemStatus.DONE else ' '}] {i.title} (owner {i.owner}, due {i.due.isoformat()})"
        for i in items
    ]


def render(session: Session, incident: Incident, figures: dict[str, Any], pm: Postmortem | None) -> str:
    """The Markdown of the post-mortem."""
    alerts = _alerts(session, incident.id)
    impact, trig = figures["impact"], figures["trigger"]
    roles = current_roles(session=session, incident_id=incident.id)
    items = action_items(session=session, incident_id=incident.id)
    tl = timeline_mod.read(session=session, incident_id=incident.id)
    lines = [
        f"# Post-mortem: incident #{incident.id} — {incident.title}", "",
        f"Severity {incident.severity}; model {incident.model or '-'}; state {incident.state}.", "",
        "## Summary", "", incident.resolution or incident.description or incident.title, "",
        "## Impact", "",
        f"- Requests while it lasted: {impact['requests'] if impact['requests'] is not None else 'unknown'}",
        f"- Predictions affected: {impact['predictions'] if impact['predictions'] is not None else 'unknown'}",
        f"- Requests rejected: {impact['rejected'] if impact['rejected'] is not None else 'unknown'}",
        f"- Alerts: {figures['alerts']}", "",
        "## Detection", "",
        "| moment | at | since the first signal |", "| --- | --- | --- |",
        f"| first signal | {figures['first_signal']} | 0s |",
        f"| alert fired | {figures['alert_fired']} | {figures['time_to_detect']} (time to detect) |",
        f"| acknowledged | {figures['acknowledged'] or '-'} | {figures['time_to_acknowledge'] or '-'} after the alert (time to acknowledge) |",
        f"| mitigated | {figures['mitigated'] or '-'} | {figures['time_to_mitigate'] or '-'} (time to mitigate) |",
        f"| resolved | {figures['resolved'] or '-'} | {figures['time_to_resolve'] or '-'} (time to resolve) |", "",
        "## Trigger", "",
        f"Alert #{trig['alert']} {trig['rule']} ({trig['severity']}): {trig['reason'] or 'no reason recorded'}" if trig else "Opened by command.", "",
        "## Root cause", "", *([f"- {c}" for c in _root_causes(session, incident, alerts)] or ["(to be written)"]), "",
        "## Resolution", "", incident.resolution or "(not resolved yet)", "",
        "## Roles", "", *[f"- {r}: {who or 'unclaimed'}" for r, who in roles.items()], "",
        "## Action items", "", *_md_items(items), "",
        "## What went well", "", (pm.went_well if pm and pm.went_well else "(to be written)"), "",
        "## What went badly", "", (pm.went_badly if pm and pm.went_badly else "(to be written)"), "",
        "## Timeline", "", *[f"- {i.at.isoformat()} [{i.kind}] {i.text}" for i in tl], "",
    ]  # fmt: skip
    return "\n".join(lines)


def get_postmortem(*, session: Session, incident_id: int) -> Postmortem | None:
    return session.scalars(sa.select(Postmortem).where(Postmortem.incident_id == incident_id)).one_or_none()


def draft(*, session: Session, store: ArtifactStore | None, incident_id: int, actor: str) -> Postmortem:
    """Draft (or redraft) the post-mortem of a resolved incident from its timeline and evidence."""
    incident = get_incident_or_raise(session=session, incident_id=incident_id)
    if incident.state not in _DONE_STATES:
        raise Conflict(
            f"incident {incident_id} is {incident.state}: a post-mortem is drafted once it is resolved"
        )
    pm = get_postmortem(session=session, incident_id=incident_id)
    if pm is not None and pm.status == PostmortemStatus.COMPLETE:
        return pm
    figures = facts(session, store, incident)
    if pm is None:
        pm = Postmortem(
            incident_id=incident_id,
            status=PostmortemStatus.DRAFT,
            markdown="",
            facts={},
            drafted_at=clock.now(),
        )
        session.add(pm)
        add_entry(
            session=session,
            incident_id=incident_id,
            kind=TimelineKind.POSTMORTEM,
            actor=actor,
            text="post-mortem drafted",
        )
    pm.facts, pm.drafted_at = figures, clock.now()
    session.flush()
    pm.markdown = render(session, incident, figures, pm)
    return pm


def complete(
    *,
    session: Session,
    store: ArtifactStore | None,
    incident_id: int,
    actor: str,
    went_well: str,
    went_badly: str,
    root_cause: str = "",
) -> Postmortem:
    """Mark the post-mortem complete: it needs what went well and badly and a root cause."""
    pm = draft(session=session, store=store, incident_id=incident_id, actor=actor)
    if pm.status == PostmortemStatus.COMPLETE:
        raise Conflict(f"the post-mortem of incident {incident_id} is already complete")
    incident = get_incident_or_raise(session=session, incident_id=incident_id)
    if root_cause.strip():
        incident.root_cause = clip(root_cause.strip())
    missing = [n for n, v in (("went_well", went_well), ("went_badly", went_badly)) if not v.strip()]
    if not _root_causes(session, incident, _alerts(session, incident_id)):
        missing.append("root_cause")
    if missing:
        raise InvalidInput(f"a complete post-mortem needs {', '.join(missing)}")
    pm.went_well, pm.went_badly = clip(went_well.strip()), clip(went_badly.strip())
    pm.status, pm.completed_at, pm.completed_by = PostmortemStatus.COMPLETE, clock.now(), clip(actor, 128)
    pm.markdown = render(session, incident, pm.facts, pm)
    add_entry(
        session=session,
        incident_id=incident_id,
        kind=TimelineKind.POSTMORTEM,
        actor=actor,
        text="post-mortem complete",
    )
    return pm


# --- action items ----------------------------------------------------------------------------------------


def add_action_item(
    *, session: Session, incident_id: int, title: str, owner: str, due: dt.date, actor: str
) -> ActionItem:
    """Follow-up work with an owner (a known principal) and a due date."""
    get_incident_or_raise(session=session, incident_id=incident_id)
    if not title.strip():
        raise InvalidInput("an action item needs a title")
    access.get_principal_or_raise(session=session, name=owner)
    item = ActionItem(
        incident_id=incident_id, title=clip(title.strip()), owner=owner, due=due, status=ActionItemStatus.OPEN,
        created_at=clock.now(), created_by=clip(actor, 128),
    )  # fmt: skip
    session.add(item)
    add_entry(
        session=session, incident_id=incident_id, kind=TimelineKind.ACTION_ITEM, actor=actor,
        text=f"action item: {item.title} (owner {owner}, due {due.isoformat()})",
    )  # fmt: skip
    session.flush()
    _show_items(session, incident_id)
    return item


def finish_action_item(*, session: Session, item_id: int, actor: str) -> ActionItem:
    item = get_or_raise(session, ActionItem, item_id, what="action item")
    if item.status == ActionItemStatus.DONE:
        raise Conflict(f"action item {item_id} was done at {item.done_at}")
    item.status, item.done_at = ActionItemStatus.DONE, clock.now()
    add_entry(
        session=session,
        incident_id=item.incident_id,
        kind=TimelineKind.ACTION_ITEM,
        actor=actor,
        text=f"action item done: {item.title}",
    )
    _show_items(session, item.incident_id)
    return item


def _show_items(session: Session, incident_id: int) -> None:
    """Rewrite the post-mortem's Markdown with its action items as they are now: a complete post-mortem is
    not redrafted, and its items are mostly added and done after it was completed."""
    pm = get_postmortem(session=session, incident_id=incident_id)
    if pm is not None:
        incident = get_incident_or_raise(session=session, incident_id=incident_id)
        pm.markdown = render(session, incident, pm.facts, pm)


def action_items(
    *, session: Session, incident_id: int | None = None, status: str | None = None
) -> Sequence[ActionItem]:
    """Action items, of one incident or all, optionally open or done only."""
    stmt = sa.select(ActionItem)
    if incident_id is not None:
        stmt = stmt.where(ActionItem.incident_id == incident_id)
    if status is not None:
        if status not in tuple(ActionItemStatus):
            raise InvalidInput(f"unknown status {status!r}: use open or done")
        stmt = stmt.where(ActionItem.status == status)
    return session.scalars(stmt.order_by(ActionItem.due, ActionItem.id)).all()


def require_postmortem(*, session: Session, incident_id: int) -> Postmortem:
    pm = get_postmortem(session=session, incident_id=incident_id)
    if pm is None:
        raise NotFound(
            f"incident {incident_id} has no post-mortem yet: `mloncall incident postmortem {incident_id}`"
        )
    return pm

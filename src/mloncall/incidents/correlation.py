"""One incident per problem: alerts join the open incident that holds their alert group, or the one that
shares their ML lineage (model version, feature source, deploy) within the correlation window; otherwise an
alert whose severity says so opens a new incident. Each join records its reason and can be undone; incidents
merge (the duplicate keeps its id and points to the survivor) and unmerge.

At most one open incident holds an alert group: the `GroupClaim` row is unique per group, so two intakes
racing for one group end with one incident (the loser's unit of work fails and retries into a join).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.alerts import lifecycle as alerts
from mloncall.alerts.models import Alert, AlertGroup
from mloncall.alerts.states import AlertState
from mloncall.core import clock
from mloncall.core.durations import format_duration
from mloncall.core.errors import Conflict, InvalidInput, MloncallError
from mloncall.core.records import Record
from mloncall.incidents import escalation
from mloncall.incidents.config import IncidentSettings
from mloncall.incidents.lifecycle import get_incident_or_raise, move, open_incident
from mloncall.incidents.models import GroupClaim, Incident, IncidentAlert
from mloncall.incidents.states import OPEN_STATES, IncidentState, TimelineKind
from mloncall.incidents.timeline import add_entry, clip
from mloncall.registry import service as registry
from mloncall.rollout import service as rollout

INTAKE = "intake"
#: Labels that name where an alert's features come from.
_SOURCE_LABELS = ("feature", "dataset", "source", "pipeline")


# --- lineage ---------------------------------------------------------------------------------------------


def _production(session: Session, model: str) -> tuple[int, int | None] | None:
    """The production version of a model and its training dataset version, if the registry knows it."""
    try:
        alias = registry.get_alias(session=session, name=model, alias="production")
    except MloncallError:
        return None
    if alias is None:
        return None
    return alias.model_version.version, alias.model_version.dataset_version_id


#: Per model, within one intake pass: its production lineage keys and its latest rollout (id, started).
LineageCache = dict[str, tuple[list[tuple[str, str]], tuple[int, dt.datetime] | None]]


def lineage_of(
    session: Session, alert: Alert, window: dt.timedelta, cache: LineageCache | None = None
) -> list[tuple[str, str]]:
    """The alert's lineage as (key, words): its feature source, model version and a deploy within window."""
    labels = {k: str(v) for k, v in (alert.labels or {}).items()}
    keys = [(f"{n}:{labels[n]}", f"the same {n} {labels[n]}") for n in _SOURCE_LABELS if labels.get(n)]
    model = alert.model
    if model is None:
        return keys
    if labels.get("version"):
        keys.append(
            (f"version:{model}:{labels['version']}", f"the same model version {model}:{labels['version']}")
        )
    memo = cache if cache is not None else {}
    if model not in memo:
        found: list[tuple[str, str]] = []
        production = _production(session, model)
        if production is not None:
            version, dataset = production
            found.append((f"version:{model}:{version}", f"the same model version {model}:{version}"))
            if dataset is not None:
                found.append((f"dataset:{dataset}", f"the same training data (dataset version #{dataset})"))
        memo[model] = (found, _latest_rollout(session, model))
    found, latest = memo[model]
    keys.extend(k for k in found if k[0] not in {key for key, _ in keys})
    at = alert.fired_at or alert.active_since
    if latest is not None and at - latest[1] <= window:
        keys.append((f"rollout:{latest[0]}", f"the same deploy (rollout #{latest[0]} of {model})"))
    return keys


def _latest_rollout(session: Session, model: str) -> tuple[int, dt.datetime] | None:
    try:
        r = rollout.latest(session=session, name=model)
    except MloncallError:
        return None
    return (r.id, r.created_at) if r is not None else None


# --- joining ---------------------------------------------------------------------------------------------


def _claim(session: Session, incident: Incident, group_id: int | None, origin: int | None = None) -> None:
    if group_id is None:
        return
    if session.scalars(sa.select(GroupClaim).where(GroupClaim.group_id == group_id)).one_or_none() is None:
        session.add(
            GroupClaim(group_id=group_id, incident_id=incident.id, origin_incident_id=origin or incident.id,
                       claimed_at=clock.now())
        )  # fmt: skip
        session.flush()


def join(
    session: Session,
    incident: Incident,
    alert: Alert,
    *,
    reason: str,
    match: dict[str, object],
    actor: str,
    lineage: Sequence[tuple[str, str]] = (),
) -> IncidentAlert:
    """Link an alert to an incident with the reason; the incident takes the alert's lineage and group."""
    at = clock.now()
    link = IncidentAlert(
        incident_id=incident.id, origin_incident_id=incident.id, alert_id=alert.id, reason=clip(reason),
        match=dict(match), linked_at=at, linked_by=clip(actor, 128),
    )  # fmt: skip
    session.add(link)
    known = set(incident.lineage)
    incident.lineage = [*incident.lineage, *(k for k, _ in lineage if k not in known)]
    incident.last_signal_at = max(incident.last_signal_at, alert.fired_at or at)
    first_signal = alert.active_since
    if first_signal < incident.detected_at:
        incident.detected_at = first_signal
    _claim(session, incident, alert.group_id)
    on = f" on {alert.model}" if alert.model else ""
    add_entry(
        session=session, incident_id=incident.id, kind=TimelineKind.ALERT, actor=actor,
        at=alert.fired_at if alert.fired_at is not None and alert.fired_at <= at else at,
        text=f"alert #{alert.id} {alert.rule}{on} ({alert.severity}) joined: {reason}",
        detail={"alert": alert.id, "match": dict(match)},
    )  # fmt: skip
    session.flush()
    return link


def _open_incidents(session: Session) -> list[Incident]:
    return list(
        session.scalars(sa.select(Incident).where(Incident.state.in_(OPEN_STATES)).order_by(Incident.id))
    )


def _by_lineage(
    session: Session, alert: Alert, keys: list[tuple[str, str]], window: dt.timedelta
) -> tuple[Incident, str, str] | None:
    at = alert.fired_at or alert.active_since
    for incident in _open_incidents(session):
        if at - incident.last_signal_at > window:
            continue
        for key, words in keys:
            if key in incident.lineage:
                return incident, key, words
    return None


@dataclass
class Routed(Record):
    alert_id: int
    incident_id: int | None
    action: str  # joined | opened | skipped
    reason: str


def route(session: Session, settings: IncidentSettings, alert: Alert, *, cache: LineageCache) -> Routed:
    """Join, open or skip one firing alert."""
    keys = lineage_of(session, alert, settings.correlation_window, cache)
    claim = (
        session.scalars(sa.select(GroupClaim).where(GroupClaim.group_id == alert.group_id)).one_or_none()
        if alert.group_id is not None
        else None
    )
    if claim is not None:
        incident = session.get(Incident, claim.incident_id)
        assert incident is not None
        group = session.get(AlertGroup, claim.group_id)
        reason = f"the same alert group {group.key if group else claim.group_id}"
        join(
            session,
            incident,
            alert,
            reason=reason,
            match={"key": f"group:{claim.group_id}"},
            actor=INTAKE,
            lineage=keys,
        )
        return Routed(alert.id, incident.id, "joined", reason)
    found = _by_lineage(session, alert, keys, settings.correlation_window)
    if found is not None:
        incident, key, words = found
        reason = (
            f"{words}, within {format_duration(settings.correlation_window)} of the incident's last signal"
        )
        join(session, incident, alert, reason=reason, match={"key": key}, actor=INTAKE, lineage=keys)
        return Routed(alert.id, incident.id, "joined", reason)
    severity = settings.open_on.get(alert.severity)
    if severity is None:
        return Routed(alert.id, None, "skipped", f"severity {alert.severity} opens no incident")
    summary = (alert.annotations or {}).get("summary")
    incident = open_incident(
        session=session, settings=settings, severity=severity, actor=INTAKE, model=alert.model,
        title=str(summary or f"{alert.rule} on {alert.model or 'unknown model'}"),
        detected_at=alert.active_since, reason=f"opened from alert #{alert.id} {alert.rule} ({alert.severity})",
    )  # fmt: skip
    join(
        session,
        incident,
        alert,
        reason="it opened the incident",
        match={"key": "opened"},
        actor=INTAKE,
        lineage=keys,
    )
    return Routed(alert.id, incident.id, "opened", f"severity {alert.severity} opens a {severity} incident")


def waiting_alerts(*, session: Session, limit: int = 5000) -> Sequence[Alert]:
    """Firing alerts not linked to an incident since they last started to fire (an undone join counts)."""
    linked = sa.exists().where(
        IncidentAlert.alert_id == Alert.id, IncidentAlert.linked_at >= Alert.active_since
    )
    return session.scalars(
        sa.select(Alert).where(Alert.state == AlertState.FIRING, ~linked).order_by(Alert.id).limit(limit)
    ).all()


@dataclass
class Intake(Record):
    routed: list[Routed] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        counts: dict[str, int] = {}
        for r in self.routed:
            counts[r.action] = counts.get(r.action, 0) + 1
        return {"counts": counts, "routed": [r.to_dict() for r in self.routed]}


def intake(*, session: Session, settings: IncidentSettings, alert_ids: Sequence[int] | None = None) -> Intake:
    """Route every waiting firing alert (or the given ones): join, open or skip."""
    rows = (
        [alerts.get_alert_or_raise(session=session, alert_id=i) for i in alert_ids]
        if alert_ids is not None
        else waiting_alerts(session=session)
    )
    cache: LineageCache = {}
    return Intake(
        routed=[route(session, settings, a, cache=cache) for a in rows if a.state == AlertState.FIRING]
    )


# --- by hand ---------------------------------------------------------------------------------------------


def _active_link(session: Session, incident_id: int, alert_id: int) -> IncidentAlert | None:
    return session.scalars(
        sa.select(IncidentAlert).where(
            IncidentAlert.incident_id == incident_id,
            IncidentAlert.alert_id == alert_id,
            IncidentAlert.detached_at.is_(None),
        )
    ).first()


def link_alert(
    *, session: Session, incident_id: int, alert_id: int, actor: str, reason: str
) -> IncidentAlert:
    """Join an alert to an incident by hand, with the reason."""
    incident = get_incident_or_raise(session=session, incident_id=incident_id)
    if incident.state not in OPEN_STATES:
        raise Conflict(f"incident {incident_id} is {incident.state}: alerts join open incidents only")
    alert = alerts.get_alert_or_raise(session=session, alert_id=alert_id)
    if _active_link(session, incident_id, alert_id) is not None:
        raise Conflict(f"alert {alert_id} is already part of incident {incident_id}")
    if not reason.strip():
        raise InvalidInput("say why the alert belongs to the incident")
    return join(
        session, incident, alert, reason=f"by hand: {reason.strip()}", match={"key": "manual"}, actor=actor
    )


def link_opening_alerts(*, session: Session, incident_id: int, alert_ids: Sequence[int], actor: str) -> None:
    """Join the alerts named when the incident was opened by hand, each as `link_alert` does."""
    for alert_id in alert_ids:
        link_alert(
            session=session,
            incident_id=incident_id,
            alert_id=alert_id,
            actor=actor,
            reason="named when opened",
        )


def detach(*, session: Session, incident_id: int, alert_id: int, actor: str, reason: str) -> IncidentAlert:
    """Undo a join: the alert leaves the incident (kept in the record as detached) and is not joined again
    automatically; the incident lets go of its group when no other alert of that group remains."""
    get_incident_or_raise(session=session, incident_id=incident_id)
    link = _active_link(session, incident_id, alert_id)
    if link is None:
        raise Conflict(f"alert {alert_id} is not part of incident {incident_id}")
    link.detached_at, link.detached_by = clock.now(), clip(actor, 128)
    link.detach_reason = clip(reason.strip()) or "undone by hand"
    alert = alerts.get_alert_or_raise(session=session, alert_id=alert_id)
    if alert.group_id is not None:
        others = session.scalars(
            sa.select(IncidentAlert.id)
            .join(Alert, Alert.id == IncidentAlert.alert_id)
            .where(
                IncidentAlert.incident_id == incident_id,
                IncidentAlert.detached_at.is_(None),
                Alert.group_id == alert.group_id,
            )
        ).first()
        if others is None:
            session.execute(
                sa.delete(GroupClaim).where(
                    GroupClaim.group_id == alert.group_id, GroupClaim.incident_id == incident_id
                )
            )
    add_entry(
        session=session, incident_id=incident_id, kind=TimelineKind.ALERT_DETACHED, actor=actor,
        text=f"alert #{alert_id} detached (join undone): {link.detach_reason}; it joined because {link.reason}",
        detail={"alert": alert_id},
    )  # fmt: skip
    session.flush()
    return link


def incident_of_alert(*, session: Session, alert_id: int) -> Incident | None:
    """The incident an alert belongs to now (its newest join not undone; a merged one's survivor), or None."""
    link = session.scalars(
        sa.select(IncidentAlert)
        .where(IncidentAlert.alert_id == alert_id, IncidentAlert.detached_at.is_(None))
        .order_by(IncidentAlert.id.desc())
        .limit(1)
    ).first()
    incident = session.get(Incident, link.incident_id) if link is not None else None
    while incident is not None and incident.merged_into_id is not None:
        incident = session.get(Incident, incident.merged_into_id)
    return incident


def links(*, session: Session, incident_id: int, include_detached: bool = True) -> Sequence[IncidentAlert]:
    """The incident's alerts with the reason each joined, oldest first."""
    stmt = sa.select(IncidentAlert).where(IncidentAlert.incident_id == incident_id)
    if not include_detached:
        stmt = stmt.where(IncidentAlert.detached_at.is_(None))
    return session.scalars(stmt.order_by(IncidentAlert.id)).all()


def merge(*, session: Session, duplicate_id: int, into_id: int, actor: str, reason: str = "") -> Incident:
    """Merge a duplicate into a survivor: its alerts and groups move over, it keeps its id, points to the
    survivor and is `merged` (escalation stops) until unmerged."""
    if duplicate_id == into_id:
        raise InvalidInput(f"cannot merge incident {duplicate_id} into itself")
    duplicate = get_incident_or_raise(session=session, incident_id=duplicate_id)
    survivor = get_incident_or_raise(session=session, incident_id=into_id)
    if survivor.state not in OPEN_STATES:
        raise Conflict(
            f"cannot merge into incident {into_id}: it is {survivor.state}; merge into an open incident"
        )
    if duplicate.state not in OPEN_STATES:
        raise Conflict(f"incident {duplicate_id} is {duplicate.state}: only an open incident can be merged")
    session.execute(
        sa.update(IncidentAlert).where(IncidentAlert.incident_id == duplicate_id).values(incident_id=into_id)
    )
    session.execute(
        sa.update(GroupClaim).where(GroupClaim.incident_id == duplicate_id).values(incident_id=into_id)
    )
    known = set(survivor.lineage)
    survivor.lineage = [*survivor.lineage, *(k for k in duplicate.lineage if k not in known)]
    survivor.detected_at = min(survivor.detected_at, duplicate.detected_at)
    duplicate.state_before_merge, duplicate.merged_into_id = duplicate.state, into_id
    escalation.stop(duplicate)
    why = f"merged into incident {into_id}" + (f": {reason}" if reason else "")
    move(session, duplicate, IncidentState.MERGED, actor=actor, reason=why)
    add_entry(
        session=session, incident_id=into_id, kind=TimelineKind.MERGE, actor=actor,
        text=f"incident #{duplicate_id} ({duplicate.title}) merged in" + (f": {reason}" if reason else ""),
        detail={"merged": duplicate_id},
    )  # fmt: skip
    session.flush()
    return duplicate


def unmerge(*, session: Session, incident_id: int, actor: str, reason: str = "") -> Incident:
    """Undo a merge: the incident's own alerts and groups come back and it returns to the state it left."""
    duplicate = get_incident_or_raise(session=session, incident_id=incident_id)
    if duplicate.state != IncidentState.MERGED or duplicate.merged_into_id is None:
        raise Conflict(f"incident {incident_id} is {duplicate.state}, not merged")
    survivor_id = duplicate.merged_into_id
    session.execute(
        sa.update(IncidentAlert)
        .where(IncidentAlert.incident_id == survivor_id, IncidentAlert.origin_incident_id == incident_id)
        .values(incident_id=incident_id)
    )
    session.execute(
        sa.update(GroupClaim)
        .where(GroupClaim.incident_id == survivor_id, GroupClaim.origin_incident_id == incident_id)
        .values(incident_id=incident_id)
    )
    back = IncidentState(duplicate.state_before_merge or IncidentState.TRIGGERED)
    duplicate.merged_into_id, duplicate.state_before_merge = None, None
    why = f"unmerged from incident {survivor_id}" + (f": {reason}" if reason else "")
    move(session, duplicate, back, actor=actor, reason=why)
    add_entry(
        session=session, incident_id=survivor_id, kind=TimelineKind.MERGE, actor=actor,
        text=f"incident #{incident_id} unmerged" + (f": {reason}" if reason else ""), detail={"unmerged": incident_id},
    )  # fmt: skip
    session.flush()
    return duplicate

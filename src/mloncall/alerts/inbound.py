"""Alerts from a team's existing tools: Alertmanager's webhook (payload version 4) and PagerDuty Events API v2.

Each request is handled in the caller's one unit of work, so a payload that fails half-way stores nothing.

Alertmanager: every alert keeps Alertmanager's fingerprint (`alertmanager:<fingerprint>`), the notification's
`groupKey` is one alert group, `firing` opens (or re-opens within the hold time) and `resolved` resolves.
Alertmanager repeats firing alerts every `repeat_interval`; a repeat changes nothing but the last-seen time.

PagerDuty: `trigger` opens the alert of a `dedup_key` (one is made up and returned when absent), `acknowledge`
and `resolve` act on it. The routing key selects the alert group and is stored only as a digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from mloncall.alerts.evidence import jsonable
from mloncall.alerts.lifecycle import (
    ALERT_SEVERITIES,
    AlertFacts,
    Transition,
    acknowledge,
    current_alert,
    ensure_group,
    move,
    new_alert,
    record,
    reopen,
    resolve_now,
    within_hold,
)
from mloncall.alerts.models import Alert, AlertGroup
from mloncall.alerts.rules import RUNBOOKS
from mloncall.alerts.rulesets import policy_in_force
from mloncall.alerts.schemas import AlertmanagerAlert, AlertmanagerPayload, PagerDutyEvent, PagerDutyPayload
from mloncall.alerts.states import OPEN_STATES, AlertSource, AlertState, EventKind, NotifyEvent
from mloncall.core import clock
from mloncall.core.errors import NotFound
from mloncall.core.records import Record

_ZERO_TIME_YEAR = 1  # Alertmanager's "0001-01-01T00:00:00Z": no end yet


# --- alerts from elsewhere on the lifecycle --------------------------------------------------------------


def external_group(*, session: Session, key: str, source: str, labels: dict[str, Any]) -> AlertGroup:
    """The group of alerts another system sends together (an Alertmanager groupKey, a PagerDuty routing key)."""
    return ensure_group(session, key=key, source=source, labels=labels, at=clock.now())


def external_firing(
    *,
    session: Session,
    facts: AlertFacts,
    group: AlertGroup,
    actor: str,
    reason: str,
    hold_time: dt.timedelta,
    evidence: dict[str, Any] | None = None,
    started_at: dt.datetime | None = None,
) -> tuple[Alert, Transition | None]:
    """An alert another system says is firing: opened, re-opened within the hold time, or updated (no
    transition when it fires already: senders repeat themselves)."""
    at = clock.now()
    alert = current_alert(session=session, fingerprint=facts.fingerprint)

    def observe(target: Alert) -> None:
        facts.describe(target)
        target.last_evaluated_at = at
        target.group_id = group.id
        if evidence is not None:
            target.last_check = evidence

    if alert is not None and alert.state == AlertState.FIRING:
        observe(alert)
        return alert, None
    if alert is not None and alert.state == AlertState.RESOLVED and within_hold(alert, at, hold_time):
        return alert, reopen(
            session, alert, actor=actor, at=at, evidence=evidence or {}, reason=reason, hold_time=hold_time,
            observe=observe,
        )  # fmt: skip
    if alert is not None and alert.state in (AlertState.PENDING, AlertState.INACTIVE):
        observe(alert)
        before = move(alert, AlertState.FIRING)
        alert.fired_at, alert.resolved_at = at, None
        return alert, record(
            session, alert, kind=EventKind.FIRING, from_state=before, actor=actor, at=at, evidence=evidence,
            reason=reason, notify=NotifyEvent.FIRING,
        )  # fmt: skip
    new = new_alert(session, previous=alert, facts=facts, group=group, state=AlertState.FIRING, at=at)
    observe(new)
    if started_at is not None and started_at <= at:
        new.active_since = started_at
    return new, record(
        session, new, kind=EventKind.FIRING, from_state=None, actor=actor, at=at, evidence=evidence,
        reason=reason, notify=NotifyEvent.FIRING,
    )  # fmt: skip


def external_resolved(
    *,
    session: Session,
    fingerprint: str,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
) -> tuple[Alert | None, Transition | None]:
    """An alert another system says is resolved; (None, None) if mloncall never saw it open."""
    alert = current_alert(session=session, fingerprint=fingerprint)
    if alert is None or alert.state not in OPEN_STATES:
        return alert, None
    at = clock.now()
    alert.last_evaluated_at = at
    if evidence is not None:
        alert.last_check = evidence
    return alert, resolve_now(session, alert, actor=actor, at=at, reason=reason, evidence=evidence)


# --- the answers ---------------------------------------------------------------------------------------


@dataclass
class InboundAlert(Record):
    fingerprint: str
    alert_id: int | None
    state: str | None
    transition: Transition | None

    def to_dict(self) -> dict[str, Any]:
        # The answer names the change only (`fired`, `resolved`); the alert's history holds the rest.
        return {**super().to_dict(), "transition": self.transition.kind if self.transition else None}


@dataclass
class InboundResult:
    group_id: int
    alerts: list[InboundAlert] = field(default_factory=list)
    truncated_alerts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "group_id": self.group_id,
            "alerts": [a.to_dict() for a in self.alerts],
            "truncated_alerts": self.truncated_alerts,
        }


def _digest(*parts: str, size: int = 40) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:size]


def _severity(value: str | None) -> str:
    return value if value in ALERT_SEVERITIES else "warning"


def _runbook(value: Any) -> str | None:
    return value if isinstance(value, str) and value in RUNBOOKS else None


def _alertmanager_evidence(payload: AlertmanagerPayload, item: AlertmanagerAlert) -> dict[str, Any]:
    evidence: dict[str, Any] = jsonable(
        {
            "source": AlertSource.ALERTMANAGER,
            "receiver": payload.receiver,
            "status": item.status,
            "startsAt": item.startsAt,
            "endsAt": item.endsAt if item.endsAt and item.endsAt.year > _ZERO_TIME_YEAR else None,
            "generatorURL": item.generatorURL,
            "externalURL": payload.externalURL,
            "groupKey": payload.groupKey,
        }
    )
    return evidence


def _alertmanager_facts(item: AlertmanagerAlert, fp: str) -> AlertFacts:
    return AlertFacts(
        fingerprint=fp,
        source=AlertSource.ALERTMANAGER,
        rule=item.labels.get("alertname") or "alertmanager",
        model=item.labels.get("model") or None,
        severity=_severity(item.labels.get("severity")),
        runbook=_runbook(item.labels.get("runbook")),
        labels=dict(item.labels),
        annotations=dict(item.annotations),
        external_id=item.fingerprint or None,
    )


def receive_alertmanager(*, session: Session, payload: AlertmanagerPayload, actor: str) -> InboundResult:
    """Apply one Alertmanager notification: its group, then each alert's firing or resolved state."""
    policy = policy_in_force(session=session)
    group = external_group(
        session=session,
        key=f"alertmanager:{payload.groupKey}",
        source=AlertSource.ALERTMANAGER,
        labels=dict(payload.groupLabels),
    )
    result = InboundResult(group_id=group.id, truncated_alerts=payload.truncatedAlerts)
    for item in payload.alerts:
        fp = f"alertmanager:{item.fingerprint or _digest(*sorted(f'{k}={v}' for k, v in item.labels.items()), size=16)}"
        evidence = _alertmanager_evidence(payload, item)
        alert: Alert | None
        transition: Transition | None
        if item.status == "firing":
            facts = _alertmanager_facts(item, fp)
            summary = item.annotations.get("summary")
            alert, transition = external_firing(
                session=session,
                facts=facts,
                group=group,
                actor=actor,
                reason=f"Alertmanager reports {facts.rule} firing" + (f": {summary}" if summary else ""),
                hold_time=policy.hold_time,
                evidence=evidence,
                started_at=item.startsAt,
            )
        else:
            alert, transition = external_resolved(
                session=session,
                fingerprint=fp,
                actor=actor,
                reason="Alertmanager reports it resolved",
                evidence=evidence,
            )
        result.alerts.append(
            InboundAlert(
                fingerprint=fp,
                alert_id=alert.id if alert is not None else None,
                state=alert.state if alert is not None else None,
                transition=transition,
            )
        )
    return result


@dataclass
class PagerDutyResult:
    dedup_key: str
    alert_id: int
    state: str
    transition: Transition | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "success",
            "message": "Event processed",
            "dedup_key": self.dedup_key,
            "alert_id": self.alert_id,
            "state": self.state,
            "transition": self.transition.kind if self.transition else None,
        }


def _pagerduty_facts(payload: PagerDutyPayload, fp: str, dedup_key: str) -> AlertFacts:
    details = payload.custom_details if isinstance(payload.custom_details, dict) else {}
    rule = payload.class_ or payload.component or "pagerduty"
    optional = (("component", payload.component), ("group", payload.group), ("class", payload.class_))
    labels = {
        "alertname": rule,
        "event_source": payload.source,
        "severity": payload.severity,
        "dedup_key": dedup_key,
        **{k: v for k, v in optional if v},
    }
    annotations = {"summary": payload.summary}
    if isinstance(payload.custom_details, str):
        annotations["description"] = payload.custom_details
    return AlertFacts(
        fingerprint=fp,
        source=AlertSource.PAGERDUTY,
        rule=rule,
        model=details.get("model") if isinstance(details.get("model"), str) else None,
        severity=payload.severity,
        runbook=_runbook(details.get("runbook")),
        labels=labels,
        annotations=annotations,
        external_id=dedup_key,
    )


def _pagerduty_trigger(
    session: Session, event: PagerDutyEvent, *, fp: str, dedup_key: str, actor: str
) -> PagerDutyResult:
    payload = event.payload
    assert payload is not None  # the schema requires it for a trigger
    routing = _digest(event.routing_key, size=16)
    group = external_group(
        session=session,
        key=f"pagerduty:{routing}",
        source=AlertSource.PAGERDUTY,
        labels={"routing_key_sha256": routing},
    )
    evidence = {
        "source": AlertSource.PAGERDUTY,
        "client": event.client,
        "client_url": event.client_url,
        "timestamp": payload.timestamp,
        "custom_details": payload.custom_details,
    }
    alert, transition = external_firing(
        session=session,
        facts=_pagerduty_facts(payload, fp, dedup_key),
        group=group,
        actor=actor,
        reason=f"PagerDuty trigger: {payload.summary}",
        hold_time=policy_in_force(session=session).hold_time,
        evidence=jsonable(evidence),
        started_at=payload.timestamp,
    )
    return PagerDutyResult(dedup_key=dedup_key, alert_id=alert.id, state=alert.state, transition=transition)


def receive_pagerduty(*, session: Session, event: PagerDutyEvent, actor: str) -> PagerDutyResult:
    """Apply one PagerDuty Events API v2 event; NotFound for an acknowledge or resolve of an unknown key."""
    dedup_key = event.dedup_key or uuid.uuid4().hex
    fp = f"pagerduty:{_digest(event.routing_key, dedup_key)}"
    if event.event_action == "trigger":
        return _pagerduty_trigger(session, event, fp=fp, dedup_key=dedup_key, actor=actor)
    current = current_alert(session=session, fingerprint=fp)
    if current is None:
        raise NotFound(f"no alert with dedup_key {dedup_key!r} for this routing key: trigger it first")
    if event.event_action == "acknowledge":
        if current.state not in OPEN_STATES:  # PagerDuty ignores an acknowledge of a resolved incident too
            return PagerDutyResult(
                dedup_key=dedup_key, alert_id=current.id, state=current.state, transition=None
            )
        alert, ack = acknowledge(
            session=session, alert_id=current.id, actor=actor, reason="PagerDuty acknowledge event"
        )
        return PagerDutyResult(dedup_key=dedup_key, alert_id=alert.id, state=alert.state, transition=ack)
    resolved, transition = external_resolved(
        session=session, fingerprint=fp, actor=actor, reason="PagerDuty resolve event"
    )
    assert resolved is not None
    return PagerDutyResult(
        dedup_key=dedup_key, alert_id=resolved.id, state=resolved.state, transition=transition
    )

"""Alerts from a team's existing tools: Alertmanager's webhook (payload version 4) and PagerDuty Events API v2.

Each request is handled in the caller's one unit of work, so a payload that fails half-way stores nothing.

Alertmanager: every alert keeps Alertmanager's fingerprint (`alertmanager:<fingerprint>`), the notification's
`groupKey` is one alert group, `firing` opens (or re-opens within the hold time) and `resolved` resolves.
Alertmanager repeats firing alerts every `repeat_interval`; a repeat changes nothing but the last-seen time.

PagerDuty: `trigger` opens the alert of a `dedup_key` (one is made up and returned when absent), `acknowledge`
and `resolve` act on it. The routing key selects the alert group and is stored only as a digest.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from mloncall.alerts import service
from mloncall.alerts.models import OPEN_STATES, Alert
from mloncall.alerts.rules import RUNBOOKS
from mloncall.alerts.schemas import AlertmanagerPayload, PagerDutyEvent
from mloncall.alerts.service import ALERT_SEVERITIES, Transition, jsonable
from mloncall.core.errors import NotFound

_ZERO_TIME_YEAR = 1  # Alertmanager's "0001-01-01T00:00:00Z": no end yet


@dataclass
class InboundAlert:
    fingerprint: str
    alert_id: int | None
    state: str | None
    transition: Transition | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "alert_id": self.alert_id,
            "state": self.state,
            "transition": self.transition.kind if self.transition else None,
        }


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


def receive_alertmanager(*, session: Session, payload: AlertmanagerPayload, actor: str) -> InboundResult:
    """Apply one Alertmanager notification: its group, then each alert's firing or resolved state."""
    policy = service.policy_in_force(session=session)
    group = service.external_group(
        session=session,
        key=f"alertmanager:{payload.groupKey}",
        source="alertmanager",
        labels=dict(payload.groupLabels),
    )
    result = InboundResult(group_id=group.id, truncated_alerts=payload.truncatedAlerts)
    for item in payload.alerts:
        fp = f"alertmanager:{item.fingerprint or _digest(*sorted(f'{k}={v}' for k, v in item.labels.items()), size=16)}"
        evidence = jsonable(
            {
                "source": "alertmanager",
                "receiver": payload.receiver,
                "status": item.status,
                "startsAt": item.startsAt,
                "endsAt": item.endsAt if item.endsAt and item.endsAt.year > _ZERO_TIME_YEAR else None,
                "generatorURL": item.generatorURL,
                "externalURL": payload.externalURL,
                "groupKey": payload.groupKey,
            }
        )
        alert: Alert | None
        transition: Transition | None
        if item.status == "firing":
            rule = item.labels.get("alertname") or "alertmanager"
            alert, transition = service.external_firing(
                session=session,
                source="alertmanager",
                fingerprint=fp,
                rule=rule,
                model=(item.labels.get("model") or None),
                severity=_severity(item.labels.get("severity")),
                runbook=_runbook(item.labels.get("runbook")),
                labels=dict(item.labels),
                annotations=dict(item.annotations),
                group=group,
                actor=actor,
                reason=f"Alertmanager reports {rule} firing"
                + (f": {item.annotations['summary']}" if item.annotations.get("summary") else ""),
                hold_time=policy.hold_time,
                evidence=evidence,
                external_id=item.fingerprint or None,
                started_at=item.startsAt,
            )
        else:
            alert, transition = service.external_resolved(
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


def receive_pagerduty(*, session: Session, event: PagerDutyEvent, actor: str) -> PagerDutyResult:
    """Apply one PagerDuty Events API v2 event; NotFound for an acknowledge or resolve of an unknown key."""
    routing = _digest(event.routing_key, size=16)
    dedup_key = event.dedup_key or uuid.uuid4().hex
    fp = f"pagerduty:{_digest(event.routing_key, dedup_key)}"
    if event.event_action == "trigger":
        payload = event.payload
        assert payload is not None  # the schema requires it for a trigger
        details = payload.custom_details if isinstance(payload.custom_details, dict) else {}
        rule = payload.class_ or payload.component or "pagerduty"
        labels = {
            "alertname": rule,
            "event_source": payload.source,
            "severity": payload.severity,
            "dedup_key": dedup_key,
            **{
                k: v
                for k, v in (
                    ("component", payload.component),
                    ("group", payload.group),
                    ("class", payload.class_),
                )
                if v
            },
        }
        annotations = {"summary": payload.summary}
        if isinstance(payload.custom_details, str):
            annotations["description"] = payload.custom_details
        model = details.get("model") if isinstance(details.get("model"), str) else None
        group = service.external_group(
            session=session,
            key=f"pagerduty:{routing}",
            source="pagerduty",
            labels={"routing_key_sha256": routing},
        )
        alert, transition = service.external_firing(
            session=session,
            source="pagerduty",
            fingerprint=fp,
            rule=rule,
            model=model,
            severity=payload.severity,
            runbook=_runbook(details.get("runbook")),
            labels=labels,
            annotations=annotations,
            group=group,
            actor=actor,
            reason=f"PagerDuty trigger: {payload.summary}",
            hold_time=service.policy_in_force(session=session).hold_time,
            evidence=jsonable(
                {
                    "source": "pagerduty",
                    "client": event.client,
                    "client_url": event.client_url,
                    "timestamp": payload.timestamp,
                    "custom_details": payload.custom_details,
                }
            ),
            external_id=dedup_key,
            started_at=payload.timestamp,
        )
        return PagerDutyResult(
            dedup_key=dedup_key, alert_id=alert.id, state=alert.state, transition=transition
        )
    current = service.current_alert(session=session, fingerprint=fp)
    if current is None:
        raise NotFound(f"no alert with dedup_key {dedup_key!r} for this routing key: trigger it first")
    if event.event_action == "acknowledge":
        if current.state not in OPEN_STATES:  # PagerDuty ignores an acknowledge of a resolved incident too
            return PagerDutyResult(
                dedup_key=dedup_key, alert_id=current.id, state=current.state, transition=None
            )
        alert, ack = service.acknowledge(
            session=session, alert_id=current.id, actor=actor, reason="PagerDuty acknowledge event"
        )
        return PagerDutyResult(dedup_key=dedup_key, alert_id=alert.id, state=alert.state, transition=ack)
    resolved, transition = service.external_resolved(
        session=session, fingerprint=fp, actor=actor, reason="PagerDuty resolve event"
    )
    assert resolved is not None
    return PagerDutyResult(
        dedup_key=dedup_key, alert_id=resolved.id, state=resolved.state, transition=transition
    )

"""What a notification says, whatever the channel: its message, and the webhook, Slack and e-mail bodies."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from mloncall.alerts.channels import Channel
from mloncall.alerts.evidence import jsonable
from mloncall.alerts.models import Alert, Notification
from mloncall.core import clock


@dataclass(frozen=True)
class AlertMessage:
    """What a notification says, whatever the channel."""

    notification_id: int
    event: str
    alert: dict[str, Any]
    sent_at: dt.datetime
    #: The other alerts of its group told with it (a storm is one message): their count and first ids.
    also: int = 0
    also_ids: tuple[int, ...] = ()

    @property
    def title(self) -> str:
        a = self.alert
        on = f" on {a['model']}" if a.get("model") else ""
        more = f" and {self.also} more" if self.also else ""
        return f"[{self.event.upper()}] {a['rule']}{on} ({a['severity']}){more}"

    @property
    def also_line(self) -> str:
        """What the grouped message says of the alerts told with it."""
        if not self.also:
            return ""
        shown = ", ".join(f"#{i}" for i in self.also_ids)
        rest = self.also - len(self.also_ids)
        group = self.alert.get("group") or "its group"
        return f"with it, {self.also} more alerts of {group} are {self.event}: {shown}" + (
            f" and {rest} more" if rest > 0 else ""
        )

    @property
    def summary(self) -> str:
        notes = self.alert.get("annotations") or {}
        return str(notes.get("summary") or notes.get("description") or self.alert.get("reason") or "")

    @property
    def text(self) -> str:
        a = self.alert
        notes = a.get("annotations") or {}
        lines = [self.title]
        if notes.get("summary"):
            lines.append(str(notes["summary"]))
        if notes.get("description"):
            lines.append(str(notes["description"]))
        if a.get("reason"):
            lines.append(f"why: {a['reason']}")
        lines.append(f"alert #{a['id']}  state {a['state']}  source {a['source']}")
        if self.also:
            lines.append(self.also_line)
        if a.get("runbook"):
            lines.append(f"runbook: {a['runbook']}")
        labels = ", ".join(f"{k}={v}" for k, v in sorted((a.get("labels") or {}).items()))
        if labels:
            lines.append(f"labels: {labels}")
        lines.append(f"see: mloncall alerts show {a['id']}")
        return "\n".join(lines)


#: A grouped message names at most this many of the alerts told with it.
ALSO_SHOWN = 20


def build_message(
    notification: Notification, alert: Alert, *, reason: str = "", also: tuple[int, ...] = ()
) -> AlertMessage:
    """The message of one notification (and of the alerts of its group told with it)."""
    return AlertMessage(
        notification_id=notification.id,
        event=notification.event,
        sent_at=clock.now(),
        also=len(also),
        also_ids=also[:ALSO_SHOWN],
        alert={
            "id": alert.id,
            "fingerprint": alert.fingerprint,
            "source": alert.source,
            "rule": alert.rule,
            "model": alert.model,
            "state": alert.state,
            "severity": alert.severity,
            "runbook": alert.runbook,
            "labels": dict(alert.labels or {}),
            "annotations": dict(alert.annotations or {}),
            "value": alert.value,
            "group": alert.group.key if alert.group is not None else None,
            "fired_at": alert.fired_at.isoformat() if alert.fired_at else None,
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "reopen_count": alert.reopen_count,
            "acknowledged_by": alert.acknowledged_by,
            "reason": reason,
        },
    )


def webhook_body(message: AlertMessage) -> dict[str, Any]:
    """The generic webhook's JSON body."""
    body: dict[str, Any] = jsonable(
        {
            "version": "1",
            "event": message.event,
            "notification_id": message.notification_id,
            "sent_at": message.sent_at.isoformat(),
            "title": message.title,
            "alert": message.alert,
            "grouped": {"count": message.also, "alert_ids": list(message.also_ids)},
        }
    )
    return body


_SLACK_EMOJI = {"firing": ":rotating_light:", "reopened": ":repeat:", "resolved": ":white_check_mark:"}


def slack_body(message: AlertMessage) -> dict[str, Any]:
    """A Slack incoming-webhook body: `text` (the fallback every client shows) and Block Kit `blocks`."""
    a = message.alert
    fields = [
        {"type": "mrkdwn", "text": f"*Severity*\n{a['severity']}"},
        {"type": "mrkdwn", "text": f"*State*\n{a['state']}"},
        {"type": "mrkdwn", "text": f"*Model*\n{a.get('model') or '-'}"},
        {"type": "mrkdwn", "text": f"*Runbook*\n{a.get('runbook') or '-'}"},
    ]
    detail = "\n".join(
        x
        for x in (
            (a.get("annotations") or {}).get("description"),
            a.get("reason") and f"_why:_ {a['reason']}",
        )
        if x
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": (message.summary or message.title)[:3000]}},
        {"type": "section", "fields": fields},
    ]
    if message.also:
        detail = "\n".join(x for x in (detail, message.also_line) if x)
    if detail:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": detail[:3000]}})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"alert #{a['id']} · `mloncall alerts show {a['id']}`"}],
        }
    )
    text = f"{_SLACK_EMOJI.get(message.event, '')} {message.title}: {message.summary}".strip()
    return {"text": text[:3000], "blocks": blocks}


def email_message(message: AlertMessage, channel: Channel) -> EmailMessage:
    """A plain-text e-mail."""
    mail = EmailMessage()
    mail["Subject"] = f"[mloncall] {message.title}"
    mail["From"] = channel.sender or "mloncall@localhost"
    mail["To"] = ", ".join(channel.recipients)
    mail["X-Mloncall-Alert"] = str(message.alert["id"])
    mail["X-Mloncall-Event"] = message.event
    mail.set_content(message.text + "\n")
    return mail

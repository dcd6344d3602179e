"""Notification channels: a generic JSON webhook, a Slack-compatible incoming webhook and SMTP e-mail.

Channels are configured in the `[alerts]` table of `mloncall.toml` (not in the rules file, so the rules can
live in git without secrets; a secret can also come from the environment with `url_env`/`password_env`):

```toml
[[alerts.channels]]
name = "ops-webhook"                 # unique; shown in every delivery record
type = "webhook"                     # webhook | slack | email
url = "https://hooks.example.com/mloncall"
headers = { Authorization = "Bearer s3cret" }

[[alerts.channels]]
name = "ml-slack"
type = "slack"
url_env = "MLONCALL_SLACK_WEBHOOK"   # the URL from this environment variable
severities = ["critical", "warning"] # optional filters: severities, events, sources

[[alerts.channels]]
name = "oncall-mail"
type = "email"
host = "smtp.example.com"
port = 587
starttls = true                      # or ssl = true for SMTPS; ca_file = "/etc/ssl/relay-ca.pem" to trust a private CA
username = "mloncall"
password_env = "MLONCALL_SMTP_PASSWORD"
from = "mloncall@example.com"
to = ["oncall@example.com"]
```

Every channel also takes `max_attempts` (3), `backoff` (1 s, doubled per retry) and `max_backoff` (30 s),
and `timeout` (10 s). Events sent: `firing`, `resolved` and `reopened`. Each event is one `Notification`
(the outbox row queued with the transition); `send_pending` sends it to every channel that takes it and
records every attempt as a `DeliveryAttempt`. Network errors, HTTP 408/429/5xx and SMTP 4xx are retried;
other refusals are not, since retrying cannot change their answer.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.alerts.models import Alert, DeliveryAttempt, Notification
from mloncall.alerts.service import ALERT_SEVERITIES, NOTIFY_EVENTS, jsonable
from mloncall.core import clock
from mloncall.core.config import Settings
from mloncall.core.errors import InvalidInput
from mloncall.stores.context import Context

log = logging.getLogger("mloncall.alerts.notify")

CHANNEL_TYPES = ("webhook", "slack", "email")
#: A notification claimed this long ago and never finished was left by a process that died: send it again.
STALE_CLAIM = dt.timedelta(minutes=15)
_USER_AGENT = "mloncall-alerts/1"


# --- channels --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Channel:
    """Where notifications go, and which ones."""

    name: str
    type: str
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    host: str | None = None
    port: int = 25
    starttls: bool = False
    ssl: bool = False
    #: A PEM file of CA certificates to trust for STARTTLS/SMTPS (an internal mail relay); default: the system's.
    ca_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    events: tuple[str, ...] = NOTIFY_EVENTS
    severities: tuple[str, ...] | None = None
    sources: tuple[str, ...] | None = None
    max_attempts: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0
    timeout: float = 10.0

    def accepts(self, event: str, alert: Alert) -> bool:
        """Whether this channel wants to hear about this event of this alert."""
        if event not in self.events:
            return False
        if self.severities is not None and alert.severity not in self.severities:
            return False
        return self.sources is None or alert.source in self.sources

    def describe(self) -> str:
        """Where it sends, without secrets."""
        if self.type == "email":
            return f"smtp://{self.host}:{self.port} -> {', '.join(self.recipients)}"
        parts = urlsplit(self.url or "")
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "target": self.describe(),
            "events": list(self.events),
            "severities": list(self.severities) if self.severities is not None else None,
            "sources": list(self.sources) if self.sources is not None else None,
            "max_attempts": self.max_attempts,
        }


def _strings(value: Any, what: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{what} must be a non-empty list of strings")
    if allowed is not None:
        bad = [v for v in value if v not in allowed]
        if bad:
            raise InvalidInput(f"{what}: unknown {', '.join(map(repr, bad))}: use {', '.join(allowed)}")
    return tuple(value)


def _secret(raw: Mapping[str, Any], key: str, env: Mapping[str, str], where: str) -> str | None:
    env_key = f"{key}_env"
    if raw.get(env_key) is not None:
        name = str(raw[env_key])
        if not env.get(name):
            raise InvalidInput(f"{where}: environment variable {name} ({env_key}) is not set")
        return env[name]
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{where}: {key} must be a string")
    return value


_CHANNEL_KEYS = {
    "name", "type", "url", "url_env", "headers", "host", "port", "starttls", "ssl", "username", "password",
    "password_env", "from", "to", "ca_file", "events", "severities", "sources", "max_attempts", "backoff",
    "max_backoff", "timeout",
}  # fmt: skip


def parse_channel(raw: Mapping[str, Any], *, index: int = 0, env: Mapping[str, str] | None = None) -> Channel:
    """One channel from its configuration table; InvalidInput names the channel and the problem."""
    env = os.environ if env is None else env
    where = f"[alerts] channel #{index + 1}"
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where} must be a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise InvalidInput(f"{where}: 'name' is required (1-128 characters)")
    where = f"[alerts] channel {name!r}"
    unknown = sorted(set(raw) - _CHANNEL_KEYS)
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(unknown)}")
    kind = raw.get("type")
    if kind not in CHANNEL_TYPES:
        raise InvalidInput(f"{where}: type must be one of {', '.join(CHANNEL_TYPES)}, not {kind!r}")
    common: dict[str, Any] = {"name": name, "type": kind}
    if "events" in raw:
        common["events"] = _strings(raw["events"], f"{where}: events", NOTIFY_EVENTS)
    if "severities" in raw:
        common["severities"] = _strings(raw["severities"], f"{where}: severities", ALERT_SEVERITIES)
    if "sources" in raw:
        common["sources"] = _strings(
            raw["sources"], f"{where}: sources", ("mloncall", "alertmanager", "pagerduty")
        )
    for key, low, high in (
        ("max_attempts", 1, 20),
        ("backoff", 0, 3600),
        ("max_backoff", 0, 3600),
        ("timeout", 0.1, 300),
    ):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise InvalidInput(f"{where}: {key} must be a number from {low} to {high}, not {value!r}")
            common[key] = int(value) if key == "max_attempts" else float(value)
    if kind in ("webhook", "slack"):
        url = _secret(raw, "url", env, where)
        if not url or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise InvalidInput(f"{where}: url must be an http(s) URL")
        headers = raw.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise InvalidInput(f"{where}: headers must be a table of strings")
        return Channel(url=url, headers=dict(headers), **common)
    host = raw.get("host")
    if not isinstance(host, str) or not host:
        raise InvalidInput(f"{where}: host is required for e-mail")
    port = raw.get("port", 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidInput(f"{where}: port must be a TCP port, not {port!r}")
    sender = raw.get("from")
    if not isinstance(sender, str) or "@" not in sender:
        raise InvalidInput(f"{where}: 'from' must be an e-mail address")
    recipients = _strings(raw.get("to"), f"{where}: to")
    if not all("@" in r for r in recipients):
        raise InvalidInput(f"{where}: every 'to' must be an e-mail address")
    for flag in ("starttls", "ssl"):
        if flag in raw and not isinstance(raw[flag], bool):
            raise InvalidInput(f"{where}: {flag} must be true or false")
    if raw.get("starttls") and raw.get("ssl"):
        raise InvalidInput(f"{where}: use starttls or ssl, not both")
    username = raw.get("username")
    if username is not None and not isinstance(username, str):
        raise InvalidInput(f"{where}: username must be a string")
    ca_file = raw.get("ca_file")
    if ca_file is not None and (not isinstance(ca_file, str) or not ca_file):
        raise InvalidInput(f"{where}: ca_file must be the path of a PEM file")
    return Channel(
        host=host,
        port=port,
        starttls=bool(raw.get("starttls", False)),
        ca_file=ca_file,
        ssl=bool(raw.get("ssl", False)),
        username=username,
        password=_secret(raw, "password", env, where),
        sender=sender,
        recipients=recipients,
        **common,
    )


def channels_from_settings(settings: Settings, env: Mapping[str, str] | None = None) -> list[Channel]:
    """The channels of `[alerts] channels` (none configured: an empty list)."""
    raw = settings.section("alerts").get("channels", [])
    if not isinstance(raw, list):
        raise InvalidInput("[alerts] channels must be an array of tables ([[alerts.channels]])")
    channels = [parse_channel(item, index=i, env=env) for i, item in enumerate(raw)]
    names = [c.name for c in channels]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput(f"[alerts] channel name(s) used twice: {', '.join(dupes)}")
    return channels


# --- messages --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertMessage:
    """What a notification says, whatever the channel."""

    notification_id: int
    event: str
    alert: dict[str, Any]
    sent_at: dt.datetime

    @property
    def title(self) -> str:
        a = self.alert
        on = f" on {a['model']}" if a.get("model") else ""
        return f"[{self.event.upper()}] {a['rule']}{on} ({a['severity']})"

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
        if a.get("runbook"):
            lines.append(f"runbook: {a['runbook']}")
        labels = ", ".join(f"{k}={v}" for k, v in sorted((a.get("labels") or {}).items()))
        if labels:
            lines.append(f"labels: {labels}")
        lines.append(f"see: mloncall alerts show {a['id']}")
        return "\n".join(lines)


def build_message(notification: Notification, alert: Alert, *, reason: str = "") -> AlertMessage:
    """The message of one notification."""
    return AlertMessage(
        notification_id=notification.id,
        event=notification.event,
        sent_at=clock.now(),
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


# --- sending ---------------------------------------------------------------------------------------------


class DeliveryError(Exception):
    """A failed send: retryable or not, with the HTTP or SMTP code if there was one."""

    def __init__(self, message: str, *, retryable: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.code = code


def post_json(channel: Channel, body: dict[str, Any]) -> int:
    """POST body as JSON; the status code, or DeliveryError."""
    headers = {"User-Agent": _USER_AGENT, **channel.headers}
    try:
        with httpx.Client(timeout=channel.timeout, follow_redirects=False) as client:
            response = client.post(str(channel.url), json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from None
    if 200 <= response.status_code < 300:
        return response.status_code
    retryable = response.status_code in (408, 429) or response.status_code >= 500
    snippet = response.text[:200].strip()
    raise DeliveryError(
        f"HTTP {response.status_code}{f': {snippet}' if snippet else ''}",
        retryable=retryable,
        code=response.status_code,
    )


def send_email(channel: Channel, mail: EmailMessage) -> int:
    """Send through SMTP (STARTTLS or SMTPS if configured); 250, or DeliveryError."""
    try:
        smtp: smtplib.SMTP
        if channel.ssl:
            smtp = smtplib.SMTP_SSL(
                channel.host or "",
                channel.port,
                timeout=channel.timeout,
                context=ssl.create_default_context(cafile=channel.ca_file),
            )
        else:
            smtp = smtplib.SMTP(channel.host or "", channel.port, timeout=channel.timeout)
        with smtp:
            if channel.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=channel.ca_file))
            if channel.username:
                smtp.login(channel.username, channel.password or "")
            refused = smtp.send_message(mail)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(
            f"SMTP authentication failed: {exc.smtp_code} {exc.smtp_error!r}",
            retryable=False,
            code=exc.smtp_code,
        ) from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise DeliveryError(
            f"every recipient refused: {exc.recipients}",
            retryable=all(400 <= c < 500 for c in codes),
            code=codes[0] if codes else None,
        ) from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(
            f"SMTP {exc.smtp_code}: {exc.smtp_error!r}",
            retryable=400 <= exc.smtp_code < 500,
            code=exc.smtp_code,
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from None
    if refused:
        log.warning("channel %s: some recipients refused: %s", channel.name, refused)
    return 250


def send(channel: Channel, message: AlertMessage) -> int:
    """One attempt at sending a message to a channel."""
    if channel.type == "webhook":
        return post_json(channel, webhook_body(message))
    if channel.type == "slack":
        return post_json(channel, slack_body(message))
    return send_email(channel, email_message(message, channel))


Sender = Callable[[Channel, AlertMessage], int]
Sleep = Callable[[float], object]


def backoff_delays(channel: Channel) -> list[float]:
    """The waits between attempts: backoff, doubled each time, capped at max_backoff."""
    return [min(channel.backoff * 2**i, channel.max_backoff) for i in range(channel.max_attempts - 1)]


@dataclass
class DispatchResult:
    notification_id: int
    alert_id: int
    event: str
    status: str
    channels: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "alert_id": self.alert_id,
            "event": self.event,
            "status": self.status,
            "channels": self.channels,
        }


def _claim(ctx: Context, notification_id: int) -> bool:
    with ctx.db.session() as session:
        result = session.execute(
            sa.update(Notification)
            .where(Notification.id == notification_id, Notification.status == "pending")
            .values(status="sending", claimed_at=clock.now())
        )
        return bool(getattr(result, "rowcount", 0) == 1)


def _record_attempt(
    ctx: Context,
    notification: Notification,
    channel: Channel,
    attempt: int,
    error: DeliveryError | None,
    code: int | None,
) -> None:
    with ctx.db.session() as session:
        session.add(
            DeliveryAttempt(
                notification_id=notification.id,
                alert_id=notification.alert_id,
                channel=channel.name,
                channel_type=channel.type,
                attempt=attempt,
                status="ok" if error is None else "failed",
                error=error.message[:2000] if error is not None else None,
                response_code=code if error is None else error.code,
                at=clock.now(),
            )
        )


def deliver(
    ctx: Context,
    notification: Notification,
    channel: Channel,
    message: AlertMessage,
    *,
    first_attempt: int = 1,
    sender: Sender = send,
    sleep: Sleep = time.sleep,
) -> str | None:
    """Send with bounded retries and exponential backoff, recording every attempt; None if sent, else the
    last error."""
    delays = backoff_delays(channel)
    error: DeliveryError | None = None
    for i in range(channel.max_attempts):
        try:
            code = sender(channel, message)
        except DeliveryError as exc:
            error = exc
            _record_attempt(ctx, notification, channel, first_attempt + i, exc, None)
            log.warning(
                "channel %s, alert #%s: attempt %s failed: %s",
                channel.name,
                notification.alert_id,
                first_attempt + i,
                exc.message,
            )
            if not exc.retryable or i == channel.max_attempts - 1:
                break
            sleep(delays[i])
            continue
        _record_attempt(ctx, notification, channel, first_attempt + i, None, code)
        return None
    return error.message if error is not None else "not sent"


def _release_stale_claims(ctx: Context) -> None:
    with ctx.db.session() as session:
        session.execute(
            sa.update(Notification)
            .where(Notification.status == "sending", Notification.claimed_at < clock.now() - STALE_CLAIM)
            .values(status="pending")
        )


def _reason(session: Session, notification: Notification) -> str:
    from mloncall.alerts.models import AlertEvent

    if notification.event_id is None:
        return ""
    event = session.get(AlertEvent, notification.event_id)
    return event.reason if event is not None else ""


def send_pending(
    ctx: Context,
    *,
    channels: Sequence[Channel] | None = None,
    sender: Sender = send,
    sleep: Sleep = time.sleep,
    limit: int = 100,
) -> list[DispatchResult]:
    """Send queued notifications (oldest first) to every channel that takes them; safe to run in several
    processes at once (each notification is claimed by one)."""
    channels = list(channels) if channels is not None else channels_from_settings(ctx.settings)
    _release_stale_claims(ctx)
    with ctx.db.session() as session:
        ids = list(
            session.scalars(
                sa.select(Notification.id)
                .where(Notification.status == "pending")
                .order_by(Notification.id)
                .limit(limit)
            )
        )
    results = []
    for notification_id in ids:
        if not _claim(ctx, notification_id):
            continue  # another process took it
        with ctx.db.session() as session:
            notification = session.get(Notification, notification_id)
            assert notification is not None
            alert = notification.alert
            message = build_message(notification, alert, reason=_reason(session, notification))
            targets = [c for c in channels if c.accepts(notification.event, alert)]
            previous = {(d.channel, d.status) for d in notification.deliveries}
            tried: dict[str, int] = {}
            for d in notification.deliveries:
                tried[d.channel] = max(tried.get(d.channel, 0), d.attempt)
        result = DispatchResult(
            notification_id=notification.id,
            alert_id=notification.alert_id,
            event=notification.event,
            status="sent",
        )
        errors = []
        for channel in targets:
            if (channel.name, "ok") in previous:
                result.channels[channel.name] = "sent"  # sent before this process was interrupted
                continue
            error = deliver(
                ctx,
                notification,
                channel,
                message,
                first_attempt=tried.get(channel.name, 0) + 1,
                sender=sender,
                sleep=sleep,
            )
            result.channels[channel.name] = "sent" if error is None else "failed"
            if error is not None:
                errors.append(f"{channel.name}: {error}")
        if not targets:
            result.status = "unrouted"
        elif errors:
            result.status = "failed"
        with ctx.db.session() as session:
            row = session.get(Notification, notification_id)
            assert row is not None
            row.status = result.status
            row.error = (
                "; ".join(errors)[:4000]
                if errors
                else ("no configured channel takes this event" if not targets else None)
            )
            row.finished_at = clock.now()
        results.append(result)
    return results

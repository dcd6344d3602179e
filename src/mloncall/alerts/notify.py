"""Telling the channels: delivery with bounded retries. What a notification says (its webhook, Slack and
e-mail bodies) is `mloncall.alerts.messages`; the channels and their configuration `mloncall.alerts.channels`.

Each event is one `Notification` (the outbox row queued with the transition); `send_pending` sends it to
every channel that takes it and records every attempt as a `DeliveryAttempt`. Network errors, HTTP
408/429/5xx and SMTP 4xx are retried; other refusals are not, since retrying cannot change their answer.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from functools import partial
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.alerts.channels import Channel, channels_from_settings
from mloncall.alerts.evidence import jsonable
from mloncall.alerts.messages import AlertMessage, build_message, email_message, slack_body, webhook_body
from mloncall.alerts.models import Alert, AlertEvent, DeliveryAttempt, Notification
from mloncall.alerts.states import DeliveryStatus, NotificationStatus
from mloncall.core import clock
from mloncall.core.records import Record
from mloncall.stores.context import Context

log = logging.getLogger("mloncall.alerts.notify")

#: A notification claimed this long ago and never finished was left by a process that died: send it again.
STALE_CLAIM = dt.timedelta(minutes=15)
_USER_AGENT = "mloncall-alerts/1"


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


@dataclass(frozen=True)
class PlainMessage:
    """A message that is not one alert's event (an incident's update, a page, a reminder): a title, plain
    text, the generic webhook's JSON body, and `X-Mloncall-*` headers for its e-mail."""

    title: str
    text: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def send_plain(channel: Channel, message: PlainMessage) -> int:
    """One attempt at sending a plain message to a channel (webhook: its body; Slack: its text; e-mail)."""
    if channel.type == "webhook":
        return post_json(channel, jsonable(message.body))
    if channel.type == "slack":
        return post_json(channel, {"text": f"{message.title}\n{message.text}"[:3000]})
    mail = EmailMessage()
    mail["Subject"] = f"[mloncall] {message.title}"
    mail["From"] = channel.sender or "mloncall@localhost"
    mail["To"] = ", ".join(channel.recipients)
    for name, value in message.headers.items():
        mail[f"X-Mloncall-{name}"] = value
    mail.set_content(message.text + "\n")
    return send_email(channel, mail)


Sender = Callable[[Channel, AlertMessage], int]
Sleep = Callable[[float], object]


def backoff_delays(channel: Channel) -> list[float]:
    """The waits between attempts: backoff, doubled each time, capped at max_backoff."""
    return [min(channel.backoff * 2**i, channel.max_backoff) for i in range(channel.max_attempts - 1)]


@dataclass
class DispatchResult(Record):
    notification_id: int
    alert_id: int
    event: str
    status: str
    channels: dict[str, str] = field(default_factory=dict)
    #: Notifications of the same group told within this one's message.
    grouped: list[int] = field(default_factory=list)


def record_attempt(
    ctx: Context,
    row: Callable[..., object],
    channel: Channel,
    attempt: int,
    error: DeliveryError | None,
    code: int | None,
) -> None:
    """Record one try at sending to a channel, in its own session; `row` makes the table's row (an alert's
    `DeliveryAttempt`, an incident's delivery) from the message's ids and the delivery columns."""
    with ctx.db.session() as session:
        session.add(row(**delivery_columns(channel, attempt, error, code)))


def delivery_columns(
    channel: Channel, attempt: int, error: DeliveryError | None, code: int | None
) -> dict[str, Any]:
    """The `DeliveryColumns` of one try at sending to a channel, from how it went."""
    return {
        "channel": channel.name,
        "channel_type": channel.type,
        "attempt": attempt,
        "status": DeliveryStatus.OK if error is None else DeliveryStatus.FAILED,
        "error": error.message[:2000] if error is not None else None,
        "response_code": code if error is None else error.code,
        "at": clock.now(),
    }


Attempt = Callable[[int, DeliveryError | None, int | None], None]


def with_retries(
    channel: Channel,
    send_once: Callable[[], int],
    *,
    on_attempt: Attempt,
    first_attempt: int = 1,
    sleep: Sleep = time.sleep,
) -> str | None:
    """Call send_once with bounded retries and exponential backoff, telling on_attempt (number, error, code)
    of every try; None if it went through, else the last error. Alert and incident messages share it."""
    delays = backoff_delays(channel)
    error: DeliveryError | None = None
    for i in range(channel.max_attempts):
        try:
            code = send_once()
        except DeliveryError as exc:
            error = exc
            on_attempt(first_attempt + i, exc, None)
            log.warning("channel %s: attempt %s failed: %s", channel.name, first_attempt + i, exc.message)
            if not exc.retryable or i == channel.max_attempts - 1:
                break
            sleep(delays[i])
            continue
        on_attempt(first_attempt + i, None, code)
        return None
    return error.message if error is not None else "not sent"


@dataclass
class Fanout:
    """How telling one message to its target channels went: the status (sent, failed, or unrouted when no
    channel takes it), each channel's outcome and the errors of the channels that failed."""

    status: str
    channels: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def fan_out(
    targets: Sequence[Channel],
    send_to: Callable[[Channel], int],
    *,
    row: Callable[..., object],
    ctx: Context,
    sent_before: frozenset[str] | set[str] = frozenset(),
    tried: dict[str, int] | None = None,
    sleep: Sleep = time.sleep,
) -> Fanout:
    """Send to every target channel with bounded retries, recording every attempt as a `row` (see
    `record_attempt`); channels in `sent_before` took it before an interrupted process died. Alert
    notifications and incident messages share it."""
    out = Fanout(NotificationStatus.SENT)
    for channel in targets:
        if channel.name in sent_before:
            out.channels[channel.name] = NotificationStatus.SENT
            continue
        error = with_retries(
            channel, partial(send_to, channel), on_attempt=partial(record_attempt, ctx, row, channel),
            first_attempt=(tried or {}).get(channel.name, 0) + 1, sleep=sleep,
        )  # fmt: skip
        out.channels[channel.name] = NotificationStatus.SENT if error is None else NotificationStatus.FAILED
        if error is not None:
            out.errors.append(f"{channel.name}: {error}")
    if not targets:
        out.status = NotificationStatus.UNROUTED
    elif out.errors:
        out.status = NotificationStatus.FAILED
    return out


def claim(ctx: Context, table: Any, row_id: int, *, stale: dt.timedelta = STALE_CLAIM, **reset: Any) -> bool:
    """Claim one outbox row (pending -> sending) so that no other process sends it; a claim older than
    `stale` was left by a process that died and is given up first (with the `reset` columns). `table` has
    `status` and `claimed_at`."""
    with ctx.db.session() as session:
        session.execute(
            sa.update(table)
            .where(table.status == NotificationStatus.SENDING, table.claimed_at < clock.now() - stale)
            .values(status=NotificationStatus.PENDING, **reset)
        )
        result = session.execute(
            sa.update(table)
            .where(table.id == row_id, table.status == NotificationStatus.PENDING)
            .values(status=NotificationStatus.SENDING, claimed_at=clock.now())
        )
        return bool(getattr(result, "rowcount", 0) == 1)


def finish(ctx: Context, table: Any, row_id: int, fanout: Fanout, *, unrouted: str) -> None:
    """Record how a claimed outbox row went: its status, its errors (or why it went nowhere), when."""
    with ctx.db.session() as session:
        row = session.get(table, row_id)
        assert row is not None
        row.status = fanout.status
        row.error = (
            "; ".join(fanout.errors)[:4000] if fanout.errors else (None if fanout.channels else unrouted)
        )
        row.finished_at = clock.now()


def _reason(session: Session, notification: Notification) -> str:
    if notification.event_id is None:
        return ""
    event = session.get(AlertEvent, notification.event_id)
    return event.reason if event is not None else ""


@dataclass
class _Claimed:
    """A claimed notification, read in its own session: its message and the channels to tell."""

    notification: Notification
    message: AlertMessage
    targets: list[Channel]
    #: Channels that took it already (before an interrupted process died), and the last attempt per channel.
    sent_before: set[str]
    tried: dict[str, int]


def _read_claimed(
    ctx: Context, notification_id: int, channels: Sequence[Channel], also: tuple[int, ...] = ()
) -> _Claimed:
    with ctx.db.session() as session:
        notification = session.get(Notification, notification_id)
        assert notification is not None
        alert = notification.alert
        tried: dict[str, int] = {}
        for d in notification.deliveries:
            tried[d.channel] = max(tried.get(d.channel, 0), d.attempt)
        return _Claimed(
            notification=notification,
            message=build_message(notification, alert, reason=_reason(session, notification), also=also),
            targets=[c for c in channels if c.accepts(notification.event, alert)],
            sent_before={d.channel for d in notification.deliveries if d.status == DeliveryStatus.OK},
            tried=tried,
        )


def _dispatch(ctx: Context, claimed: _Claimed, *, sender: Sender, sleep: Sleep) -> DispatchResult:
    """Tell every target channel the claimed notification's message."""
    n = claimed.notification
    fanout = fan_out(
        claimed.targets, lambda channel: sender(channel, claimed.message),
        row=partial(DeliveryAttempt, notification_id=n.id, alert_id=n.alert_id), ctx=ctx,
        sent_before=claimed.sent_before, tried=claimed.tried, sleep=sleep,
    )  # fmt: skip
    finish(ctx, Notification, n.id, fanout, unrouted="no configured channel takes this event")
    return DispatchResult(
        notification_id=n.id, alert_id=n.alert_id, event=n.event, status=fanout.status, channels=fanout.channels
    )  # fmt: skip


def _batches(ctx: Context, limit: int) -> list[list[int]]:
    """The pending notifications, oldest first, in batches told by one message: those of one alert group
    with the same event, rule and severity (what a channel routes by) go together, so a storm of alerts in
    one group is one message, not one each."""
    with ctx.db.session() as session:
        rows = session.execute(
            sa.select(Notification.id, Alert.group_id, Notification.event, Alert.rule, Alert.severity)
            .join(Alert, Alert.id == Notification.alert_id)
            .where(Notification.status == NotificationStatus.PENDING)
            .order_by(Notification.id)
            .limit(limit)
        ).all()
    batches: dict[tuple[Any, ...], list[int]] = {}
    for nid, group_id, event, rule, severity in rows:
        key = (group_id, event, rule, severity) if group_id is not None else (None, nid)
        batches.setdefault(key, []).append(nid)
    return list(batches.values())


def _claim_rest(ctx: Context, lead: int, ids: list[int]) -> tuple[int, ...]:
    """Claim the rest of a batch whose lead this process holds; the ids it got (another sender may have
    taken some). The claim is marked with the lead's id, negated, until the batch is finished."""
    if not ids:
        return ()
    with ctx.db.session() as session:
        session.execute(
            sa.update(Notification)
            .where(Notification.id.in_(ids), Notification.status == NotificationStatus.PENDING)
            .values(status=NotificationStatus.SENDING, claimed_at=clock.now(), grouped_into=-lead)
        )
        got = session.scalars(
            sa.select(Notification.id).where(Notification.id.in_(ids), Notification.grouped_into == -lead)
        ).all()
    return tuple(sorted(got))


def _finish_grouped(ctx: Context, ids: tuple[int, ...], lead: int, result: DispatchResult) -> None:
    """The notifications told in the lead's message share its outcome."""
    if not ids:
        return
    status = NotificationStatus.GROUPED if result.status == NotificationStatus.SENT else result.status
    with ctx.db.session() as session:
        error = session.scalar(sa.select(Notification.error).where(Notification.id == lead))
        session.execute(
            sa.update(Notification)
            .where(Notification.id.in_(ids))
            .values(status=status, grouped_into=lead, finished_at=clock.now(),
                    error=f"told with notification #{lead}" + (f": {error}" if error else ""))
        )  # fmt: skip


def send_pending(
    ctx: Context,
    *,
    channels: Sequence[Channel] | None = None,
    sender: Sender = send,
    sleep: Sleep = time.sleep,
    limit: int = 1000,
) -> list[DispatchResult]:
    """Send queued notifications (oldest first) to every channel that takes them, one message per batch of
    one group (see `_batches`); safe to run in several processes at once (each notification is claimed by
    one)."""
    channels = list(channels) if channels is not None else channels_from_settings(ctx.settings)
    results = []
    for lead, *rest in _batches(ctx, limit):
        if not claim(ctx, Notification, lead, grouped_into=None):
            continue  # another process took it
        also = _claim_rest(ctx, lead, rest)
        claimed = _read_claimed(ctx, lead, channels, also)
        result = _dispatch(ctx, claimed, sender=sender, sleep=sleep)
        _finish_grouped(ctx, also, lead, result)
        result.grouped = list(also)
        results.append(result)
    return results

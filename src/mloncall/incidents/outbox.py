"""Telling people: incident messages are queued in the change's unit of work (the outbox) and sent after it
commits through the alert channels (`mloncall.alerts.notify`: webhook, Slack-compatible, e-mail), with the
same bounded retries; every attempt is a `Delivery` row.

`queue` takes a session and never commits; `send_pending` is a job: it opens its own units of work, claims
each message so that two processes never send one twice, and is safe to run at any time.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.alerts import notify
from mloncall.alerts.channels import Channel, channels_from_settings
from mloncall.core import clock
from mloncall.core.records import Record
from mloncall.incidents.models import Delivery, Incident, Message
from mloncall.incidents.states import MessageStatus
from mloncall.stores.context import Context

#: Every configured channel (when `[incidents] subscribers` or `page_channels` is not set).
EVERY_CHANNEL = "*"
STALE_CLAIM = dt.timedelta(minutes=15)

PlainSender = Callable[[Channel, notify.PlainMessage], int]


def queue(
    session: Session,
    incident: Incident,
    *,
    kind: str,
    channels: Sequence[str],
    title: str,
    text: str,
    body: dict[str, Any] | None = None,
) -> Message:
    """Queue a message about an incident to some channels (sent once the unit of work commits)."""
    message = Message(
        incident_id=incident.id,
        kind=kind,
        channels=list(channels),
        title=title[:255],
        text=text,
        body={
            "version": "1",
            "kind": kind,
            "incident": {
                "id": incident.id,
                "title": incident.title,
                "severity": incident.severity,
                "state": incident.state,
                "model": incident.model,
                "bridge": incident.bridge,
            },
            **(body or {}),
            "title": title,
            "text": text,
        },
        status=MessageStatus.PENDING,
        created_at=clock.now(),
    )
    session.add(message)
    session.flush()
    return message


@dataclass
class SendResult(Record):
    message_id: int
    incident_id: int
    kind: str
    status: str
    channels: dict[str, str] = field(default_factory=dict)


def _targets(message: Message, channels: Sequence[Channel]) -> list[Channel]:
    wanted = set(message.channels)
    return [c for c in channels if EVERY_CHANNEL in wanted or c.name in wanted]


def _send_one(
    ctx: Context, message: Message, targets: list[Channel], sender: PlainSender, sleep: notify.Sleep
) -> SendResult:
    plain = notify.PlainMessage(
        title=message.title,
        text=message.text,
        body=dict(message.body),
        headers={"Incident": str(message.incident_id), "Kind": message.kind},
    )
    fanout = notify.fan_out(
        targets, lambda channel: sender(channel, plain),
        row=partial(Delivery, message_id=message.id, incident_id=message.incident_id), ctx=ctx, sleep=sleep,
    )  # fmt: skip
    notify.finish(ctx, Message, message.id, fanout, unrouted="no channel takes it")
    return SendResult(message.id, message.incident_id, message.kind, fanout.status, fanout.channels)


def send_pending(
    ctx: Context,
    *,
    channels: Sequence[Channel] | None = None,
    sender: PlainSender = notify.send_plain,
    sleep: notify.Sleep = time.sleep,
    limit: int = 100,
) -> list[SendResult]:
    """Send queued incident messages, oldest first, each to the channels it names."""
    channels = list(channels) if channels is not None else channels_from_settings(ctx.settings)
    with ctx.db.session() as session:
        ids = list(
            session.scalars(
                sa.select(Message.id)
                .where(Message.status == MessageStatus.PENDING)
                .order_by(Message.id)
                .limit(limit)
            )
        )
    results = []
    for message_id in ids:
        if not notify.claim(ctx, Message, message_id, stale=STALE_CLAIM):
            continue
        with ctx.db.session() as session:
            message = session.get(Message, message_id)
            assert message is not None
        results.append(_send_one(ctx, message, _targets(message, channels), sender, sleep))
    return results

"""Background work for incidents, in the server's scheduler: route firing alerts into incidents (join, open),
escalate unacknowledged incidents, remind about overdue updates and unclaimed roles, and send the messages
all of these queue. Time comes from the injectable clock, so tests move it instead of sleeping.

Alerts know nothing of incidents: this job reads the alerts that fired and routes them, so an alert from the
evaluator, Alertmanager or PagerDuty is handled alike. Every pass is idempotent; one process per
installation runs it (the loop's lock), and the unique group claim keeps a second runner from opening a
second incident for one alert group.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError as SAIntegrityError

from mloncall.alerts import notify
from mloncall.alerts.channels import Channel
from mloncall.core import clock
from mloncall.core.records import Record
from mloncall.incidents import comms, correlation, escalation, outbox, roles
from mloncall.incidents.config import incident_settings
from mloncall.stores.context import Context
from mloncall.stores.jobs import LockedLoop

log = logging.getLogger("mloncall.incidents")

DEFAULT_INTERVAL = dt.timedelta(seconds=30)


@dataclass
class Pass(Record):
    """What one pass did."""

    routed: dict[str, int] = field(default_factory=dict)
    escalated: list[int] = field(default_factory=list)
    update_reminders: list[int] = field(default_factory=list)
    role_reminders: list[tuple[int, str]] = field(default_factory=list)
    sent: list[outbox.SendResult] = field(default_factory=list)


def route_alerts(ctx: Context) -> dict[str, int]:
    """Route the waiting firing alerts in one unit of work; on a lost race for a group, retry one by one."""
    settings = incident_settings(ctx.settings)
    try:
        with ctx.db.session() as session:
            result = correlation.intake(session=session, settings=settings)
    except SAIntegrityError:  # another runner claimed a group first: route each alert on its own
        with ctx.db.session() as session:
            ids = [a.id for a in correlation.waiting_alerts(session=session)]
        result = correlation.Intake()
        for alert_id in ids:
            try:
                with ctx.db.session() as session:
                    result.routed.extend(
                        correlation.intake(session=session, settings=settings, alert_ids=[alert_id]).routed
                    )
            except SAIntegrityError:
                log.info("alert #%s: lost a race for its group; the next pass joins it", alert_id)
    counts: dict[str, int] = {}
    for r in result.routed:
        counts[r.action] = counts.get(r.action, 0) + 1
    return counts


def run_once(
    ctx: Context,
    *,
    channels: Sequence[Channel] | None = None,
    sender: outbox.PlainSender = notify.send_plain,
    sleep: notify.Sleep = time.sleep,
) -> Pass:
    """One pass: route alerts, escalate, remind, send."""
    settings = incident_settings(ctx.settings)
    done = Pass(routed=route_alerts(ctx))
    now = clock.now()
    with ctx.db.session() as session:
        done.escalated = escalation.escalate_due(session=session, settings=settings, now=now)
    with ctx.db.session() as session:
        done.update_reminders = comms.remind_overdue(session=session, settings=settings, now=now)
    with ctx.db.session() as session:
        done.role_reminders = roles.remind_unclaimed(session=session, settings=settings, now=now)
    done.sent = outbox.send_pending(ctx, channels=channels, sender=sender, sleep=sleep)
    return done


class Scheduler(LockedLoop):
    """Runs `run_once` every `[incidents] interval` (default 30s) in one process per installation."""

    name = "incidents"
    lock_file = "incidents-scheduler.lock"
    setting = ("incidents", "interval", DEFAULT_INTERVAL)

    def run_pass(self) -> None:
        run_once(self.ctx, sleep=self.wait)

"""Tables and text the incident and on-call commands print (80 columns), and the audited change both make.

Both command modules import it and never each other, so what they share lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

from pydantic import BaseModel
from rich.table import Table
from sqlalchemy.orm import Session

from mloncall.cli.support import audited_change, print_json_if_asked, report_sending
from mloncall.core import console
from mloncall.incidents import outbox
from mloncall.incidents.schemas import (
    ActionItemOut,
    IncidentDetail,
    IncidentOut,
    OnCallOut,
    PolicyOut,
    ScheduleOut,
    TimelineOut,
)
from mloncall.stores.context import Context


def _t(value: object) -> str:
    return "" if value is None else str(value)[:16].replace("T", " ")


def incidents_table(rows: Sequence[IncidentOut]) -> Table:
    return console.table(
        "incidents",
        ["id", "severity", "state", "model", "title", "opened"],
        [[r.id, r.severity, r.state, r.model, r.title, _t(r.opened_at.isoformat())] for r in rows],
        drop_first=["opened", "model"],
    )


def detail_lines(d: IncidentDetail) -> list[str]:
    i = d.incident
    lines = [
        f"incident #{i.id} {i.severity} {i.state}: {i.title}",
        f"model {i.model or '-'}  detected {_t(i.detected_at.isoformat())}  opened {_t(i.opened_at.isoformat())}",
        f"bridge {i.bridge or '-'}  next update due {_t(i.next_update_due.isoformat() if i.next_update_due else None) or '-'}",
        "roles: " + ", ".join(f"{r}={who or 'unclaimed'}" for r, who in d.roles.items()),
    ]
    if i.merged_into_id:
        lines.append(f"merged into incident #{i.merged_into_id}")
    active = [a for a in d.alerts if a.detached_at is None]
    lines.append(
        f"alerts: {len(active)} linked"
        + (f", {len(d.alerts) - len(active)} detached" if len(active) < len(d.alerts) else "")
    )
    lines.extend(f"  #{a.alert_id}: {a.reason}" for a in active[:10])
    if len(active) > 10:
        lines.append(f"  ... and {len(active) - 10} more (--json for all)")
    if d.grants:
        lines.append(f"access grants: {len(d.grants)}")
        lines.extend(
            f"  #{g.id} {g.requester}: {g.role} on {g.scope}, {g.state}"
            + (f" by {g.decided_by}" if g.decided_by else "")
            for g in d.grants
        )
    return lines


def timeline_table(rows: Sequence[TimelineOut]) -> Table:
    return console.table(
        "timeline",
        ["at", "kind", "actor", "text"],
        [[_t(r.at.isoformat()), r.kind, r.actor, r.text] for r in rows],
        drop_first=["actor"],
    )


def oncall_table(rows: Sequence[OnCallOut]) -> Table:
    return console.table(
        "on call now",
        ["schedule", "principal", "until", "override"],
        [[r.schedule, r.principal, _t(r.until.isoformat()), "yes" if r.override else ""] for r in rows],
    )


def action_items_table(rows: Sequence[ActionItemOut]) -> Table:
    return console.table(
        "action items",
        ["id", "incident", "status", "due", "owner", "title"],
        [[r.id, r.incident_id, r.status, r.due, r.owner, r.title] for r in rows],
    )


def schedules_table(rows: Sequence[ScheduleOut]) -> Table:
    return console.table(
        "schedules",
        ["name", "members", "time zone", "starts"],
        [[r.name, ", ".join(map(str, r.members)), r.time_zone, r.starts] for r in rows],
    )


def policies_table(rows: Sequence[PolicyOut]) -> Table:
    return console.table(
        "policies",
        ["name", "steps", "repeat"],
        [[r.name, " > ".join(str(s["notify"]) for s in r.steps), r.repeat] for r in rows],
    )


def out(
    model: BaseModel | list[Any],
    as_json: bool,
    text: str | None = None,
    table: Callable[[list[Any]], Table] | None = None,
) -> None:
    """A result as JSON, or as its text, or (for a list) as its table."""
    if print_json_if_asked(model, as_json):
        return
    if text is not None:
        console.out.print(text, highlight=False, soft_wrap=True)
    elif table is not None and isinstance(model, list):
        console.out.print(table(model))


def message_failure(r: outbox.SendResult) -> str | None:
    """The line a command prints for a message some channels failed to take."""
    if r.status != "failed":
        return None
    return f"incident #{r.incident_id}: the {r.kind} message failed on some channels"


def change(action: str, target: str) -> AbstractContextManager[tuple[Session, Context, dict[str, Any]]]:
    """One audited change; the messages it queued go out after it commits."""
    return audited_change(action, target, then=_send)


def _send(ctx: Context) -> None:
    report_sending(partial(outbox.send_pending, ctx), what="messages", failure=message_failure)

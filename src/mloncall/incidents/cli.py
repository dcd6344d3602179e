"""`mloncall incident ...`: thin commands over `mloncall.incidents.service` (`mloncall oncall` is in `cli_oncall`).

Changes are audited with the actor `cli:<user>`; messages a change queues are sent before the command returns.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from mloncall.cli.support import JsonOption, installation
from mloncall.core import console
from mloncall.core.errors import InvalidInput
from mloncall.incidents import jobs, render, service
from mloncall.incidents.schemas import (
    ActionItemOut,
    IncidentDetail,
    IncidentOut,
    PostmortemOut,
    RoleOut,
    TimelineOut,
    UpdateOut,
    detail,
)
from mloncall.stores.context import Context

app = typer.Typer(
    help="Incidents: open, acknowledge, roles, bridge, updates, resolve, post-mortem.", no_args_is_help=True
)
action_app = typer.Typer(help="Action items of post-mortems.", no_args_is_help=True)
app.add_typer(action_app, name="action")


Id = Annotated[int, typer.Argument(help="The incident's id.", min=1)]


def _detail(session: Session, incident_id: int) -> IncidentDetail:
    return detail(session, incident_id)


def _settings(ctx: Context) -> service.IncidentSettings:
    return service.incident_settings(ctx.settings)


@app.command("open")
def open_(
    title: Annotated[str, typer.Argument(help="What is wrong, in a few words.")],
    severity: Annotated[str, typer.Option("--severity", "-s", help="SEV1 (worst) to SEV5.")] = "SEV3",
    model: Annotated[str | None, typer.Option("--model")] = None,
    cadence: Annotated[
        str | None, typer.Option("--cadence", help="Update cadence, e.g. 30m (default: the severity's).")
    ] = None,
    policy: Annotated[
        str | None, typer.Option("--policy", help="Escalation policy (default: the severity's).")
    ] = None,
    alert: Annotated[
        list[int] | None, typer.Option("--alert", help="An alert that belongs to it (repeatable).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Open an incident by hand."""
    with render.change("incident.open", title) as (session, ctx, _):
        incident = service.open_incident(
            session=session, settings=_settings(ctx), title=title, severity=severity, actor=console.actor(),
            model=model, cadence=cadence, policy=policy,
        )  # fmt: skip
        service.link_opening_alerts(
            session=session, incident_id=incident.id, alert_ids=alert or [], actor=console.actor()
        )
        out = IncidentOut.model_validate(incident)
    render.out(out, as_json, f"opened incident #{out.id} ({out.severity}): {out.title}")


@app.command("list")
def list_(
    state: Annotated[str | None, typer.Option("--state", help="A state or 'open'.")] = None,
    model: Annotated[str | None, typer.Option("--model")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Incidents, newest first."""
    with installation() as ctx, ctx.db.session() as session:
        rows = [
            IncidentOut.model_validate(r)
            for r in service.list_incidents(session=session, state=state, model=model, limit=limit)
        ]
    render.out(rows, as_json, table=render.incidents_table)


@app.command("show")
def show(incident_id: Id, as_json: JsonOption = False) -> None:
    """One incident: state, roles, bridge, alerts with the reason each joined."""
    with installation() as ctx, ctx.db.session() as session:
        detail = _detail(session, incident_id)
    render.out(detail, as_json, "\n".join(render.detail_lines(detail)))


@app.command("ack")
def ack(
    incident_id: Id, note: Annotated[str, typer.Option("--note")] = "", as_json: JsonOption = False
) -> None:
    """Acknowledge: you are on it; escalation stops."""
    with render.change("incident.ack", str(incident_id)) as (session, _, _d):
        out = IncidentOut.model_validate(
            service.acknowledge(session=session, incident_id=incident_id, actor=console.actor(), note=note)
        )
    render.out(out, as_json, f"incident #{incident_id} acknowledged by {out.acknowledged_by}")


@app.command("assign")
def assign(incident_id: Id, role: str, principal: str, as_json: JsonOption = False) -> None:
    """Give a role (commander, communications, operations, scribe) to a principal."""
    with render.change("incident.assign", str(incident_id)) as (session, _, _d):
        out = RoleOut.model_validate(
            service.assign(
                session=session,
                incident_id=incident_id,
                role=role,
                principal=principal,
                actor=console.actor(),
            )
        )
    render.out(out, as_json, f"incident #{incident_id}: {out.principal} is {out.role}")


@app.command("handoff")
def handoff(
    incident_id: Id,
    role: str,
    to: str,
    note: Annotated[str, typer.Option("--note")] = "",
    as_json: JsonOption = False,
) -> None:
    """Hand a held role to someone else."""
    with render.change("incident.handoff", str(incident_id)) as (session, _, _d):
        out = RoleOut.model_validate(
            service.handoff(
                session=session, incident_id=incident_id, role=role, to=to, actor=console.actor(), note=note
            )
        )
    render.out(out, as_json, f"incident #{incident_id}: {out.role} handed to {out.principal}")


@app.command("bridge")
def bridge(
    incident_id: Id,
    url: Annotated[str | None, typer.Option("--url", help="A URL or chat channel.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The incident's one bridge: recorded the first time, the same one every time after."""
    with render.change("incident.bridge", str(incident_id)) as (session, ctx, _d):
        incident, created = service.open_bridge(
            session=session,
            settings=_settings(ctx),
            incident_id=incident_id,
            actor=console.actor(),
            bridge=url,
        )
        out = IncidentOut.model_validate(incident)
    render.out(out, as_json, f"{'opened' if created else 'the bridge is'} {out.bridge}")


@app.command("update")
def update(
    incident_id: Id,
    status: Annotated[str, typer.Option("--status", help="What is happening now.")],
    impact: Annotated[str, typer.Option("--impact", help="What is affected.")] = "",
    next_: Annotated[str, typer.Option("--next", help="What comes next.")] = "",
    next_update: Annotated[
        str | None, typer.Option("--next-update", help="When the next update is due, e.g. 20m.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Post a status update to the subscribers and the timeline."""
    with render.change("incident.update", str(incident_id)) as (session, _, _d):
        row = service.post_update(
            session=session, incident_id=incident_id, status=status, actor=console.actor(), impact=impact, next_steps=next_, next_update=next_update,
        )  # fmt: skip
        out = UpdateOut.model_validate(row)
    render.out(out, as_json, out.summary)


@app.command("escalate")
def escalate(
    incident_id: Id,
    to: Annotated[
        str | None, typer.Option("--to", help="schedule:NAME or person:NAME (default: the next step).")
    ] = None,
    reason: Annotated[str, typer.Option("--reason")] = "escalated by hand",
) -> None:
    """Page the next escalation step (or someone named) now."""
    with render.change("incident.escalate", str(incident_id)) as (session, ctx, _d):
        incident = service.get_incident_or_raise(session=session, incident_id=incident_id)
        to = to or service.next_target(session=session, incident=incident)
        page = service.page(
            session=session,
            incident=incident,
            target=to,
            reason=reason,
            actor=console.actor(),
            settings=_settings(ctx),
        )
        who = page.principal
    console.out.print(f"paged {who} ({to})")


@app.command("mitigate")
def mitigate(
    incident_id: Id, note: Annotated[str, typer.Option("--note", help="What contained the impact.")]
) -> None:
    """The impact is contained."""
    with render.change("incident.mitigate", str(incident_id)) as (session, _, _d):
        service.mitigate(session=session, incident_id=incident_id, actor=console.actor(), note=note)
    console.out.print(f"incident #{incident_id} mitigated")


@app.command("resolve")
def resolve(
    incident_id: Id,
    summary: Annotated[str, typer.Option("--summary", help="What ended the problem.")],
    cause: Annotated[str, typer.Option("--cause", help="The root cause, if known.")] = "",
) -> None:
    """Resolve: no more pages or reminders; subscribers are told."""
    with render.change("incident.resolve", str(incident_id)) as (session, _, _d):
        service.resolve(
            session=session, incident_id=incident_id, actor=console.actor(), summary=summary, cause=cause
        )
    console.out.print(f"incident #{incident_id} resolved; next: mloncall incident postmortem {incident_id}")


@app.command("close")
def close(incident_id: Id) -> None:
    """Close the loop (only once the post-mortem is complete)."""
    with render.change("incident.close", str(incident_id)) as (session, _, _d):
        service.close(session=session, incident_id=incident_id, actor=console.actor())
    console.out.print(f"incident #{incident_id} closed")


@app.command("merge")
def merge(
    duplicate: Id,
    into: Annotated[int, typer.Argument(help="The incident that survives.", min=1)],
    reason: Annotated[str, typer.Option("--reason")] = "",
) -> None:
    """Merge a duplicate into another incident (it keeps its id and points to the survivor)."""
    with render.change("incident.merge", str(duplicate)) as (session, _, _d):
        service.merge(
            session=session, duplicate_id=duplicate, into_id=into, actor=console.actor(), reason=reason
        )
    console.out.print(f"incident #{duplicate} merged into #{into}")


@app.command("unmerge")
def unmerge(incident_id: Id, reason: Annotated[str, typer.Option("--reason")] = "") -> None:
    """Undo a merge."""
    with render.change("incident.unmerge", str(incident_id)) as (session, _, _d):
        row = service.unmerge(session=session, incident_id=incident_id, actor=console.actor(), reason=reason)
        state = row.state
    console.out.print(f"incident #{incident_id} unmerged ({state})")


@app.command("detach")
def detach(incident_id: Id, alert_id: int, reason: Annotated[str, typer.Option("--reason")] = "") -> None:
    """Undo an alert's join (it is not joined again automatically)."""
    with render.change("incident.detach", str(incident_id)) as (session, _, _d):
        service.detach(
            session=session, incident_id=incident_id, alert_id=alert_id, actor=console.actor(), reason=reason
        )
    console.out.print(f"alert #{alert_id} detached from incident #{incident_id}")


@app.command("note")
def note(incident_id: Id, text: str) -> None:
    """Add a note to the timeline."""
    with render.change("incident.note", str(incident_id)) as (session, _, _d):
        service.add_note(session=session, incident_id=incident_id, text=text, actor=console.actor())
    console.out.print("noted")


@app.command("timeline")
def timeline(incident_id: Id, as_json: JsonOption = False) -> None:
    """The timeline: alerts, deploys, roles, updates, pages, notes, oldest first."""
    with installation() as ctx, ctx.db.session() as session:
        rows = [TimelineOut(**i.__dict__) for i in service.timeline(session=session, incident_id=incident_id)]
    render.out(rows, as_json, table=render.timeline_table)


@app.command("postmortem")
def postmortem(
    incident_id: Id,
    complete: Annotated[
        bool, typer.Option("--complete", help="Mark it complete (needs --went-well, --went-badly).")
    ] = False,
    went_well: Annotated[str, typer.Option("--went-well")] = "",
    went_badly: Annotated[str, typer.Option("--went-badly")] = "",
    root_cause: Annotated[str, typer.Option("--root-cause")] = "",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the Markdown to this file.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Draft the post-mortem from the timeline and the evidence (or mark it complete)."""
    with render.change("incident.postmortem", str(incident_id)) as (session, ctx, _d):
        if complete:
            pm = service.complete(
                session=session, store=ctx.store, incident_id=incident_id, actor=console.actor(),
                went_well=went_well, went_badly=went_badly, root_cause=root_cause,
            )  # fmt: skip
        else:
            pm = service.draft(
                session=session, store=ctx.store, incident_id=incident_id, actor=console.actor()
            )
        out = PostmortemOut.model_validate(pm)
    if output is not None:
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_text(out.markdown, encoding="utf-8")
        tmp.replace(output)
    render.out(out, as_json, None if output else out.markdown)


@app.command("sweep")
def sweep(as_json: JsonOption = False) -> None:
    """One pass of the incident scheduler: route firing alerts, escalate, remind, send."""
    with installation() as ctx:
        done = jobs.run_once(ctx)
    if as_json:
        console.print_json(done.to_dict())
    else:
        console.out.print(
            f"routed {done.routed or 'nothing'}; escalated {done.escalated}; reminded {done.update_reminders}; sent {len(done.sent)}"
        )


@action_app.command("add")
def action_add(
    incident_id: Id,
    title: str,
    owner: Annotated[str, typer.Option("--owner")],
    due: Annotated[str, typer.Option("--due", help="YYYY-MM-DD")],
) -> None:
    """Add an action item with an owner and a due date."""
    try:
        day = dt.date.fromisoformat(due)
    except ValueError:
        raise InvalidInput(f"bad due date {due!r}: use YYYY-MM-DD") from None
    with render.change("incident.update", str(incident_id)) as (session, _, _d):
        item = service.add_action_item(
            session=session, incident_id=incident_id, title=title, owner=owner, due=day, actor=console.actor()
        )
        item_id = item.id
    console.out.print(f"action item #{item_id} added")


@action_app.command("done")
def action_done(item_id: int) -> None:
    """Mark an action item done."""
    with render.change("incident.update", f"action-item {item_id}") as (session, _, _d):
        service.finish_action_item(session=session, item_id=item_id, actor=console.actor())
    console.out.print(f"action item #{item_id} done")


@action_app.command("list")
def action_list(
    incident_id: Annotated[int | None, typer.Option("--incident")] = None,
    status: Annotated[str | None, typer.Option("--status", help="open or done")] = None,
    as_json: JsonOption = False,
) -> None:
    """Action items, by due date."""
    with installation() as ctx, ctx.db.session() as session:
        rows = [
            ActionItemOut.model_validate(i)
            for i in service.action_items(session=session, incident_id=incident_id, status=status)
        ]
    render.out(rows, as_json, table=render.action_items_table)

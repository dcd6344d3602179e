"""`mloncall oncall ...`: who is on call, rotations, overrides and escalation policies.

Changes are audited with the actor `cli:<user>`; messages a change queues are sent before the command returns.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from mloncall.cli.support import JsonOption, installation
from mloncall.core import console
from mloncall.core.errors import InvalidInput
from mloncall.incidents import render, service
from mloncall.incidents.schemas import OnCallOut, PolicyOut, ScheduleOut

oncall_app = typer.Typer(
    help="On call: who is on call, schedules, overrides, escalation policies.", no_args_is_help=True
)
schedule_app = typer.Typer(help="On-call rotations.", no_args_is_help=True)
policy_app = typer.Typer(help="Escalation policies.", no_args_is_help=True)
oncall_app.add_typer(schedule_app, name="schedule")
oncall_app.add_typer(policy_app, name="policy")


@oncall_app.command("now")
def now(
    schedule: Annotated[str | None, typer.Option("--schedule")] = None, as_json: JsonOption = False
) -> None:
    """Who is on call now."""
    with installation() as ctx, ctx.db.session() as session:
        rows = [OnCallOut(**o.__dict__) for o in service.oncall_now(session=session, schedule=schedule)]
    render.out(rows, as_json, table=render.oncall_table)


@schedule_app.command("create")
def schedule_create(
    name: str,
    members: Annotated[str, typer.Option("--members", help="Comma-separated principals, in rotation order.")],
    time_zone: Annotated[str, typer.Option("--tz")] = "UTC",
    handoff: Annotated[str, typer.Option("--handoff", help="Local handoff time HH:MM.")] = "09:00",
    shift: Annotated[str, typer.Option("--shift", help="Shift length, e.g. 1d or 1w.")] = "1w",
    start: Annotated[
        str | None, typer.Option("--start", help="First handoff day YYYY-MM-DD (default today).")
    ] = None,
) -> None:
    """Create a rotation."""
    try:
        day = dt.date.fromisoformat(start) if start else None
    except ValueError:
        raise InvalidInput(f"bad start {start!r}: use YYYY-MM-DD") from None
    with render.change("oncall.manage", name) as (session, _, _d):
        service.create_schedule(
            session=session, name=name, members=[m.strip() for m in members.split(",") if m.strip()], time_zone=time_zone,
            handoff=handoff, shift=shift, start=day, actor=console.actor(),
        )  # fmt: skip
    console.out.print(f"schedule {name} created")


@schedule_app.command("list")
def schedule_list(as_json: JsonOption = False) -> None:
    """Every schedule."""
    with installation() as ctx, ctx.db.session() as session:
        rows = [ScheduleOut.model_validate(s) for s in service.list_schedules(session=session)]
    render.out(rows, as_json, table=render.schedules_table)


@schedule_app.command("override")
def schedule_override(
    name: str, principal: str,
    starts: Annotated[str, typer.Option("--from", help="ISO time with offset.")],
    until: Annotated[str, typer.Option("--until", help="ISO time with offset.")],
    reason: Annotated[str, typer.Option("--reason")] = "",
) -> None:  # fmt: skip
    """Someone takes the schedule for a while."""
    try:
        a, b = dt.datetime.fromisoformat(starts), dt.datetime.fromisoformat(until)
    except ValueError:
        raise InvalidInput(
            "--from and --until take ISO times with an offset, e.g. 2026-01-05T09:00+01:00"
        ) from None
    with render.change("oncall.override", name) as (session, _, _d):
        service.add_override(
            session=session,
            schedule=name,
            principal=principal,
            starts_at=a,
            ends_at=b,
            actor=console.actor(),
            reason=reason,
        )
    console.out.print(f"{principal} takes {name} from {starts} until {until}")


@schedule_app.command("export")
def schedule_export(
    name: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the .ics here (default stdout).")
    ] = None,
    days: Annotated[int, typer.Option("--days")] = 28,
    member: Annotated[str | None, typer.Option("--member", help="Only this person's shifts.")] = None,
) -> None:
    """The shifts as iCalendar."""
    with installation() as ctx, ctx.db.session() as session:
        data = service.to_ical(session=session, schedule=name, days=days, member=member)
    if output is None:
        console.out.file.write(data.decode("utf-8"))
        return
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(output)
    console.err.print(f"wrote {output}", soft_wrap=True)  # a path stays whole to copy


@policy_app.command("create")
def policy_create(
    name: str,
    step: Annotated[
        list[str], typer.Option("--step", help="TARGET=WAIT, e.g. schedule:primary=5m (in order).")
    ],
    repeat: Annotated[int, typer.Option("--repeat", help="Repeat all steps this many more times.")] = 0,
) -> None:
    """Create an escalation policy."""
    with render.change("oncall.manage", name) as (session, _, _d):
        row = service.create_policy(
            session=session, name=name, steps=step, repeat=repeat, actor=console.actor()
        )
        out = PolicyOut.model_validate(row)
    console.out.print(f"policy {out.name}: {len(out.steps)} step(s), repeat {out.repeat}")


@policy_app.command("list")
def policy_list(as_json: JsonOption = False) -> None:
    """Every escalation policy."""
    with installation() as ctx, ctx.db.session() as session:
        rows = [PolicyOut.model_validate(p) for p in service.list_policies(session=session)]
    render.out(rows, as_json, table=render.policies_table)

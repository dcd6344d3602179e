"""`mloncall investigate` (runbook 3 from the terminal) and `mloncall runbook ...` (every runbook)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from mloncall.alerts import notify
from mloncall.alerts import service as alerts
from mloncall.cli.support import audited_unit_of_work, installation
from mloncall.core import console
from mloncall.core.durations import parse_duration
from mloncall.core.errors import CheckFailed, InvalidInput
from mloncall.core.names import parse_pairs
from mloncall.stores.context import Context

app = typer.Typer()


@app.command()
def investigate(
    alert: int | None = typer.Argument(None, help="Alert id (see `mloncall alerts list`)."),
    model: str | None = typer.Option(None, "--model", help="Investigate a model without an alert."),
    window: str | None = typer.Option(None, help="Window to examine (default: the alert's own, else 1h)."),
    root_cause: str | None = typer.Option(
        None, "--root-cause", help="Record the root cause and close the alert."
    ),
    action: str | None = typer.Option(
        None, "--action", help="The corrective action taken (with --root-cause)."
    ),
    note: str = typer.Option("", "--note", help="A resolution note kept with the alert."),
    json_out: bool = typer.Option(False, "--json", help="Print the investigation as JSON."),
) -> None:
    """Review an alert: drift per feature, output mix, data quality, accuracy, service; assess and recommend.

    Writes an HTML report with reference-vs-current histograms. With --root-cause and --action the alert is
    closed with those details (runbook 3's acceptance: root cause documented, action taken, alert closed).
    """
    # imported when the command runs: the monitors pull in numpy, scipy and pandas, which every other
    # `mloncall` command would otherwise load at start-up
    from mloncall.runbooks import report
    from mloncall.runbooks.investigate import investigate as investigate_alert
    from mloncall.runbooks.render import print_investigation

    if alert is None and model is None:
        raise InvalidInput("name an alert id, or --model NAME")
    if (root_cause is None) != (action is None):
        raise InvalidInput("closing an alert needs both --root-cause and --action")
    if root_cause is not None and alert is None:
        raise InvalidInput("--root-cause and --action close an alert: name its id")
    span = parse_duration(window, what="window") if window else None
    with installation() as ctx:
        with console.progress("investigating", enabled=not json_out):
            found = investigate_alert(ctx=ctx, alert_id=alert, model=model, window=span)
            found.report = report.write(store=ctx.store, inv=found)
        closed = None
        if root_cause is not None and action is not None and alert is not None:
            closed = _close(ctx, alert, root_cause=root_cause, action=action, note=note)
    if json_out:
        console.print_json({**found.to_dict(), "closed": closed})
        return
    print_investigation(found)
    if closed:
        console.out.print(
            f"[green]alert {closed['id']} closed[/]: root cause {closed['root_cause']!r}, action {closed['action']!r}"
        )
    elif alert is not None:
        console.out.print(f"close it with: mloncall investigate {alert} --root-cause '...' --action '...'")


def _close(ctx: Context, alert_id: int, *, root_cause: str, action: str, note: str) -> dict[str, object]:
    """Close the investigated alert with its root cause and action (audited), then send what it notifies."""
    with audited_unit_of_work(ctx, action="alerts.close", target=f"alert:{alert_id}") as (session, detail):
        detail.update(root_cause=root_cause, action=action)
        a = alerts.close(
            session=session,
            alert_id=alert_id,
            root_cause=root_cause,
            action=action,
            note=note,
            actor=console.actor(),
        )
        closed = {"id": a.id, "state": a.state, "root_cause": a.root_cause, "action": a.action}
    notify.send_pending(ctx)
    return closed


# --- `mloncall runbook ...` --------------------------------------------------------------------------------

runbook_app = typer.Typer(
    help="Runbooks as executable, recorded, resumable procedures: list, show, run, resume, export.",
    no_args_is_help=True,
)
PARAM = typer.Option([], "--param", "-p", help="A parameter NAME=VALUE (see `runbook show NAME`).")
YES = typer.Option(False, "--yes", "-y", help="Confirm every action without asking.")
JSON_OUT = typer.Option(False, "--json", help="Print JSON instead of tables.")


class _Terminal:
    """Asks at the terminal (pausing the live view); with --yes, or with nobody to ask, does not ask."""

    def __init__(self, yes: bool, live: Any) -> None:
        self.actor, self.yes, self.live = console.actor(), yes, live

    def ask(self, question: str) -> bool | None:
        if self.yes:
            return True
        if not sys.stdin.isatty():
            return None
        if self.live is not None:
            self.live.stop()
        try:
            return bool(typer.confirm(question, default=False))
        finally:
            if self.live is not None:
                self.live.start()

    def note(self, prompt: str) -> str:
        if self.yes or not sys.stdin.isatty():
            return "confirmed with --yes" if self.yes else ""
        return str(typer.prompt(prompt, default="", show_default=False))


def _record(ctx: Context, run_id: int) -> dict[str, Any]:
    from mloncall.runbooks import export, service

    with ctx.db.session() as s:
        return export.run_dict(s, service.get_run_or_raise(session=s, run_id=run_id), events=False)


def _execute(go: Any, json_out: bool, yes: bool) -> None:
    """Run `go(ctx, confirmer, on_change)` under a live view of the steps, then report and set the exit code."""
    from rich.live import Live

    from mloncall.runbooks.render import print_run, steps_table

    with installation() as ctx:
        live = None if json_out or not console.err.is_terminal else Live(console=console.err, transient=True)
        if live is not None:
            live.start()
        try:
            run_id = go(
                ctx,
                _Terminal(yes, live),
                lambda rid: live.update(steps_table(_record(ctx, rid))) if live else None,
            )
        finally:
            if live is not None:
                live.stop()
        record = _record(ctx, run_id)
    if json_out:
        console.print_json(record)
    else:
        print_run(record)
    _exit_for(record)


def _exit_for(record: dict[str, Any]) -> None:
    rid, state = record["id"], record["state"]
    if state == "waiting":
        raise InvalidInput(
            f"run #{rid} waits for a confirmation and there is no terminal to ask on: {record['reason']}; "
            f"continue with `mloncall runbook resume {rid} --yes`"
        )
    if state == "stopped":
        raise CheckFailed(
            f"run #{rid} stopped: {record['reason']}; after fixing it: `mloncall runbook resume {rid}`"
        )
    if record["outcome"] != "successful":
        raise CheckFailed(f"run #{rid} finished {record['outcome']}: {record['reason']}")


@runbook_app.command("list")
def list_runbooks(json_out: bool = JSON_OUT) -> None:
    """The runbooks this installation can run."""
    from mloncall.runbooks.catalog import all_runbooks
    from mloncall.runbooks.render import print_catalog

    books = all_runbooks()
    if json_out:
        console.print_json(
            [{"name": b.name, "title": b.title, "steps": [s.name for s in b.steps]} for b in books]
        )
        return
    print_catalog(books)


@runbook_app.command("show")
def show(
    name: str = typer.Argument(..., help="Runbook name (see `runbook list`)."), json_out: bool = JSON_OUT
) -> None:
    """A runbook's scenario, objective, parameters, steps, acceptance criteria and contacts."""
    from mloncall.runbooks import export
    from mloncall.runbooks.catalog import get_runbook
    from mloncall.runbooks.render import print_runbook

    book = get_runbook(name)
    if json_out:
        console.print_json(export.runbook_dict(book))
        return
    print_runbook(book)


@runbook_app.command("run")
def run(
    name: str = typer.Argument(..., help="Runbook name (see `runbook list`)."),
    args: list[str] = typer.Argument(None, help="The runbook's arguments (a model, a version)."),
    param: list[str] = PARAM,
    alert: int | None = typer.Option(None, "--alert", help="The alert this run answers."),
    incident: int | None = typer.Option(None, "--incident", help="The incident this run serves."),
    yes: bool = YES,
    json_out: bool = JSON_OUT,
) -> None:
    """Run a runbook: each step recorded with its evidence, actions confirmed, acceptance judged at the end.

    Exit codes: 0 finished and accepted; 1 a step failed or acceptance not met; 2 bad input, or an action
    waits for a confirmation nobody could give (resume with --yes); 3 unknown runbook; 4 its target is busy.
    """
    from mloncall.runbooks import engine
    from mloncall.runbooks.catalog import get_runbook

    book = get_runbook(name)
    given: dict[str, Any] = parse_pairs(param, option="--param", example="strategy=canary")
    if incident is not None:
        if not any(p.name == "incident" for p in book.params):
            raise InvalidInput(f"runbook {name} does not work on an incident: drop --incident")
        given["incident"] = incident
    params = book.parse_params(given, list(args or []))

    def go(ctx: Context, confirmer: Any, on_change: Any) -> int:
        return engine.start(
            ctx, runbook=name, params=params, alert_id=alert, confirmer=confirmer, on_change=on_change
        )

    _execute(go, json_out, yes)


@runbook_app.command("resume")
def resume(
    run_id: int = typer.Argument(..., metavar="RUN", help="Run id (see `runbook runs`)."),
    yes: bool = YES,
    json_out: bool = JSON_OUT,
) -> None:
    """Continue an interrupted or stopped run from its first step that did not succeed."""
    from mloncall.runbooks import engine

    def go(ctx: Context, confirmer: Any, on_change: Any) -> int:
        return engine.resume(ctx, run_id, confirmer=confirmer, on_change=on_change)

    _execute(go, json_out, yes)


@runbook_app.command("auto-run")
def auto_run(json_out: bool = JSON_OUT) -> None:
    """One pass of the server's auto-run job: the read-only checks of each alert that fired for a rule with
    `auto_run: checks` and has none yet for this firing, their evidence attached to the alert."""
    from mloncall.runbooks import jobs

    with installation() as ctx:
        done = jobs.run_once(ctx)
    if json_out:
        console.print_json([d.to_dict() for d in done])
        return
    if not done:
        console.out.print("no alert waits for its checks")
    for d in done:
        console.out.print(f"alert #{d.alert_id}: {d.reason}")


@runbook_app.command("runs")
def runs(
    runbook: str | None = typer.Option(None, "--runbook", help="Only runs of this runbook."),
    limit: int = typer.Option(50, help="At most this many, newest first."),
    json_out: bool = JSON_OUT,
) -> None:
    """Runs, newest first."""
    from mloncall.runbooks import export, service
    from mloncall.runbooks.catalog import get_runbook
    from mloncall.runbooks.render import print_runs

    if runbook is not None:
        get_runbook(runbook)
    with installation() as ctx, ctx.db.session() as s:
        records = [
            export.run_dict(s, r, events=False)
            for r in service.list_runs(session=s, runbook=runbook, limit=limit)
        ]
    if json_out:
        console.print_json(records)
        return
    print_runs(records)


@runbook_app.command("status")
def status(
    run_id: int = typer.Argument(..., metavar="RUN", help="Run id."),
    recheck: bool = typer.Option(False, "--recheck", help="Judge the acceptance criteria again, now."),
    json_out: bool = JSON_OUT,
) -> None:
    """A run's steps, their state and evidence, and its acceptance."""
    from mloncall.runbooks import engine
    from mloncall.runbooks.render import print_run

    with installation() as ctx:
        if recheck:
            engine.recheck(ctx, run_id, actor=console.actor())
        record = _record(ctx, run_id)
    if json_out:
        console.print_json(record)
        return
    print_run(record)


@runbook_app.command("export")
def export_run(
    run_id: int = typer.Argument(..., metavar="RUN", help="Run id."),
    fmt: str = typer.Option("markdown", "--format", help="markdown or json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """The run as a report to file with a post-mortem: parameters, steps, evidence, timeline, acceptance."""
    from mloncall.runbooks import export, service

    if fmt not in export.FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}: use markdown or json")
    with installation() as ctx, ctx.db.session() as s:
        text = export.export(s, service.get_run_or_raise(session=s, run_id=run_id), fmt)
    if output is None:
        sys.stdout.write(text)
        return
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(text)
    tmp.replace(output)
    console.err.print(f"wrote {output}", soft_wrap=True)  # a path stays whole to copy

"""`mloncall investigate`: runbook 3 from the terminal."""

from __future__ import annotations

import typer

from mloncall.alerts import notify
from mloncall.alerts import service as alerts
from mloncall.cli.support import audited_unit_of_work, installation
from mloncall.core import console
from mloncall.core.durations import parse_duration
from mloncall.core.errors import InvalidInput
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

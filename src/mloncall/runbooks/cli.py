"""`mloncall investigate`: runbook 3 from the terminal."""

from __future__ import annotations

import typer

from mloncall.core import console
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
    from mloncall.alerts import notify
    from mloncall.alerts import service as alerts
    from mloncall.core.durations import parse_duration
    from mloncall.core.errors import InvalidInput
    from mloncall.runbooks import investigate as inv_service
    from mloncall.runbooks import report

    if alert is None and model is None:
        raise InvalidInput("name an alert id, or --model NAME")
    if (root_cause is None) != (action is None):
        raise InvalidInput("closing an alert needs both --root-cause and --action")
    if root_cause is not None and alert is None:
        raise InvalidInput("--root-cause and --action close an alert: name its id")
    ctx = Context.from_settings()
    ctx.db.migrate()

    span = parse_duration(window, what="window") if window else None
    with console.progress("investigating", enabled=not json_out):
        found = inv_service.investigate(ctx=ctx, alert_id=alert, model=model, window=span)
        found.report = report.write(store=ctx.store, inv=found)
    closed = None
    if root_cause is not None and action is not None and alert is not None:
        with ctx.db.session() as s:
            a = alerts.close(
                session=s,
                alert_id=alert,
                root_cause=root_cause,
                action=action,
                note=note,
                actor=console.actor(),
            )
            closed = {"id": a.id, "state": a.state, "root_cause": a.root_cause, "action": a.action}
        notify.send_pending(ctx)
    if json_out:
        console.print_json({**found.to_dict(), "closed": closed})
        return
    _print(found)
    if closed:
        console.out.print(
            f"[green]alert {closed['id']} closed[/]: root cause {closed['root_cause']!r}, action {closed['action']!r}"
        )
    elif alert is not None:
        console.out.print(f"close it with: mloncall investigate {alert} --root-cause '...' --action '...'")


def _print(found: object) -> None:
    from mloncall.runbooks.investigate import Investigation

    assert isinstance(found, Investigation)
    a = found.alert
    if a:
        console.out.print(
            f"[bold]alert {a['id']}[/] {a['rule']} on {found.model}: {a['state']}, {a['severity']}, "
            f"runbook {a['runbook']}\n  {a['summary'] or a['reason']}"
        )
    console.out.print(f"window {found.since:%Y-%m-%d %H:%M:%S} → {found.until:%H:%M:%S} UTC")
    rows = [
        [
            f"v{r['version']}",
            r["feature"],
            r["method"],
            _f(r["score"]),
            _f(r["threshold"]),
            _f(r["psi"]),
            _f(r["ks"]),
            _f(r["wasserstein_norm"]),
            "[red]yes[/]" if r["drifted"] else "no",
            f"{r['n_cur']}",
        ]
        for r in found.drift.rows_table()
    ]
    console.out.print(
        console.table(
            "1. inputs: drift per feature vs the training data",
            [
                "version",
                "feature",
                "method",
                "score",
                "threshold",
                "PSI",
                "KS",
                "W (norm.)",
                "drifted",
                "rows",
            ],
            rows,
        )
    )
    console.out.print(f"   {console.outcome_text(found.drift.outcome)}: {found.drift.reason}")
    for v in found.drift.versions:
        if v.prediction is not None:
            console.out.print(f"2. outputs v{v.version}: {v.prediction.reason}")
    if found.canary and found.canary.get("disagreement"):
        console.out.print(
            f"   last canary #{found.canary['rollout']}: {found.canary['disagreement']['reason']}"
        )
    checks = [found.accuracy, *found.quality, *found.service]
    console.out.print(
        console.table(
            "3. performance, data quality, service",
            ["check", "result", "evidence"],
            [[c.name, console.outcome_text(c.outcome), c.reason] for c in checks],
        )
    )
    colour = "green" if found.assessment == "likely false alarm" else "yellow"
    console.out.print(f"4. assessment: [bold {colour}]{found.assessment}[/]")
    r = found.recommendation
    console.out.print(f"5. recommended action: [bold]{r.action}[/]: {r.why}\n   → {r.command}")
    console.out.print(f"report: {found.report}")


def _f(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else ("-" if v is None else str(v))

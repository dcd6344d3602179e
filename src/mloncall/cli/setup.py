"""`mloncall init` and `mloncall server`: create an installation and run its server."""

from __future__ import annotations

import typer

from mloncall.cli.gc import DEFAULT_GRACE, find_leftovers, leftover_note
from mloncall.core import console
from mloncall.core.durations import parse_duration
from mloncall.stores.context import Context
from mloncall.stores.db import safe_url

app = typer.Typer()


@app.command()
def init(json_out: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Create or upgrade the metadata database and the artifact store; create the admin token once.

    The admin token is printed only the first time: it is stored as a digest and cannot be shown again
    (create more with `mloncall tokens create`).
    """
    ctx = Context.from_settings()
    ctx.init()
    from mloncall.access import service as access

    with ctx.db.session() as session:
        token = access.bootstrap_admin(session=session)
    leftovers = len(find_leftovers(ctx, older_than=parse_duration(DEFAULT_GRACE)))
    result = {
        "home": str(ctx.settings.home),
        "database": safe_url(ctx.settings.db_url),
        "artifacts": ctx.settings.artifacts,
        "admin_token": token,
        "orphaned_artifact_folders": leftovers,
    }
    if json_out:
        console.print_json(result)
        return
    console.out.print(f"[green]ready[/]  database  {result['database']}")
    console.out.print(f"       artifacts {result['artifacts']}")
    if token:
        console.out.print(f"\nadmin token (shown once, keep it safe): [bold]{token}[/]")
    else:
        console.out.print("admin token already created; make another with `mloncall tokens create NAME`")
    if leftovers:
        console.out.print(f"\n[yellow]{leftover_note(leftovers)}[/]")


@app.command()
def server(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on (1-65535)."),
    workers: int = typer.Option(1, min=1, max=64, help="Worker processes."),
) -> None:
    """Run the control-plane API (and the inference server) until stopped with Ctrl-C or SIGTERM."""
    from mloncall.api.server import run

    run(host=host, port=port, workers=workers, on_open=_report_leftovers)


def _report_leftovers(ctx: Context) -> None:
    count = len(find_leftovers(ctx, older_than=parse_duration(DEFAULT_GRACE)))
    if count:
        console.err.print(f"[yellow]warning:[/] {leftover_note(count)}", highlight=False)

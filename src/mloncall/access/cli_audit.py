"""`mloncall audit`: the audit log, newest first."""

from __future__ import annotations

from typing import Annotated

import typer

from mloncall.access import audit as service
from mloncall.access.schemas import AuditRecordOut
from mloncall.cli.support import installation, limit_option
from mloncall.core import console

#: Holds the top-level `audit` command.
audit_app = typer.Typer()

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@audit_app.command("audit")
def audit(
    actor: Annotated[str | None, typer.Option(help="Only this actor (e.g. alice, cli:bob).")] = None,
    action: Annotated[str | None, typer.Option(help="Only actions containing this text.")] = None,
    limit: Annotated[int, limit_option("At most this many records.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Show the audit log, newest first."""
    with installation() as ctx, ctx.db.session() as session:
        records = [
            AuditRecordOut.model_validate(r)
            for r in service.list_audit(session=session, actor=actor, action=action, limit=limit)
        ]
    if as_json:
        console.print_json([r.model_dump(mode="json") for r in records])
        return
    rows = [
        [
            f"{r.at:%Y-%m-%d %H:%M:%S}",
            r.actor,
            r.action,
            r.target,
            f"[green]{r.outcome}[/]" if r.outcome == "success" else f"[red]{r.outcome}[/]",
        ]
        for r in records
    ]
    console.out.print(console.table("audit log", ["at (UTC)", "actor", "action", "target", "outcome"], rows))

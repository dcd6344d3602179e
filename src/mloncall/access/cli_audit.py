"""`mloncall audit`: the audit log, newest first and filtered; `mloncall audit verify`: its hash chain."""

from __future__ import annotations

from typing import Annotated

import typer

from mloncall.access import audit as service
from mloncall.access.schemas import AuditRecordOut, AuditVerifyOut
from mloncall.cli.support import JsonOption, installation, limit_option
from mloncall.core import console
from mloncall.core.errors import IntegrityError

#: Holds the top-level `audit` group.
audit_app = typer.Typer()
group = typer.Typer(invoke_without_command=True)
audit_app.add_typer(group, name="audit")

WHEN = "an ISO time (UTC unless it has an offset) or a duration ago: 30m, 2h, 7d"
#: Left out first, in this order, when the table is wider than the terminal.
DROP_FIRST = ("request id", "reason", "resource")


def _outcome_cell(outcome: str) -> str:
    return f"[green]{outcome}[/]" if outcome in ("success", "successful") else f"[red]{outcome}[/]"


@group.callback()
def audit(
    ctx: typer.Context,
    principal: Annotated[
        str | None, typer.Option("--principal", "--actor", help="Only this principal (alice, cli:bob).")
    ] = None,
    action: Annotated[str | None, typer.Option(help="Only actions containing this text.")] = None,
    resource: Annotated[
        str | None, typer.Option(help="Only targets containing this text (a path, model:iris, run:3).")
    ] = None,
    outcome: Annotated[
        str | None, typer.Option(help="success, denied, unauthenticated, or error (any error:<code>).")
    ] = None,
    since: Annotated[str | None, typer.Option(help=f"Not before: {WHEN}.")] = None,
    until: Annotated[str | None, typer.Option(help=f"Not after: {WHEN}.")] = None,
    request_id: Annotated[str | None, typer.Option(help="Only the records of this request id.")] = None,
    limit: Annotated[int, limit_option("At most this many records.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Show the audit log, newest first; `mloncall audit verify` checks that no record was altered or removed."""
    if ctx.invoked_subcommand is not None:
        return
    where = service.AuditFilter.from_text(
        actor=principal,
        action=action,
        resource=resource,
        outcome=outcome,
        request_id=request_id,
        since=since,
        until=until,
    )
    with installation() as inst, inst.db.session() as session:
        found = service.list_matching(session=session, where=where, limit=limit)
        records = [AuditRecordOut.model_validate(r) for r in found]
    if as_json:
        console.print_json([r.model_dump(mode="json") for r in records])
        return
    rows = [
        [
            r.id,
            f"{r.at:%m-%d %H:%M:%S}",
            r.actor,
            r.action,
            r.target,
            _outcome_cell(r.outcome),
            r.reason,
            r.request_id or "",
        ]
        for r in records
    ]
    columns = ["id", "at (UTC)", "principal", "action", "resource", "outcome", "reason", "request id"]
    console.out.print(console.table("audit log", columns, rows, drop_first=DROP_FIRST))


@group.command("verify")
def verify(as_json: JsonOption = False) -> None:
    """Walk the hash chain and name the first altered or missing record (exit 5 if there is one)."""
    with (
        installation() as inst,
        inst.db.session() as session,
        console.progress("verifying the audit chain") as step,
    ):
        report = service.verify(
            session=session, on_progress=lambda done, total: step(f"{done:,} of {total:,} records")
        )
    out = AuditVerifyOut.model_validate(report.to_dict())
    if as_json:
        console.print_json(out.model_dump(mode="json"))
    elif out.intact:
        head = f"head seq {out.head_seq}, {out.head_hash[:16]}…"
        console.out.print(f"[green]intact[/]: {out.checked:,} records checked ({head})")
    else:  # the error line below names the broken link
        intact = "1 intact record" if out.checked == 1 else f"{out.checked:,} intact records"
        console.out.print(f"[bold red]broken[/] after {intact} (head seq {out.head_seq})")
    if not out.intact:
        raise IntegrityError(out.message)

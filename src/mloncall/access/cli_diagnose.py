"""`mloncall access diagnose`: why can't I reach it? Runbook 7's first checks, layer by layer, from here.

It works from the engineer's own machine, over HTTP to the server and directly to the artifact store; the
layers themselves are `access.diagnose`'s.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mloncall.access import diagnose as diagnosis
from mloncall.access.diagnose_stores import local_installation
from mloncall.access.permissions import PERMISSIONS
from mloncall.core import console
from mloncall.core.durations import parse_duration
from mloncall.core.errors import CheckFailed, MloncallError, StoreUnavailable, Unauthenticated

app = typer.Typer(name="access", no_args_is_help=True)

_STYLE = {"ok": "green", "skipped": "yellow", "error": "red", "failed": "bold red"}
#: Evidence the reason already says, or too long for a table cell (all of it is in `--json`).
_UNSHOWN = {"reasons", "via", "failure", "refused", "url"}
_ERRORS: dict[int, type[MloncallError]] = {
    Unauthenticated.exit_code: Unauthenticated,
    StoreUnavailable.exit_code: StoreUnavailable,
}


@app.command("diagnose")
def diagnose(
    server: Annotated[
        str, typer.Option("--server", envvar="MLONCALL_URL", help="The server's URL.")
    ] = diagnosis.DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="MLONCALL_TOKEN", show_default=False, help="Your API token (better: the env var)."
        ),
    ] = None,
    permission: Annotated[
        str | None, typer.Option(help=f"What you tried, one of: {', '.join(PERMISSIONS)}.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="On which model you tried it.")] = None,
    user: Annotated[
        str | None,
        typer.Option(help="Try the dashboard login as this user (password: MLONCALL_PASSWORD, or asked)."),
    ] = None,
    artifacts: Annotated[
        str | None,
        typer.Option(help="The artifact store to reach from here; default: this machine's settings, if any."),
    ] = None,
    timeout: Annotated[str, typer.Option(help="How long to wait for each answer, e.g. 5s.")] = "5s",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Check, layer by layer, what stands between you and mloncall: the server, your token, your role, the
    database, the artifact store, the dashboard login; name the first that fails and its fix.

    Exit code 0: no layer fails; 6: a token, role, key or login refused; 7: server or store unreachable; 1: other.
    """
    seconds = parse_duration(timeout, what="timeout").total_seconds()
    local = local_installation()
    target = diagnosis.Target(
        url=server,
        token=token or None,
        permission=permission,
        model=model,
        user=user,
        password=_password(user),
        artifacts=artifacts or (local.artifacts if local is not None else None),
        local=local,
        timeout=seconds,
    )
    result = diagnosis.diagnose(target)
    if as_json:
        console.print_json(result.to_dict())
    else:
        _print(result)
    blamed = result.blame
    if blamed is not None:
        # The root command prints this one line on stderr and exits with the error's code.
        error = _ERRORS.get(blamed.exit_code, CheckFailed)
        raise error(f"first failing layer: {blamed.name}: {blamed.check.reason}; fix: {blamed.fix}")


def _password(user: str | None) -> str | None:
    """The dashboard password: MLONCALL_PASSWORD, else asked when there is a terminal; never an argument."""
    if user is None:
        return None
    password = os.environ.get("MLONCALL_PASSWORD")
    if password:
        return password
    if sys.stdin.isatty():
        asked: str = typer.prompt(
            f"Dashboard password for {user}", hide_input=True, default="", show_default=False
        )
        return asked or None
    return None


def _evidence(reason: str, evidence: dict[str, Any]) -> list[str]:
    """The evidence the reason does not already say, one `key: value` a line."""
    lines = []
    for key, value in evidence.items():
        if key in _UNSHOWN or value in (None, "", [], {}):
            continue
        text = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        if text not in reason:
            lines.append(f"[dim]{escape(key)}: {escape(text)}[/]")
    return lines


def _print(result: diagnosis.Diagnosis) -> None:
    table = Table(title=f"access diagnosis of {result.url}", title_justify="left", header_style="bold")
    table.add_column("layer", no_wrap=True, min_width=10)
    table.add_column("state", no_wrap=True, min_width=7)
    table.add_column("what was found", overflow="fold", ratio=1)
    blamed = result.blame
    for layer in result.layers:
        style = _STYLE[layer.state]
        cell = [escape(layer.check.reason), *_evidence(layer.check.reason, layer.check.evidence)]
        if layer is blamed and layer.fix:
            cell.append(f"[bold]fix:[/] {escape(layer.fix)}")
        table.add_row(layer.name, f"[{style}]{layer.state}[/]", "\n".join(cell))
    console.out.print(table)
    if blamed is None:
        skipped = [layer.name for layer in result.layers if layer.state == "skipped"]
        note = f" ({', '.join(skipped)} skipped)" if skipped else ""
        console.out.print(f"[green]No layer fails{note}.[/]")

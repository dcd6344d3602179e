"""`mloncall gc`: find, and with `--yes` clear, what crashed registrations left in the artifact store.

A registration stages its files and moves them into place once its row commits, so a crash leaves either a
staged unit (`staging/models/NAME/ID`, `staging/datasets/NAME/FILE`) or, after a deletion or from an older
installation, a unit at its real key that no row names. Units younger than the grace period are kept: they
may belong to a registration still under way. A staged unit whose row did commit is moved into place.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence

import typer

from mloncall.cli.support import installation
from mloncall.core import clock, console
from mloncall.core.durations import format_duration, parse_duration
from mloncall.data import service as data_service
from mloncall.registry import service as registry
from mloncall.stores.artifacts import Leftover
from mloncall.stores.context import Context

app = typer.Typer()

#: How old a leftover must be before `gc` (and the counts `init` and the server print) consider it.
DEFAULT_GRACE = "1h"
_ACTION = {"staging": "remove", "orphaned": "remove", "unpromoted": "move into place"}


def find_leftovers(ctx: Context, *, older_than: dt.timedelta) -> Sequence[Leftover]:
    """Every leftover of the installation older than the grace period."""
    with ctx.db.session() as session:
        claimed = {
            "models": registry.claimed_artifacts(session=session),
            "datasets": data_service.claimed_artifacts(session=session),
        }
    return ctx.store.leftovers(claimed=claimed, older_than=older_than, now=clock.now())


def leftover_note(count: int) -> str:
    """The line `init` and the server's start print when leftovers wait for `gc`."""
    noun = "orphaned artifact folder" if count == 1 else "orphaned artifact folders"
    return f"{count} {noun} (run `mloncall gc`)"


@app.command()
def gc(
    older_than: str = typer.Option(
        DEFAULT_GRACE, "--older-than", help="Grace period: only leftovers older than this (e.g. 30m, 1h)."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Remove what is found without asking."),
    json_out: bool = typer.Option(False, "--json", help="Print what was found (and removed) as JSON."),
) -> None:
    """List staged and orphaned artifact folders older than the grace period; remove them with --yes.

    Without --yes it asks on a terminal, and without one only lists (exit 0).
    """
    grace = parse_duration(older_than, allow_zero=True, what="grace period")
    with installation() as ctx:
        found = find_leftovers(ctx, older_than=grace)
        if not json_out:
            _print(found, grace)
        remove = bool(found) and (yes or (sys.stdin.isatty() and not json_out and _ask(len(found))))
        if remove:
            for leftover in found:
                ctx.store.remove_leftover(leftover)
        if json_out:
            console.print_json(
                {
                    "older_than": format_duration(grace),
                    "found": [_as_json(x) for x in found],
                    "removed": remove,
                }
            )
        elif remove:
            console.out.print(f"[green]done[/]  {len(found)} cleared")
        elif found:
            console.out.print("nothing removed: pass --yes to remove them")


def _ask(count: int) -> bool:
    return typer.confirm(f"clear these {count} leftovers?", default=False)


def _print(found: Sequence[Leftover], grace: dt.timedelta) -> None:
    if not found:
        console.out.print(f"no staged or orphaned artifact folders older than {format_duration(grace)}")
        return
    now = clock.now()
    rows = [
        [x.kind, x.location, x.files, x.size, format_duration(now - x.modified), _ACTION[x.kind]]
        for x in found
    ]
    columns = ["kind", "name", "files", "bytes", "age", "action"]
    console.out.print(console.table(None, columns, rows, drop_first=["bytes", "files", "age"]))


def _as_json(x: Leftover) -> dict[str, object]:
    return {
        "kind": x.kind,
        "key": x.location,
        "files": x.files,
        "bytes": x.size,
        "modified": x.modified.isoformat(),
        "action": _ACTION[x.kind],
    }

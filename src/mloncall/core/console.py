"""Terminal output shared by every command: Rich tables and progress for people, JSON for scripts."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from mloncall.core.outcome import Outcome

out = Console(soft_wrap=False)
err = Console(stderr=True)

OUTCOME_STYLE = {
    Outcome.SUCCESSFUL: "green",
    Outcome.INCONCLUSIVE: "yellow",
    Outcome.ERROR: "red",
    Outcome.FAILED: "bold red",
}


def actor() -> str:
    """Who is acting from this terminal, as recorded in audit and history."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER", "unknown")
    return f"cli:{user}"


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, one document."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()


#: Columns whose cells are never cut: people copy an id, read a state, and search for a name.
ESSENTIAL_COLUMNS = frozenset(
    {
        "id",
        "state",
        "status",
        "severity",
        "name",
        "model",
        "rule",
        "version",
        "alias",
        "principal",
        "alert",
        "requester",
        "approver",
        "role",
    }
)


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    drop_first: Sequence[str] = (),
    width: int | None = None,
) -> Table:
    """A table that stays readable in the terminal's width (80 columns included).

    When the cells would not fit, the columns named in `drop_first` are left out, in that order, until they
    do; essential columns (an id, a state, a name) are never cut, the others wrap.
    """
    cells = [["" if v is None else str(v) for v in r] for r in rows]
    keep = list(range(len(columns)))
    available = width or out.size.width
    natural = [max([len(columns[i]), *(Text.from_markup(r[i]).cell_len for r in cells)]) for i in keep]
    for name in drop_first:
        if sum(natural[i] + 3 for i in keep) + 1 <= available:
            break
        if name in columns:
            keep.remove(columns.index(name))
    # Too wide for the terminal: give Rich the width to fit, so it wraps the other columns rather than letting
    # the essential columns' minimum widths push the table past the edge (its right border was cut).
    fits = sum(natural[i] + 3 for i in keep) + 1 <= available
    t = Table(title=title, title_justify="left", header_style="bold", width=None if fits else available)
    for i in keep:
        if columns[i] in ESSENTIAL_COLUMNS and natural[i] <= 40:
            # kept whole: Rich shrinks the other columns for it (a minimum width let it overshoot the edge)
            t.add_column(columns[i], no_wrap=True)
        elif columns[i] in ESSENTIAL_COLUMNS:
            t.add_column(columns[i], min_width=40, overflow="fold")
        else:
            t.add_column(columns[i], overflow="fold")
    for r in cells:
        t.add_row(*[r[i] for i in keep])
    return t


def outcome_text(outcome: Outcome) -> str:
    return f"[{OUTCOME_STYLE[outcome]}]{outcome.label}[/]"


@contextmanager
def progress(description: str, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner with elapsed time on stderr; yields a callback that shows the current step."""
    if not enabled or not err.is_terminal:
        yield lambda _msg: None
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task(description, total=None)

        def step(message: str) -> None:
            bar.update(task, description=f"{description}: {message[:90]}")

        yield step

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
        "rollout",
        "state",
        "transition",
        "at",
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
    do. Essential columns (an id, a state, a name) are never cut: a short one keeps its width, a long one
    folds onto more lines; the other columns fold. When even that does not fit, the other columns are left
    out from the right.
    """
    cells = [["" if v is None else str(v) for v in r] for r in rows]
    keep = list(range(len(columns)))
    available = width or out.size.width
    natural = [max([len(columns[i]), *(Text.from_markup(r[i]).cell_len for r in cells)]) for i in keep]
    for name in drop_first:
        if _needed(natural, keep) <= available:
            break
        if name in columns:
            keep.remove(columns.index(name))
    widths = _widths(columns, natural, keep, available)
    t = Table(title=title, title_justify="left", header_style="bold")
    for i in keep:
        essential = columns[i] in ESSENTIAL_COLUMNS
        if widths is None:
            t.add_column(columns[i], no_wrap=essential)
        elif essential and widths[i] == natural[i]:
            t.add_column(columns[i], width=widths[i], no_wrap=True)
        else:
            t.add_column(columns[i], width=widths[i], overflow="fold")
    for r in cells:
        t.add_row(*[r[i] for i in keep])
    return t


#: An essential column this narrow keeps its width whole; a wider one may fold, down to this width.
_SHORT = 20
#: The narrowest another column folds to before it is left out.
_NARROWEST = 6


def _needed(natural: Sequence[int], keep: Sequence[int]) -> int:
    """The table's width with these columns at their natural widths: cells, padding and borders."""
    return sum(natural[i] + 3 for i in keep) + 1


def _widths(
    columns: Sequence[str], natural: Sequence[int], keep: list[int], available: int
) -> dict[int, int] | None:
    """Each kept column's width when the table must fit `available` (None: it fits as it is); may leave
    non-essential columns out of `keep`, from the right."""
    if _needed(natural, keep) <= available:
        return None
    while True:
        fixed = {i for i in keep if columns[i] in ESSENTIAL_COLUMNS and natural[i] <= _SHORT}
        floor = {i: min(natural[i], _SHORT if columns[i] in ESSENTIAL_COLUMNS else _NARROWEST) for i in keep}
        budget = available - 1 - 3 * len(keep) - sum(natural[i] for i in fixed)
        flexible = [i for i in keep if i not in fixed]
        others = [i for i in keep if columns[i] not in ESSENTIAL_COLUMNS]
        if sum(floor[i] for i in flexible) <= budget or not others:
            break
        keep.remove(others[-1])
    widths = {i: natural[i] for i in keep}
    excess = sum(widths[i] for i in flexible) - budget
    while excess > 0:  # narrow the widest foldable column, one cell at a time, never below its floor
        candidates = [i for i in flexible if widths[i] > floor[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return widths


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

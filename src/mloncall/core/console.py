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


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
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

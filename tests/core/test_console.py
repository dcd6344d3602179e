"""Tables stay readable in 80 columns: less important columns go first, ids, states and names are never cut."""

from __future__ import annotations

import io

from rich.console import Console

from mloncall.core import console

COLUMNS = ["id", "state", "severity", "rule", "model", "runbook", "value", "since", "group", "source"]
ROW = [12345, "[red]firing[/]", "critical", "feature-drift-petal", "iris-classifier-prod", "monitoring",
       "0.25", "3m20s ago", "7", "alertmanager"]  # fmt: skip


def _render(width: int) -> str:
    table = console.table(
        "alerts", COLUMNS, [ROW], drop_first=("source", "group", "runbook", "value"), width=width
    )
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(table)
    return buffer.getvalue()


def test_at_80_columns_the_least_important_columns_are_dropped_and_nothing_essential_is_cut() -> None:
    text = _render(80)
    assert max(len(line) for line in text.splitlines()) <= 80
    for whole in ("12345", "firing", "critical", "feature-drift-petal", "iris-classifier-prod"):
        assert whole in text, text
    assert "…" not in text
    assert "source" not in text and "alertmanager" not in text


def test_a_wide_terminal_keeps_every_column() -> None:
    text = _render(160)
    assert all(name in text for name in COLUMNS)

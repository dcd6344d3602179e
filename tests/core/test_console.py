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


def _column(text: str, index: int) -> list[str]:
    """A column's cells, each folded piece joined back, from a rendered table's body lines."""
    cells: list[str] = []
    for line in text.splitlines():
        parts = line.split("│")
        if len(parts) < index + 2:
            continue
        first, piece = parts[1].strip(), parts[index + 1].strip()
        if first:
            cells.append(piece)
        elif cells:
            cells[-1] += piece
    return cells


def test_long_names_fold_whole_and_states_stay_whole_at_80_columns() -> None:
    rules = ["slo-latency-page-slow-iris-classifier", "slo-latency-ticket-iris-classifier", "feature-drift"]
    rows = [
        [i + 1, state, "critical", rule, "iris-classifier", "-", "-", "32m16s ago", "-", "local"]
        for i, (state, rule) in enumerate(zip(["firing", "closed", "resolved"], rules, strict=True))
    ]
    table = console.table(
        "alerts", COLUMNS, rows, drop_first=("source", "group", "runbook", "value"), width=80
    )
    buffer = io.StringIO()
    Console(file=buffer, width=80, color_system=None).print(table)
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text, text
    assert _column(text, 0) == ["1", "2", "3"]
    assert _column(text, 1) == ["firing", "closed", "resolved"]
    assert _column(text, 3) == rules, text
    assert _column(text, 4) == ["iris-classifier"] * 3

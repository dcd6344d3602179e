"""What the runbook commands print: an investigation (the alert, drift, checks, assessment, action), the
runbooks, and a run's steps and acceptance."""

from __future__ import annotations

from rich.table import Table

from mloncall.core import console
from mloncall.runbooks.investigate import Investigation
from mloncall.runbooks.spec import Runbook

DRIFT_COLUMNS = [
    "version",
    "feature",
    "method",
    "score",
    "threshold",
    "PSI",
    "KS",
    "W (norm.)",
    "drifted",
    "rows",
]


def print_investigation(found: Investigation) -> None:
    """The runbook's five steps in order, then where the HTML report is."""
    _print_alert(found)
    _print_inputs(found)
    _print_outputs(found)
    checks = [found.accuracy, *found.quality, *found.service]
    console.out.print(
        console.table(
            "3. performance, data quality, service",
            ["check", "result", "evidence"],
            [[c.name, console.outcome_text(c.outcome), c.reason] for c in checks],
        )
    )
    colour = "green" if found.assessment == "likely false alarm" else "yellow"
    console.out.print(f"4. assessment: [bold {colour}]{found.assessment}[/]")
    r = found.recommendation
    console.out.print(f"5. recommended action: [bold]{r.action}[/]: {r.why}\n   → {r.command}")
    console.out.print(f"report: {found.report}")


def _print_alert(found: Investigation) -> None:
    a = found.alert
    if a:
        console.out.print(
            f"[bold]alert {a['id']}[/] {a['rule']} on {found.model}: {a['state']}, {a['severity']}, "
            f"runbook {a['runbook']}\n  {a['summary'] or a['reason']}"
        )
    console.out.print(f"window {found.since:%Y-%m-%d %H:%M:%S} → {found.until:%H:%M:%S} UTC")


def _print_inputs(found: Investigation) -> None:
    rows = [
        [
            f"v{r['version']}",
            r["feature"],
            r["method"],
            _f(r["score"]),
            _f(r["threshold"]),
            _f(r["psi"]),
            _f(r["ks"]),
            _f(r["wasserstein_norm"]),
            "[red]yes[/]" if r["drifted"] else "no",
            f"{r['n_cur']}",
        ]
        for r in found.drift.rows_table()
    ]
    console.out.print(console.table("1. inputs: drift per feature vs the training data", DRIFT_COLUMNS, rows))
    console.out.print(f"   {console.outcome_text(found.drift.outcome)}: {found.drift.reason}")


def _print_outputs(found: Investigation) -> None:
    for v in found.drift.versions:
        if v.prediction is not None:
            console.out.print(f"2. outputs v{v.version}: {v.prediction.reason}")
    if found.canary and found.canary.get("disagreement"):
        console.out.print(
            f"   last canary #{found.canary['rollout']}: {found.canary['disagreement']['reason']}"
        )


def _f(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else ("-" if v is None else str(v))


# --- runbook runs ------------------------------------------------------------------------------------------

STATE_STYLE = {
    "successful": "green",
    "failed": "red",
    "inconclusive": "yellow",
    "waiting": "magenta",
    "running": "cyan",
    "skipped": "dim",
    "pending": "dim",
    "stopped": "red",
    "finished": "green",
}


def styled(state: str | None) -> str:
    return f"[{STATE_STYLE.get(state or '', 'white')}]{state or '-'}[/]"


def steps_table(record: dict[str, object]) -> Table:
    """The steps of a run: number, name, kind, state, what it found."""
    steps = record["steps"]
    assert isinstance(steps, list)
    rows = [
        [s["position"], s["name"], s["kind"], styled(s["state"]), (s["error"] or s["reason"] or "")[:160]]
        for s in steps
    ]
    title = f"run #{record['id']} {record['runbook']} on {record['target']}: {record['state']}"
    if record.get("outcome"):
        title += f" ({record['outcome']})"
    return console.table(title, ["#", "name", "kind", "state", "result"], rows)


def print_run(record: dict[str, object]) -> None:
    console.out.print(steps_table(record))
    acceptance = record.get("acceptance") or {}
    assert isinstance(acceptance, dict)
    if acceptance:
        rows = [[c["name"], styled(c["outcome"]), c["reason"][:200]] for c in acceptance["checks"]]
        console.out.print(console.table("acceptance", ["criterion", "result", "evidence"], rows))
    console.out.print(f"{record['state']}: {record['reason']}")


def print_runs(records: list[dict[str, object]]) -> None:
    rows = [
        [
            r["id"],
            r["runbook"],
            r["target"],
            styled(str(r["state"])),
            r["outcome"] or "-",
            r["started_by"],
            str(r["created_at"])[:19],
        ]
        for r in records
    ]
    console.out.print(
        console.table(
            "runbook runs",
            ["id", "runbook", "target", "state", "outcome", "by", "started"],
            rows,
            drop_first=("by", "target"),
        )
    )


def print_catalog(books: list[Runbook]) -> None:
    rows = [
        [
            b.name,
            b.title,
            len(b.steps),
            " ".join(
                [p.name.upper() for p in b.params if p.positional]
                + [f"-p {p.name}=…" for p in b.params if p.required and not p.positional]
                + (["--alert ID"] if b.needs_alert else [])
            ),
        ]
        for b in books
    ]
    console.out.print(console.table("runbooks", ["name", "title", "steps", "arguments"], rows))


def print_runbook(b: Runbook) -> None:
    console.out.print(
        f"[bold]{b.name}[/]: {b.title}\n[bold]Scenario[/] {b.scenario}\n[bold]Objective[/] {b.objective}"
    )
    console.out.print(
        console.table(
            "parameters",
            ["name", "type", "default", "meaning"],
            [
                [
                    p.name + (" (required)" if p.required else ""),
                    p.type,
                    "-" if p.default is None else p.default,
                    p.help,
                ]
                for p in b.params
            ],
        )
    )
    console.out.print(
        console.table(
            "steps",
            ["#", "name", "kind", "title"],
            [[i, s.name, s.kind, s.title] for i, s in enumerate(b.steps, 1)],
        )
    )
    console.out.print("[bold]Acceptance[/]\n" + "\n".join(f"  - {c.name}" for c in b.acceptance))
    console.out.print("[bold]Contacts[/]\n" + "\n".join(f"  - {c}" for c in b.contacts))

"""What `mloncall investigate` prints: the alert, the drift table, the checks, the assessment and the action."""

from __future__ import annotations

from mloncall.core import console
from mloncall.runbooks.investigate import Investigation

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

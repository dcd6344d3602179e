"""Tables the scaling commands print."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mloncall.core import console
from mloncall.core.durations import format_duration
from mloncall.scaling.models import ScalingEvent
from mloncall.scaling.slo import Objectives


def _rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def print_objectives(rows: Sequence[Objectives]) -> None:
    table = console.table(
        "SLOs",
        ["model", "p99 latency", "error rate", "availability", "window", "source"],
        [[o.model, f"{o.latency_p99_ms:g} ms", f"{o.error_rate:g}", f"{o.availability:g}", format_duration(o.window), o.source] for o in rows],
    )  # fmt: skip
    console.out.print(table)


def print_status(status: dict[str, Any]) -> None:
    slo = status["slo"]
    console.out.print(
        f"[bold]{slo['model']}[/]: p99 <= {slo['latency_p99_ms']:g} ms, error rate <= {slo['error_rate']:g}, "
        f"availability >= {slo['availability']:g} over {slo['window']} ({slo['source']})"
    )
    rows = []
    for o in status["objectives"]:
        left = o["budget_left"]
        bad = o["measured_bad_share"]
        rows.append(
            [
                o["objective"],
                f"{o['budget']:.3%}",
                "-" if bad is None else f"{bad:.3%}",
                "-" if left is None else f"[{'red' if left < 0 else 'green'}]{left:.1%}[/]",
                o["source"] or "-",
            ]
        )
    console.out.print(
        console.table("error budget", ["objective", "budget", "measured", "left", "source"], rows)
    )
    windows = [
        [o["objective"], w["name"], f"{w['factor']:g}x", f"{w['long']}/{w['short']}",
         f"{_rate(w['long_burn_rate'])}/{_rate(w['short_burn_rate'])}", "[red]yes[/]" if w["firing"] else "no"]
        for o in status["objectives"] for w in o["windows"]
    ]  # fmt: skip
    console.out.print(
        console.table(
            "burn rates", ["objective", "alert", "at", "windows", "burn long/short", "firing"], windows
        )
    )


def print_report(report: dict[str, Any]) -> None:
    pct = report["percentiles_ms"]
    rows = [
        [k, f"{v:.2f}", f"{report['sent_percentiles_ms'].get(k, float('nan')):.2f}"] for k, v in pct.items()
    ]
    console.out.print(
        f"[bold]{report['model']}[/] {report['shape']} load at {report['url']}: {report['sent']} sent "
        f"({report['offered_rate']:g}/s offered, peak {report['peak_rate']:g}/s), {report['answered']} answered "
        f"({report['answered_per_s']:g}/s), {report['errors']} errors, {report['timeouts']} timeouts, "
        f"{report['resent']} resent on a closed connection"
    )
    console.out.print(console.table("latency (ms)", ["percentile", "from due time", "from write"], rows))
    style = {True: "green", False: "red", None: "yellow"}[report["within_slo"]]
    console.out.print(f"[{style}]{report['verdict']}[/]")
    for e in report["first_errors"]:
        console.err.print(f"  [red]error:[/] {e}", highlight=False)


def print_events(model: str, events: Sequence[ScalingEvent]) -> None:
    if not events:
        console.out.print(f"no scaling decisions recorded for {model}")
        return
    rows = [
        [e.id, e.at.strftime("%H:%M:%S"), e.action, f"{e.from_workers}->{e.to_workers}", "yes" if e.applied else "no", e.actor, e.reason]
        for e in events
    ]  # fmt: skip
    console.out.print(
        console.table(
            f"scaling decisions of {model}", ["id", "at", "action", "workers", "applied", "actor", "reason"], rows,
            drop_first=["actor", "applied"],
        )
    )  # fmt: skip

"""The burn-rate alerts of the SLOs as Prometheus rules over mloncall's `/metrics`, for a team's own Prometheus
(`mloncall monitor prometheus-rules` adds them as the `mloncall-slo` group).

The latency SLI counts requests slower than the objective from the latency histogram, so the objective is
rounded up to the nearest bucket boundary (`le`), and the rule says which it used."""

from __future__ import annotations

from typing import Any

from mloncall.core.durations import format_duration
from mloncall.scaling.slo import LATENCY_BUDGET, Objectives, burn_windows
from mloncall.serving.metrics import LATENCY_BUCKETS

_LATENCY = "mloncall_request_latency_seconds"
_REQUESTS = "mloncall_requests_total"


def latency_bucket(objective_ms: float) -> float:
    """The smallest histogram boundary at or above the objective (the largest one past them all)."""
    seconds = objective_ms / 1000.0
    return next((b for b in LATENCY_BUCKETS if b >= seconds - 1e-12), LATENCY_BUCKETS[-1])


def _ratio(model: str, objective: str, le: float, window: str) -> str:
    sel = f'model="{model}"'
    if objective == "latency":
        return (
            f'(1 - sum(rate({_LATENCY}_bucket{{{sel},le="{le:g}"}}[{window}]))\n'
            f"  / sum(rate({_LATENCY}_count{{{sel}}}[{window}])))"
        )
    return (
        f'(sum(rate({_REQUESTS}{{{sel},status=~"5.."}}[{window}]))\n'
        f"  / sum(rate({_REQUESTS}{{{sel}}}[{window}])))"
    )


def slo_rules(objectives: list[Objectives]) -> list[dict[str, Any]]:
    """Two objectives by three workbook windows per SLO: each fires when both its windows burn too fast."""
    out = []
    for o in objectives:
        le = latency_bucket(o.latency_p99_ms)
        for objective, budget in (("latency", LATENCY_BUDGET), ("errors", o.errors_budget)):
            for w in burn_windows(o.window):
                long, short = format_duration(w.long), format_duration(w.short)
                limit = f"{w.factor * budget:g}"
                expr = (
                    f"{_ratio(o.model, objective, le, long)} > {limit}\n"
                    f"and\n{_ratio(o.model, objective, le, short)} > {limit}"
                )
                what = f"slower than {le * 1000:g} ms" if objective == "latency" else "failed with 5xx"
                out.append(
                    {
                        "alert": f"MloncallSlo{objective.title()}Burn{w.name.title().replace('-', '')}",
                        "expr": expr,
                        "labels": {
                            "severity": w.severity, "runbook": "scaling", "source": "mloncall-prometheus",
                            "model": o.model, "slo": objective, "burn": w.name,
                        },
                        "annotations": {
                            "summary": f"{o.model} burns its {objective} error budget {w.factor:g}x too fast",
                            "description": f"More than {limit} of the requests to {o.model} {what} over both "
                            f"{long} and {short} (budget {budget:g} over {format_duration(o.window)}).",
                        },
                    }
                )  # fmt: skip
    return out

"""Service health of what a model serves now, judged as the monitors judge it, on the production version."""

from __future__ import annotations

import datetime as dt

from mloncall.core.outcome import Check, Outcome, worst
from mloncall.monitoring import service as monitoring
from mloncall.runbooks.investigate import focus_on
from mloncall.serving import service as routing
from mloncall.stores.context import Context

KINDS = ("error_rate", "latency", "accuracy")


def service_health(ctx: Context, *, model: str, window_s: float, name: str = "health") -> Check:
    """Error rate, latency and (where labels arrived) accuracy of the production version over the window."""
    with ctx.db.session() as s:
        version = routing.effective(session=s, name=model).stable_version
    span = dt.timedelta(seconds=max(window_s, 1.0))
    checks = [
        focus_on(monitoring.run_monitor(ctx=ctx, kind=k, model=model, window=span, params={}), version)
        for k in KINDS
    ]
    judged = [c for c in checks if c.name != "accuracy" or c.outcome is not Outcome.INCONCLUSIVE]
    outcome = worst(c.outcome for c in judged)
    reason = f"v{version} over {window_s:g} s: " + "; ".join(
        f"{c.name} {c.outcome.label}: {c.reason}" for c in checks
    )
    return Check(name, outcome, reason, {"version": version, "checks": [c.to_dict() for c in checks]})

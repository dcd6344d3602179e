"""Stage 4 of the demo, runbook 3: drift injected into live traffic is alerted on, investigated, closed."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloncall.stores.context import Context

if TYPE_CHECKING:
    from mloncall.demo.cli import Pace, Story
    from mloncall.demo.traffic import Traffic

MODEL = "iris-classifier"
ACTOR = "demo"
SHIFT = {"petal_length": 2.0}
ROOT_CAUSE = "upstream source shifted petal_length by +2 cm (sensor calibration change)"
ACTION = "fix upstream data"

#: The demo's own rule: the production default looks at an hour and waits 15 minutes; the story has a minute.
RULES = """\
group_by: [model, runbook]
hold_time: 10m
rules:
  - name: feature-drift
    model: "{model}"
    monitor: drift
    params: {{drift_share: 0.25}}
    window: {window}
    for: {for_}
    severity: warning
    runbook: monitoring
    annotations:
      summary: "Inputs of {{{{ $labels.model }}}} drifted from the training data"
"""


def _alerts(ctx: Context) -> list[Any]:
    from mloncall.alerts import service as alerts

    with ctx.db.session() as s:
        found = alerts.list_alerts(session=s, model=MODEL, rule="feature-drift", state="open")
        return [(a.id, a.state) for a in found]


def drift_stage(
    *, ctx: Context, story: Story, pace: Pace, traffic: Traffic, refresh: Callable[[], None], workdir: Path
) -> dict[str, Any]:
    """Load the rule, shift a feature in the traffic, wait for pending then firing, investigate, close."""
    from mloncall.alerts import notify
    from mloncall.alerts import service as alerts
    from mloncall.runbooks import investigate as inv_service
    from mloncall.runbooks import report

    i = story.begin("4. runbook 3: inputs drift → alert pending → firing → investigate → close")
    refresh()
    with ctx.db.session() as s:
        text = RULES.format(model=MODEL, window=pace.alert_window, for_=pace.alert_for)
        alerts.load_rules(session=s, text=text, origin="demo rules", actor=ACTOR)
    alerts.evaluate_rules(ctx=ctx)
    calm = _alerts(ctx)
    traffic.shift = dict(SHIFT)
    story.note = f"injected drift: {', '.join(f'{k} {v:+g}' for k, v in SHIFT.items())} in every request"
    shifted_at = time.monotonic()
    pending_after = firing_after = None
    alert_id = None
    deadline = shifted_at + 120
    while time.monotonic() < deadline:
        alerts.evaluate_rules(ctx=ctx)
        for aid, state in _alerts(ctx):
            alert_id = aid
            if state in ("pending", "firing") and pending_after is None:
                pending_after = time.monotonic() - shifted_at
            if state == "firing":
                firing_after = time.monotonic() - shifted_at
        story.note = (
            f"injected drift {SHIFT}; alert "
            + (
                f"#{alert_id} pending after {pending_after:.0f} s"
                if pending_after is not None
                else "not yet pending"
            )
            + (f", firing after {firing_after:.0f} s" if firing_after is not None else "")
        )
        refresh()
        if firing_after is not None:
            break
        time.sleep(1.0)
    lines = [f"drift injected ({SHIFT}); alerts before: {calm or 'none'}"]
    if alert_id is None or firing_after is None:
        story.end(i, "failed", "the drift alert did not fire within 2 minutes")
        traffic.shift = {}
        return {"lines": [*lines, "the drift alert did not fire"], "paths": {}}
    found = inv_service.investigate(ctx=ctx, alert_id=alert_id)
    found.report = report.write(store=ctx.store, inv=found)
    with ctx.db.session() as s:
        alerts.close(
            session=s,
            alert_id=alert_id,
            root_cause=ROOT_CAUSE,
            action=ACTION,
            note=f"investigation: {found.assessment}; report {found.report}",
            actor=ACTOR,
        )
    notify.send_pending(ctx)
    traffic.shift = {}
    story.note = ""
    story.end(i, "done", f"alert #{alert_id}: {found.assessment} → {found.recommendation.action}; closed")
    lines += [
        f"alert #{alert_id} feature-drift pending after {pending_after:.0f} s, firing after {firing_after:.0f} s",
        f"investigate: {found.assessment}; recommended: {found.recommendation.action} ({found.recommendation.why})",
        *[f"  {f}" for f in found.findings],
        f"alert #{alert_id} closed: root cause '{ROOT_CAUSE}', action '{ACTION}'",
    ]
    return {"lines": lines, "paths": {"investigation": str(found.report)}}

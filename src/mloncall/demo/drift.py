"""Stage 4 of the demo, runbook 3: drift injected into live traffic is alerted on, then the `monitoring`
runbook reviews it, investigates, decides, has the upstream fix confirmed, and closes the alert."""

from __future__ import annotations

import time
from dataclasses import dataclass

from mloncall.alerts import service as alerts
from mloncall.demo.incident import take_command
from mloncall.demo.scene import ACTOR, MODEL, Scene
from mloncall.demo.scene import DRIFT_ROOT_CAUSE as ROOT_CAUSE
from mloncall.demo.stages import run_runbook
from mloncall.demo.traffic import Traffic
from mloncall.incidents import jobs
from mloncall.incidents import service as incidents
from mloncall.runbooks import report
from mloncall.runbooks.investigate import Investigation, investigate
from mloncall.stores.context import Context

SHIFT = {"petal_length": 2.0}
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
    severity: critical
    runbook: monitoring
    annotations:
      summary: "Inputs of {{{{ $labels.model }}}} drifted from the training data"
"""


#: How long the story waits for the drift alert to fire before it gives up.
FIRE_WITHIN = 120.0


@dataclass
class _Firing:
    """When the drift alert went pending and firing, seconds after the drift was injected."""

    alert_id: int | None = None
    pending_after: float | None = None
    firing_after: float | None = None

    def note(self) -> str:
        pending = (
            f"#{self.alert_id} pending after {self.pending_after:.0f} s"
            if self.pending_after is not None
            else "not yet pending"
        )
        firing = f", firing after {self.firing_after:.0f} s" if self.firing_after is not None else ""
        return f"injected drift {SHIFT}; alert {pending}{firing}"


def drift_stage(scene: Scene, traffic: Traffic) -> None:
    """Load the rule, shift a feature in the traffic, wait for pending then firing, investigate, close."""
    ctx, story = scene.ctx, scene.story
    i = scene.begin("4. runbook 3: inputs drift → alert pending → firing → investigate → close")
    with ctx.db.session() as s:
        text = RULES.format(model=MODEL, window=scene.pace.alert_window, for_=scene.pace.alert_for)
        alerts.load_rules(session=s, text=text, origin="demo rules", actor=ACTOR)
    alerts.evaluate_rules(ctx=ctx)
    calm = _alerts(ctx)
    traffic.shift = dict(SHIFT)
    story.note = f"injected drift: {', '.join(f'{k} {v:+g}' for k, v in SHIFT.items())} in every request"
    fired = _wait_for_firing(scene)
    scene.lines.append(f"drift injected ({SHIFT}); alerts before: {calm or 'none'}")
    if fired.alert_id is None or fired.firing_after is None or fired.pending_after is None:
        story.end(i, "failed", "the drift alert did not fire within 2 minutes")
        traffic.shift = {}
        scene.lines.append("the drift alert did not fire")
        return
    incident_id = open_from_alert(scene, fired.alert_id)
    if incident_id is not None:
        take_command(scene, incident_id)
    found = _investigate_and_close(scene, fired.alert_id)
    traffic.shift = {}
    story.note = ""
    story.end(
        i, "done", f"alert #{fired.alert_id}: {found.assessment} → {found.recommendation.action}; closed"
    )
    scene.lines += [
        f"alert #{fired.alert_id} feature-drift pending after {fired.pending_after:.0f} s, "
        f"firing after {fired.firing_after:.0f} s",
        f"investigate: {found.assessment}; recommended: {found.recommendation.action} ({found.recommendation.why})",
        *[f"  {f}" for f in found.findings],
        f"alert #{fired.alert_id} closed: root cause '{ROOT_CAUSE}', action '{ACTION}'",
    ]
    scene.paths["investigation"] = str(found.report)


def open_from_alert(scene: Scene, alert_id: int) -> int | None:
    """Route the fired alert into an incident (its severity opens one); the incident's id, kept in the scene."""
    jobs.route_alerts(scene.ctx)
    with scene.ctx.db.session() as s:
        incident = incidents.incident_of_alert(session=s, alert_id=alert_id)
        if incident is None:
            scene.lines.append(f"alert #{alert_id} opened no incident")
            return None
        found = incident.id, incident.severity, incident.title
    scene.holder["incident"] = found[0]
    scene.lines.append(f"alert #{alert_id} opened incident #{found[0]} ({found[1]}): {found[2]}")
    return found[0]


def _alerts(ctx: Context) -> list[tuple[int, str]]:
    with ctx.db.session() as s:
        found = alerts.list_alerts(session=s, model=MODEL, rule="feature-drift", state="open")
        return [(a.id, a.state) for a in found]


def _wait_for_firing(scene: Scene) -> _Firing:
    """Evaluate the rules every second until the drift alert fires, or FIRE_WITHIN has passed."""
    fired = _Firing()
    shifted_at = time.monotonic()
    deadline = shifted_at + FIRE_WITHIN
    while time.monotonic() < deadline:
        alerts.evaluate_rules(ctx=scene.ctx)
        for aid, state in _alerts(scene.ctx):
            fired.alert_id = aid
            if state in ("pending", "firing") and fired.pending_after is None:
                fired.pending_after = time.monotonic() - shifted_at
            if state == "firing":
                fired.firing_after = time.monotonic() - shifted_at
        scene.story.note = fired.note()
        scene.refresh()
        if fired.firing_after is not None:
            break
        time.sleep(1.0)
    return fired


def _investigate_and_close(scene: Scene, alert_id: int) -> Investigation:
    """The investigation's HTML report for the summary, then runbook 3 on the fired alert: it acts and
    closes the alert with the root cause."""
    ctx = scene.ctx
    found = investigate(ctx=ctx, alert_id=alert_id)
    found.report = report.write(store=ctx.store, inv=found)
    run_runbook(scene, "monitoring", {"root_cause": ROOT_CAUSE}, alert_id=alert_id)
    return found

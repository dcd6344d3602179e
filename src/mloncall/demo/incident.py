"""Stage 5 of the demo, runbook 8: the incident the drift alert opened (routed as the incidents scheduler
routes it, so the monitoring run of stage 4 wrote its steps to the incident's timeline) is walked from page to
post-mortem by the `incident-communication` runbook: acknowledged, roles given, one bridge, an update,
resolved with the subscribers told, its post-mortem drafted, completed by the commander, and closed."""

from __future__ import annotations

from mloncall.access import service as access
from mloncall.demo.drift import ROOT_CAUSE
from mloncall.demo.scene import ACTOR, Scene
from mloncall.demo.stages import run_runbook
from mloncall.incidents import service as incidents
from mloncall.runbooks import engine
from mloncall.runbooks.incident import postmortem_asked

#: Who holds the incident roles in the story (the demo itself is the commander and communications lead).
PEOPLE = {ACTOR: "operator", "ops-lead": "operator", "scribe": "operator"}


class Commander(engine.Unattended):
    """The demo as incident commander: confirms every step, and completes the post-mortem when asked to."""

    def __init__(self, scene: Scene) -> None:
        super().__init__(ACTOR, yes=True)
        self.scene = scene

    def ask(self, question: str) -> bool | None:
        incident_id = postmortem_asked(question)
        if incident_id is not None:
            ctx = self.scene.ctx
            with ctx.db.session() as s:
                incidents.complete(
                    session=s, store=ctx.store, incident_id=incident_id, actor=self.actor,
                    went_well="the drift alert fired within a minute and opened one incident with one bridge",
                    went_badly="the upstream change reached production without a data contract check",
                    root_cause=ROOT_CAUSE,
                )  # fmt: skip
        return True

    def note(self, prompt: str) -> str:
        return "post-mortem completed by the commander"


def _people(scene: Scene) -> None:
    with scene.ctx.db.session() as s:
        for name, role in PEOPLE.items():
            if access.get_principal(session=s, name=name) is None:
                access.create_principal(session=s, name=name, role=role)


def incident_stage(scene: Scene) -> None:
    """5. The incident of the drift alert, from page to post-mortem, through runbook 8."""
    i = scene.begin(
        "5. runbook 8: the drift incident → ack → roles → bridge → update → resolve → post-mortem"
    )
    incident_id = scene.holder.get("incident")
    if incident_id is None:
        scene.story.end(i, "failed", "no incident was opened from the drift alert")
        return
    _people(scene)
    params = {"incident": incident_id, "operations": "ops-lead", "scribe": "scribe",
              "status": "inputs drifted upstream; the monitoring runbook confirmed the fix",
              "summary": f"upstream fix confirmed: {ROOT_CAUSE}"}  # fmt: skip
    record = run_runbook(scene, "incident-communication", params, confirmer=Commander(scene))
    with scene.ctx.db.session() as s:
        incident = incidents.get_incident_or_raise(session=s, incident_id=incident_id)
        pm = incidents.get_postmortem(session=s, incident_id=incident_id)
        state, bridge, facts = incident.state, incident.bridge, dict(pm.facts) if pm else {}
        entries = [e for e in incidents.timeline(session=s, incident_id=incident_id) if e.kind == "runbook"]
    checks = (record["acceptance"] or {}).get("checks", [])
    ok = state == "closed" and record["outcome"] == "successful"
    scene.story.end(i, "done" if ok else "failed", f"incident #{incident_id} {state}; run #{record['id']} "
                    f"{record['outcome']}; time to acknowledge {facts.get('time_to_acknowledge')}")  # fmt: skip
    scene.holder["incident_run"] = record
    scene.lines += [
        f"incident #{incident_id}: bridge {bridge}; {state}; post-mortem {pm.status if pm else 'missing'} "
        f"(detect {facts.get('time_to_detect')}, acknowledge {facts.get('time_to_acknowledge')}, "
        f"resolve {facts.get('time_to_resolve')})",
        f"incident timeline: {len(entries)} runbook entries (monitoring and incident-communication runs)",
        "runbook-8 acceptance: " + ", ".join(f"{c['name']} {c['outcome']}" for c in checks),
    ]
    scene.paths["post-mortem"] = f"mloncall incident postmortem {incident_id}"

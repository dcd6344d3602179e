"""Runbook 8 in the demo, on the incident the drift alert opened (routed as the incidents scheduler routes it).

As soon as the incident opens (stage 4), its commander starts the `incident-communication` runbook: it
acknowledges, gives the roles, opens the one bridge and posts an update, then waits at the resolution while
the monitoring runbook works the alert. That run closes the alert and, every alert of the incident closed,
resolves the incident. Stage 5 resumes runbook 8: the resolution was told, the post-mortem is drafted,
completed by the commander, and the incident closes."""

from __future__ import annotations

from mloncall.access import service as access
from mloncall.demo.scene import ACTOR, Scene
from mloncall.demo.scene import DRIFT_ROOT_CAUSE as ROOT_CAUSE
from mloncall.demo.stages import resume_runbook, run_runbook
from mloncall.incidents import service as incidents
from mloncall.runbooks import engine
from mloncall.runbooks.incident import postmortem_asked

#: Who holds the incident roles in the story (the demo itself is the commander and communications lead).
PEOPLE = {ACTOR: "operator", "ops-lead": "operator", "scribe": "operator"}


class Commander(engine.Unattended):
    """The demo as incident commander: confirms every step, and completes the post-mortem when asked to."""

    def __init__(self, scene: Scene, *, wait_for_fix: bool = False) -> None:
        super().__init__(ACTOR, yes=True)
        self.scene = scene
        self.wait_for_fix = wait_for_fix

    def ask(self, question: str) -> bool | None:
        if self.wait_for_fix and question.startswith("Resolve incident"):
            return None  # the run waits at the resolution while the monitoring runbook works the alert
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


def _params(incident_id: int) -> dict[str, object]:
    return {"incident": incident_id, "operations": "ops-lead", "scribe": "scribe",
            "status": "inputs drifted upstream; the monitoring runbook is investigating",
            "summary": f"upstream fix confirmed: {ROOT_CAUSE}"}  # fmt: skip


def take_command(scene: Scene, incident_id: int) -> None:
    """The commander starts runbook 8 the moment the incident opens: ack, roles, bridge, an update; the run
    then waits at the resolution."""
    _people(scene)
    record = run_runbook(scene, "incident-communication", _params(incident_id),
                         confirmer=Commander(scene, wait_for_fix=True))  # fmt: skip
    scene.holder["incident_run_id"] = record["id"]


def incident_stage(scene: Scene) -> None:
    """5. The incident of the drift alert, from page to post-mortem, through runbook 8."""
    i = scene.begin("5. runbook 8: the drift incident, resolved by runbook 3 → told → post-mortem → closed")
    incident_id = scene.holder.get("incident")
    if incident_id is None:
        scene.story.end(i, "failed", "no incident was opened from the drift alert")
        return
    run_id = scene.holder.get("incident_run_id")
    if run_id is None:
        _people(scene)
        record = run_runbook(
            scene, "incident-communication", _params(incident_id), confirmer=Commander(scene)
        )
    else:
        record = resume_runbook(scene, run_id, confirmer=Commander(scene))
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

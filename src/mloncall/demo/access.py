"""Stage 6 of the demo, runbook 7: the nightly retraining service account may read the registry but not write
to it. The `access` runbook confirms the denial, checks its token, explains it, files a break-glass request
and waits; the security lead approves it over the API with their own token (the service could not); the run
resumes, gives the role for good on the one model, ends the grant, and proves it by asking the server with
the service's own narrowed token."""

from __future__ import annotations

import httpx

from mloncall.access import service as access
from mloncall.demo.scene import ACTOR, MODEL, Scene
from mloncall.demo.stages import run_runbook
from mloncall.runbooks import engine, export
from mloncall.runbooks import service as runs

SERVICE, APPROVER = "svc-retrain", "security-lead"


def _principals(scene: Scene) -> str:
    """The service (a viewer, with a token) and the security lead (an admin); the lead's token."""
    with scene.ctx.db.session() as s:
        if access.get_principal(session=s, name=SERVICE) is None:
            access.create_principal(session=s, name=SERVICE, kind="service", role="viewer", actor=ACTOR)
            access.create_token(session=s, principal_name=SERVICE, description="nightly retraining")
        if access.get_principal(session=s, name=APPROVER) is None:
            access.create_principal(session=s, name=APPROVER, role="admin", actor=ACTOR)
        _, secret = access.create_token(session=s, principal_name=APPROVER, description="demo approval")
    return secret


def access_stage(scene: Scene, server: str) -> None:
    """6. The retraining service cannot write to the registry, through runbook 7."""
    i = scene.begin("6. runbook 7: svc-retrain denied registry:write → explain → break-glass → role fixed")
    secret = _principals(scene)
    params = {"principal": SERVICE, "action": "registry:write", "model": MODEL, "server": server,
              "reason": "the nightly retraining could not register its model"}  # fmt: skip
    waiting = run_runbook(scene, "access", params)
    request_id = next(
        (s["evidence"].get("request_id") for s in waiting["steps"] if s["name"] == "workaround"), None
    )
    if waiting["state"] != "waiting" or request_id is None:
        scene.story.end(i, "failed", f"run #{waiting['id']} {waiting['state']}: {waiting['reason']}")
        return
    answer = httpx.post(
        f"{server}/api/v1/access/requests/{request_id}/approve",
        headers={"Authorization": f"Bearer {secret}"},
        json={"note": "one model, until the role change lands"},
        timeout=30,
    )
    if answer.status_code != 200:
        scene.story.end(i, "failed", f"approval refused: {answer.status_code} {answer.text[:200]}")
        return
    engine.resume(scene.ctx, waiting["id"], confirmer=engine.Unattended(ACTOR, yes=True))
    with scene.ctx.db.session() as s:
        record = export.run_dict(s, runs.get_run_or_raise(session=s, run_id=waiting["id"]), events=False)
    checks = (record["acceptance"] or {}).get("checks", [])
    ok = record["outcome"] == "successful"
    scene.story.end(i, "done" if ok else "failed", f"request #{request_id} approved by {APPROVER}; run "
                    f"#{record['id']} {record['outcome']}")  # fmt: skip
    scene.lines += [
        f"access: {SERVICE} denied registry:write on {MODEL}; break-glass request #{request_id} approved by "
        f"{APPROVER}, then ended once the engineer role on {MODEL} was given for good",
        "runbook-7 acceptance: " + ", ".join(f"{c['name']} {c['outcome']}" for c in checks),
    ]
    scene.paths["access history"] = f"mloncall access requests --requester {SERVICE}"

"""The timeline merges what was written as it happened with the deploys, canary steps and rollbacks of the
incident's model while it was open; manual notes come from the service, the HTTP API and the CLI alike."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from mloncall.api.app import create_app
from mloncall.core import clock
from mloncall.incidents import service
from mloncall.rollout import service as rollouts
from mloncall.stores.context import Context
from tests.alerts.conftest import make_tokens
from tests.helpers import new_samples_csv, train_iris

MODEL = "iris-classifier"


def _deploys(ctx: Context, incident_id: int) -> list[str]:
    with ctx.db.session() as session:
        return [
            i.text for i in service.timeline(session=session, incident_id=incident_id) if i.kind == "deploy"
        ]


def test_deploys_canary_steps_and_rollbacks_of_the_model_while_open_are_on_the_timeline(
    sictx: Context, clock_at: clock.FrozenClock, tmp_path: Path
) -> None:
    train_iris(sictx)
    train_iris(sictx, data=new_samples_csv(tmp_path, n=150, seed=11))
    with sictx.db.session() as session:  # two hours before the incident: not part of it
        rollouts.deploy(session=session, store=sictx.store, ref=f"{MODEL}:1",
                        spec=rollouts.DeploySpec(strategy="direct"), actor="t")  # fmt: skip
    clock_at.advance(hours=2)
    with sictx.db.session() as session:
        incident_id = service.open_incident(session=session, settings=service.incident_settings(sictx.settings),
                                            title="accuracy dropped", severity="SEV2", actor="t", model=MODEL).id  # fmt: skip
        service.open_incident(session=session, settings=service.incident_settings(sictx.settings),
                              title="another model", severity="SEV3", actor="t", model="wine")  # fmt: skip
    canary = rollouts.DeploySpec(strategy="canary", steps=[10, 50, 100], step_duration_s=3600.0)
    with sictx.db.session() as session:
        clock_at.advance(minutes=1)
        r = rollouts.deploy(session=session, store=sictx.store, ref=f"{MODEL}:2", spec=canary, actor="alice")
        clock_at.advance(minutes=1)
        rollouts.pause(session=session, rollout=r, actor="alice", reason="holding at 10%")
        clock_at.advance(minutes=1)
        rollouts.promote(session=session, rollout=r, actor="alice", reason="looks fine")
        clock_at.advance(minutes=1)
        back = rollouts.rollback(
            session=session, store=sictx.store, name=MODEL, actor="bob", reason="v2 is worse"
        )
        canary_id, rollback_id = r.id, back.id
    clock_at.advance(minutes=1)
    with sictx.db.session() as session:
        service.resolve(session=session, incident_id=incident_id, actor="bob", summary="rolled back to v1")
    clock_at.advance(minutes=1)
    with sictx.db.session() as session:  # after the resolution: not part of it either
        rollouts.deploy(session=session, store=sictx.store, ref=f"{MODEL}:2", spec=canary, actor="alice")
    started, paused, promoted, rolled_back = _deploys(sictx, incident_id)
    # a move's weight is the one it moves to: the canary starts at its first step
    assert (
        started
        == f"rollout #{canary_id} (canary to v2): pending -> running at 10%: pre-checks passed; canary at 10%"
    )
    assert paused == f"rollout #{canary_id} (canary to v2): running -> paused at 10%: holding at 10%"
    assert (
        promoted.startswith(f"rollout #{canary_id} (canary to v2): paused -> promoted")
        and "looks fine" in promoted
    )
    assert (
        rolled_back == f"rollout #{rollback_id} (rollback to v1): pending -> rolled_back at 0%: v2 is worse"
    )
    with sictx.db.session() as session:
        items = service.timeline(session=session, incident_id=incident_id)
        deploys = [i for i in items if i.kind == "deploy"]
        assert [i.actor for i in deploys] == ["alice", "alice", "alice", "bob"]
        assert deploys[1].detail == {"rollout": canary_id, "to_state": "paused", "weight": 0.1}
        assert [i.at for i in items] == sorted(i.at for i in items)  # merged in order with the stored entries
        assert items[-1].kind == "state" and items[-1].text.startswith("triggered -> resolved")
        other = service.list_incidents(session=session, model="wine")[0].id
    assert _deploys(sictx, other) == []  # another model's incident shows none of them


def test_manual_notes_over_http_join_the_timeline(sictx: Context) -> None:
    secrets = make_tokens(sictx)
    api = TestClient(create_app(sictx), raise_server_exceptions=False)
    auth = {"Authorization": f"Bearer {secrets['operator']}"}
    with sictx.db.session() as session:
        incident_id = service.open_incident(session=session, settings=service.incident_settings(sictx.settings),
                                            title="accuracy dropped", severity="SEV2", actor="t", model="iris").id  # fmt: skip
        service.add_note(
            session=session, incident_id=incident_id, text="  paged the data team  ", actor="alice"
        )
    made = api.post(
        f"/api/v1/incidents/{incident_id}/notes", json={"text": "v2 trained on a bad batch"}, headers=auth
    )
    assert made.status_code == 201
    assert {k: made.json()[k] for k in ("kind", "actor", "text")} == {
        "kind": "note", "actor": "operator-user", "text": "v2 trained on a bad batch",
    }  # fmt: skip
    timeline = api.get(f"/api/v1/incidents/{incident_id}/timeline", headers=auth).json()
    notes = [(t["actor"], t["text"]) for t in timeline if t["kind"] == "note"]
    assert notes == [("alice", "paged the data team"), ("operator-user", "v2 trained on a bad batch")]
    blank = api.post(f"/api/v1/incidents/{incident_id}/notes", json={"text": "   "}, headers=auth)
    assert blank.status_code == 400 and "needs text" in blank.json()["error"]
    missing = api.post("/api/v1/incidents/999/notes", json={"text": "hello"}, headers=auth)
    assert missing.status_code == 404 and "incident 999 does not exist" in missing.json()["error"]
    viewer = {"Authorization": f"Bearer {secrets['viewer']}"}
    assert (
        api.post(f"/api/v1/incidents/{incident_id}/notes", json={"text": "x"}, headers=viewer).status_code
        == 403
    )
    assert len(api.get(f"/api/v1/incidents/{incident_id}/timeline", headers=auth).json()) == len(timeline)

"""Through the real channels, the HTTP API and the CLI: an injected accuracy drop becomes one incident,
gets roles, one bridge, updates (a missed one reminds), escalation when nobody acknowledges, resolves, and
its post-mortem carries the detection and resolution times. E-mail goes to a real local SMTP server,
webhooks to a real local HTTP receiver."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mloncall.alerts import evaluation
from mloncall.alerts import service as alerts_service
from mloncall.alerts.catalog import default_catalog
from mloncall.alerts.channels import Channel
from mloncall.api.app import create_app
from mloncall.cli.main import run
from mloncall.core import clock
from mloncall.data import iris
from mloncall.incidents import jobs
from mloncall.stores.context import Context
from tests.alerts.conftest import Mailbox, Receiver, make_tokens
from tests.helpers import train_iris
from tests.incidents.conftest import fire
from tests.monitoring.conftest import ts_spread, write_feedback, write_predictions

RULES = """
rules:
  - name: accuracy-drop
    model: "*"
    monitor: accuracy
    params: {tolerance: 0.05, min_labels: 50}
    window: 2h
    for: 0s
    severity: critical
    runbook: monitoring
    annotations:
      summary: "Accuracy of {{ $labels.model }} dropped"
"""


def test_messages_reach_a_real_smtp_server_and_a_real_webhook(
    sictx: Context, smtp_server: Mailbox, receiver: Receiver
) -> None:
    with sictx.db.session() as session:
        from mloncall.incidents import service

        incident = service.open_incident(session=session, settings=service.incident_settings(sictx.settings),
                                         title="accuracy dropped", severity="SEV2", actor="t", model="iris")  # fmt: skip
        service.post_update(session=session, incident_id=incident.id, status="rolling back", impact="iris predictions",
                            actor="alice")  # fmt: skip
    channels = [
        Channel(name="hook", type="webhook", url=receiver.url),
        Channel(name="mail", type="email", host=smtp_server.host, port=smtp_server.port, sender="mlo@example.com",
                recipients=("oncall@example.com",)),
    ]  # fmt: skip
    done = jobs.run_once(sictx, channels=channels, sleep=lambda _s: None)
    assert [r.status for r in done.sent] == ["sent", "sent"]
    kinds = [b["kind"] for b in receiver.bodies]
    assert kinds == ["opened", "update"]
    assert receiver.bodies[1]["update"]["status"] == "rolling back"
    assert "What is affected: iris predictions." in receiver.bodies[1]["text"]
    mails = [m["message"] for m in smtp_server.messages]
    assert [m["X-Mloncall-Kind"] for m in mails] == ["opened", "update"]
    assert "Next update at: 2026-03-02 09:30 UTC." in mails[1].get_payload()
    assert jobs.run_once(sictx, channels=channels).sent == []  # each message goes out once


def _healthy_v1(ctx: Context, end: dt.datetime) -> None:
    """An hour of v1's predictions, every late label agreeing."""
    frame = iris.iris_like_samples(200, seed=24)
    ids = write_predictions(
        ctx, model="iris-classifier", version=1, frame=frame,
        ts=ts_spread(200, end=end, span=dt.timedelta(hours=1)), id_prefix="good",
    )  # fmt: skip
    truth = frame[iris.TARGET].astype(str).tolist()
    write_feedback(ctx, model="iris-classifier", ids=ids, labels=truth, ts=end.timestamp())


def _accuracy_drop(ctx: Context, end: dt.datetime) -> None:
    """v2's predictions of the last hour whose late labels say 20% were wrong."""
    frame = iris.iris_like_samples(200, seed=25)
    truth = frame[iris.TARGET].astype(str).to_numpy()
    ids = write_predictions(
        ctx,
        model="iris-classifier",
        version=2,
        frame=frame,
        ts=ts_spread(200, end=end, span=dt.timedelta(hours=1)),
        id_prefix="drop",
    )
    wrong = truth.copy()
    wrong[160:] = np.where(truth[160:] == "setosa", "virginica", "setosa")
    write_feedback(ctx, model="iris-classifier", ids=ids, labels=wrong.tolist(), ts=end.timestamp())


def _cli(*args: str) -> Any:
    assert run(list(args)) == 0, args


@pytest.mark.slow
def test_an_injected_accuracy_drop_from_page_to_postmortem(
    ctx: Context, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    train_iris(ctx)
    train_iris(ctx)
    from mloncall.access import service as access
    from mloncall.registry import service as registry

    with ctx.db.session() as session:
        registry.set_alias(session=session, name="iris-classifier", alias="production", version=1, actor="t")
        for name in ("alice", "bob", "carol"):
            access.create_principal(session=session, name=name, role="operator")
    monkeypatch.setenv("MLONCALL_HOME", str(ctx.settings.home))
    config = ctx.settings.home / "mloncall.toml"  # the commands deliver to the receiver as the job does
    config.write_text(f'[[alerts.channels]]\nname = "hook"\ntype = "webhook"\nurl = "{receiver.url}"\n')
    monkeypatch.setenv("MLONCALL_CONFIG", str(config))
    fc = clock.FrozenClock(clock.now().replace(microsecond=0) - dt.timedelta(hours=1))
    clock.set_clock(fc)
    _healthy_v1(ctx, fc.current - dt.timedelta(minutes=1))  # v1 served well before v2 was deployed
    _cli("deploy", "iris-classifier:2", "--strategy", "direct")
    fc.advance(hours=1)
    _accuracy_drop(ctx, fc.current - dt.timedelta(minutes=1))
    with ctx.db.session() as session:
        alerts_service.load_rules(session=session, text=RULES, origin="t", actor="t",
                                  catalog=default_catalog())  # fmt: skip
    result = evaluation.evaluate(ctx=ctx)
    assert [t.to_state for t in result.transitions] == ["firing"]
    secrets = make_tokens(ctx)
    channels = [Channel(name="hook", type="webhook", url=receiver.url)]
    _cli("oncall", "schedule", "create", "primary", "--members", "alice,bob", "--shift", "1d")
    _cli(
        "oncall", "policy", "create", "default", "--step", "schedule:primary=5m", "--step", "person:carol=10m"
    )
    assert jobs.run_once(ctx, channels=channels).routed == {"opened": 1}
    assert jobs.run_once(ctx, channels=channels).routed == {}  # one incident, however often it runs
    fc.advance(minutes=5)
    assert len(jobs.run_once(ctx, channels=channels).escalated) == 1  # nobody acknowledged: carol is paged
    pages = [b for b in receiver.bodies if b["kind"] == "page"]
    assert [p["page"]["principal"] for p in pages][-1] == "carol"
    api = TestClient(create_app(ctx), raise_server_exceptions=False)
    auth = {"Authorization": f"Bearer {secrets['operator']}"}
    (incident,) = api.get("/api/v1/incidents", headers=auth).json()
    iid = incident["id"]
    assert incident["severity"] == "SEV2" and incident["model"] == "iris-classifier"
    assert api.post(f"/api/v1/incidents/{iid}/ack", json={}, headers=auth).status_code == 200
    _cli("incident", "assign", str(iid), "commander", "alice")
    _cli("incident", "assign", str(iid), "communications", "bob")
    _cli("incident", "assign", str(iid), "operations", "carol")
    _cli("incident", "assign", str(iid), "scribe", "bob")
    first = api.post(f"/api/v1/incidents/{iid}/bridge", json={}, headers=auth).json()
    _cli("incident", "bridge", str(iid), "--json")
    second = api.post(f"/api/v1/incidents/{iid}/bridge", json={}, headers=auth).json()
    assert first["created"] and not second["created"] and first["bridge"] == second["bridge"]
    bad = api.post(f"/api/v1/incidents/{iid}/bridge", json={"bridge": "#another"}, headers=auth)
    assert bad.status_code == 409 and "one bridge per incident" in bad.json()["error"]
    _cli("incident", "update", str(iid), "--status", "rolling back to v1", "--impact", "iris predictions")
    fc.advance(minutes=31)
    assert jobs.run_once(ctx, channels=channels).update_reminders == [iid]  # the missed update
    reminders = [b for b in receiver.bodies if b["kind"] == "reminder" and "overdue" in b["title"]]
    assert reminders and reminders[0]["text"].startswith("alice: incident")
    fc.advance(minutes=9)
    # The monitoring runbook works it: the run rolls v2 back and closes the alert; the incident that held the
    # alert, every alert of it closed by a corrective action, is resolved by the run with its root cause.
    (alert_id,) = [
        link["alert_id"] for link in api.get(f"/api/v1/incidents/{iid}", headers=auth).json()["alerts"]
    ]
    capsys.readouterr()
    _cli("runbook", "run", "monitoring", "--alert", str(alert_id), "--yes", "-p",
         "root_cause=a bad training batch in v2", "--json")  # fmt: skip
    run_record = json.loads(_last_json(capsys))
    assert run_record["outcome"] == "successful" and run_record["incident_id"] == iid
    steps = {s["name"]: s for s in run_record["steps"]}
    assert steps["rollback"]["state"] == "successful" and steps["silence"]["state"] == "skipped"
    shown = api.get(f"/api/v1/incidents/{iid}", headers=auth).json()["incident"]
    assert shown["state"] == "resolved" and shown["root_cause"] == "a bad training batch in v2"
    assert f"runbook run #{run_record['id']}" in shown["resolution"] and "rollback" in shown["resolution"]
    told = [b for b in receiver.bodies if b["title"].startswith(f"[RESOLVED] incident #{iid}")]
    assert len(told) == 1 and "a bad training batch in v2" in told[0]["text"]
    again = api.post(f"/api/v1/incidents/{iid}/resolve", json={"summary": "twice"}, headers=auth)
    assert again.status_code == 409
    with ctx.db.session() as session:
        assert registry.resolve(session=session, ref="iris-classifier@production").version == 1
    capsys.readouterr()
    _cli("incident", "postmortem", str(iid), "--json")
    pm = json.loads(_last_json(capsys))
    alert_fired = dt.datetime.fromisoformat(pm["facts"]["alert_fired"])
    resolved = dt.datetime.fromisoformat(pm["facts"]["resolved"])
    assert resolved - alert_fired == dt.timedelta(minutes=45)
    assert pm["facts"]["time_to_detect"] == "0s"  # for: 0s
    assert isinstance(pm["facts"]["impact"]["predictions"], int)  # read from the prediction log
    assert "## Detection" in pm["markdown"]
    closed = api.post(f"/api/v1/incidents/{iid}/close", headers=auth)
    assert closed.status_code == 409 and "post-mortem is complete" in closed.json()["error"]
    _cli(
        "incident",
        "postmortem",
        str(iid),
        "--complete",
        "--went-well",
        "fast rollback",
        "--went-badly",
        "late labels",
    )
    _cli("incident", "close", str(iid))
    late = api.post(f"/api/v1/incidents/{iid}/updates", json={"status": "again"}, headers=auth)
    assert late.status_code == 409 and "is closed" in late.json()["error"]
    timeline = api.get(f"/api/v1/incidents/{iid}/timeline", headers=auth).json()
    kinds = {t["kind"] for t in timeline}
    assert {"alert", "page", "role", "bridge", "update", "reminder", "state", "postmortem"} <= kinds


def _last_json(capsys: pytest.CaptureFixture[str]) -> str:
    out = capsys.readouterr().out
    return out[out.index("{") :]


def test_bad_input_over_http(ctx: Context, clock_at: clock.FrozenClock) -> None:
    from tests.incidents.conftest import add_people

    add_people(ctx)
    secrets = make_tokens(ctx)
    api = TestClient(create_app(ctx), raise_server_exceptions=False)
    auth = {"Authorization": f"Bearer {secrets['operator']}"}
    viewer = {"Authorization": f"Bearer {secrets['viewer']}"}
    assert (
        api.post("/api/v1/incidents", json={"title": "x", "severity": "SEV2"}, headers=viewer).status_code
        == 403
    )
    bad = api.post(
        "/api/v1/incidents", json={"title": "x", "severity": "SEV2", "cadence": "15"}, headers=auth
    )
    assert bad.status_code == 400 and "add a unit" in bad.json()["error"]
    assert (
        api.post("/api/v1/incidents", json={"title": "x", "severity": "SEV9"}, headers=auth).status_code
        == 400
    )
    iid = api.post("/api/v1/incidents", json={"title": "x", "severity": "SEV2"}, headers=auth).json()[
        "incident"
    ]["id"]
    unknown = api.post(
        f"/api/v1/incidents/{iid}/assign", json={"role": "commander", "principal": "zed"}, headers=auth
    )
    assert unknown.status_code == 409 and "zed" in unknown.json()["error"]  # the incident is there
    paged = api.post(f"/api/v1/incidents/{iid}/escalate", json={"reason": "now"}, headers=auth)
    assert paged.status_code == 409 and "oncall policy create" in paged.json()["error"]
    api.post(
        f"/api/v1/incidents/{iid}/assign", json={"role": "commander", "principal": "alice"}, headers=auth
    )
    self_handoff = api.post(
        f"/api/v1/incidents/{iid}/handoff", json={"role": "commander", "to": "alice"}, headers=auth
    )
    assert self_handoff.status_code == 400 and "needs someone else" in self_handoff.json()["error"]
    itself = api.post(f"/api/v1/incidents/{iid}/merge", json={"into": iid}, headers=auth)
    assert itself.status_code == 400 and "into itself" in itself.json()["error"]
    policy = api.post("/api/v1/oncall/policies", json={"name": "p", "steps": ["person:alice=5"]},
                      headers={"Authorization": f"Bearer {secrets['admin']}"})  # fmt: skip
    assert policy.status_code == 400 and "add a unit" in policy.json()["error"]
    assert api.get("/api/v1/incidents/999", headers=auth).status_code == 404
    fire(ctx)  # an alert fires; the incident job routes it
    assert jobs.run_once(ctx, channels=[]).routed == {"opened": 1}


def test_action_items_over_http(sictx: Context) -> None:
    secrets = make_tokens(sictx)
    api = TestClient(create_app(sictx), raise_server_exceptions=False)
    auth = {"Authorization": f"Bearer {secrets['operator']}"}
    iid = api.post("/api/v1/incidents", json={"title": "accuracy dropped", "severity": "SEV2", "model": "iris"},
                   headers=auth).json()["incident"]["id"]  # fmt: skip
    api.post(
        f"/api/v1/incidents/{iid}/resolve",
        json={"summary": "rolled back", "cause": "a bad batch"},
        headers=auth,
    )
    made = api.post(f"/api/v1/incidents/{iid}/action-items",
                    json={"title": "alert on the feature", "owner": "bob", "due": "2026-03-20"}, headers=auth)  # fmt: skip
    assert made.status_code == 201
    item = made.json()
    assert (item["incident_id"], item["status"], item["done_at"]) == (iid, "open", None)
    unknown_owner = api.post(f"/api/v1/incidents/{iid}/action-items",
                             json={"title": "x", "owner": "nobody", "due": "2026-03-20"}, headers=auth)  # fmt: skip
    assert unknown_owner.status_code == 404 and "principal 'nobody'" in unknown_owner.json()["error"]
    done = api.post(f"/api/v1/action-items/{item['id']}/done", headers=auth)
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["done_at"]) == ("done", "2026-03-02T09:00:00Z")
    twice = api.post(f"/api/v1/action-items/{item['id']}/done", headers=auth)
    assert twice.status_code == 409 and f"action item {item['id']} was done at" in twice.json()["error"]
    missing = api.post("/api/v1/action-items/999/done", headers=auth)
    assert missing.status_code == 404 and "action item 999 does not exist" in missing.json()["error"]
    viewer = {"Authorization": f"Bearer {secrets['viewer']}"}
    assert api.post(f"/api/v1/action-items/{item['id']}/done", headers=viewer).status_code == 403
    pm = api.post(f"/api/v1/incidents/{iid}/postmortem", headers=auth).json()
    assert "- [x] alert on the feature (owner bob, due 2026-03-20)" in pm["markdown"]
    timeline = api.get(f"/api/v1/incidents/{iid}/timeline", headers=auth).json()
    assert [t["text"] for t in timeline if t["kind"] == "action-item"] == [
        "action item: alert on the feature (owner bob, due 2026-03-20)",
        "action item done: alert on the feature",
    ]

"""The runbook routes through HTTP: list, show, start (waiting without `yes`), resume, runs, status,
acceptance judged again, export; bad input and permissions."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from mloncall.api.app import create_app
from mloncall.stores.context import Context
from mloncall.training import service as training
from tests.alerts.conftest import make_tokens

BASE = "/api/v1/runbooks"


@pytest.fixture
def api(ctx: Context) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    secrets = make_tokens(ctx)
    auth = {role: {"Authorization": f"Bearer {secret}"} for role, secret in secrets.items()}
    # background tasks run before TestClient returns the answer: a started run has executed when it does
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield client, auth


def test_runbooks_are_listed_and_shown(api: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, auth = api
    listed = client.get(BASE, headers=auth["viewer"])
    assert listed.status_code == 200
    assert {b["name"] for b in listed.json()} >= {"deployment", "retraining", "monitoring", "data-quality"}
    shown = client.get(f"{BASE}/data-quality", headers=auth["viewer"]).json()
    assert [s["name"] for s in shown["steps"]][:4] == ["batch", "confirm", "validate", "impact"]
    assert shown["acceptance"][-1] == "model confirmed functional"
    missing = client.get(f"{BASE}/nope", headers=auth["viewer"])
    assert missing.status_code == 404 and "no runbook 'nope'" in missing.json()["error"]
    assert client.get(BASE).status_code == 401


def test_a_run_waits_without_yes_resumes_with_it_and_exports(
    ctx: Context, api: tuple[TestClient, dict[str, dict[str, str]]]
) -> None:
    client, auth = api
    training.train(ctx=ctx, name="iris-classifier", created_by="test")
    body = {"args": ["iris-classifier:1"], "params": {"strategy": "direct", "health_window": "1s"}}
    denied = client.post(f"{BASE}/deployment/runs", json=body, headers=auth["viewer"])
    assert denied.status_code == 403 and "runbooks:run" in denied.json()["error"]

    started = client.post(f"{BASE}/deployment/runs", json=body, headers=auth["operator"])
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    waiting = client.get(f"{BASE}/runs/{run_id}", headers=auth["viewer"]).json()
    assert waiting["state"] == "waiting", waiting["reason"]
    steps = {s["name"]: s["state"] for s in waiting["steps"]}
    assert steps["smoke"] == "successful" and steps["rollout"] == "waiting"
    assert client.post(f"{BASE}/runs/{run_id}/acceptance", headers=auth["operator"]).status_code == 409

    resumed = client.post(f"{BASE}/runs/{run_id}/resume", json={"yes": True}, headers=auth["operator"])
    assert resumed.status_code == 202, resumed.text
    done = client.get(f"{BASE}/runs/{run_id}", headers=auth["viewer"]).json()
    rollout = next(s for s in done["steps"] if s["name"] == "rollout")
    assert rollout["state"] == "successful" and rollout["confirmation"]["by"] == "operator-user"
    # No traffic reached v1, so its health is not proven: the plan is to roll back, and there is nothing
    # to roll back to. The run stops there, saying so, instead of pretending.
    assert done["state"] == "stopped" and "no 'previous' version" in done["reason"], done["reason"]
    assert client.post(f"{BASE}/runs/{run_id}/acceptance", headers=auth["operator"]).status_code == 409
    moves = [(e["to"], e["actor"]) for e in done["events"] if e["step"] == "rollout"]
    assert moves == [
        ("waiting", "operator-user"),
        ("running", "operator-user"),
        ("successful", "operator-user"),
    ]

    runs = client.get(f"{BASE}/runs", params={"runbook": "deployment"}, headers=auth["viewer"]).json()
    assert [r["id"] for r in runs] == [run_id]
    md = client.get(f"{BASE}/runs/{run_id}/export", headers=auth["viewer"])
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert "Verify model artifact integrity and version" in md.text
    as_json = client.get(f"{BASE}/runs/{run_id}/export", params={"format": "json"}, headers=auth["viewer"])
    assert json.loads(as_json.text)["id"] == run_id


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/nope/runs", {}, 404, "no runbook 'nope'"),
        ("/deployment/runs", {}, 400, "needs ref"),
        ("/deployment/runs", {"args": ["iris-classifier:1"], "params": {"steps": "50,10"}}, 400, "steps"),
        ("/deployment/runs", {"args": ["x:1"], "params": {"color": "red"}}, 400, "unknown parameter color"),
        ("/deployment/runs", {"args": ["x:1"], "surprise": 1}, 400, "surprise"),
        ("/monitoring/runs", {}, 400, "works on an alert"),
        ("/monitoring/runs", {"alert": 999}, 404, "999"),
        ("/runs/999/resume", {}, 404, "999"),
    ],
)
def test_bad_input_is_a_clear_client_error(
    api: tuple[TestClient, dict[str, dict[str, str]]],
    path: str,
    body: dict[str, object],
    status: int,
    message: str,
) -> None:
    client, auth = api
    res = client.post(BASE + path, json=body, headers=auth["operator"])
    assert res.status_code == status and message in res.json()["error"], res.text


def test_unknown_runs_and_formats(api: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, auth = api
    assert client.get(f"{BASE}/runs/12345", headers=auth["viewer"]).status_code == 404
    assert client.get(f"{BASE}/runs", params={"runbook": "nope"}, headers=auth["viewer"]).status_code == 404
    assert client.get(f"{BASE}/runs", params={"limit": 0}, headers=auth["viewer"]).status_code == 400
    bad = client.get(f"{BASE}/runs/1/export", params={"format": "pdf"}, headers=auth["viewer"])
    assert bad.status_code == 400 and "unknown format" in bad.json()["error"]

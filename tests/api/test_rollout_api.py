"""Deployments over HTTP: deploy, steer, roll back, history, status; conflicts and bad input are 4xx."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.helpers import train_iris


def _two_versions(api: Api) -> None:
    train_iris(api.ctx)
    train_iris(api.ctx, seed=7)


def test_deploy_steer_and_roll_back(api: Api) -> None:
    _two_versions(api)
    r = api.request(
        "POST",
        "/api/v1/models/iris-classifier/deployments",
        role="operator",
        json={"version": 1, "strategy": "direct"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "promoted"
    r = api.request(
        "POST",
        "/api/v1/models/iris-classifier/deployments",
        role="operator",
        json={
            "version": 2,
            "steps": [20, 100],
            "step_duration": "10m",
            "thresholds": {"max_disagreement": 0.3},
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert (
        body["state"] == "running" and body["weight"] == 0.2 and body["thresholds"]["max_disagreement"] == 0.3
    )

    status = api.request("GET", "/api/v1/models/iris-classifier/rollout", role="viewer").json()
    assert status["routing"]["canary_version"] == 2 and status["routing"]["canary_weight"] == 0.2
    assert status["analysis"]["outcome"] == "inconclusive"  # no traffic yet: never judged on nothing

    again = api.request(
        "POST", "/api/v1/models/iris-classifier/deployments", role="operator", json={"version": 2}
    )
    assert again.status_code == 409 and "is running" in again.json()["error"]
    assert (
        api.request(
            "POST", "/api/v1/models/iris-classifier/rollout/pause", role="viewer", json={}
        ).status_code
        == 403
    )
    for action, state in [("pause", "paused"), ("resume", "running"), ("promote", "promoted")]:
        r = api.request(
            "POST",
            f"/api/v1/models/iris-classifier/rollout/{action}",
            role="operator",
            json={"reason": action},
        )
        assert r.status_code == 200 and r.json()["state"] == state, r.text
    r = api.request("POST", "/api/v1/models/iris-classifier/rollout/abort", role="operator", json={})
    assert r.status_code == 409 and "no rollout in progress" in r.json()["error"]

    r = api.request(
        "POST", "/api/v1/models/iris-classifier/rollback", role="operator", json={"reason": "drill"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["from_version"], r.json()["to_version"], r.json()["state"]) == (2, 1, "rolled_back")
    history = api.request("GET", "/api/v1/models/iris-classifier/rollouts", role="viewer").json()
    assert [h["strategy"] for h in history] == ["direct", "canary", "rollback"]
    assert [e["to_state"] for e in history[1]["events"]] == ["running", "paused", "running", "promoted"]
    audited = {(a["action"], a["outcome"]) for a in api.audit()}
    assert ("POST /api/v1/models/{name}/rollback", "success") in audited
    assert any(a == "POST /api/v1/models/{name}/deployments" and o != "success" for a, o in audited)


def test_deploy_bad_input_is_4xx(api: Api) -> None:
    _two_versions(api)
    cases = [
        ({"version": 9}, 404, "no version 9"),
        ({"version": 1, "strategy": "blue"}, 400, "strategy"),
        ({"version": 1, "steps": [50, 20]}, 400, "100"),
        ({"version": 1, "step_duration": "soon"}, 400, "bad step duration"),
        ({"version": 1, "thresholds": {"max_fun": 1}}, 400, "unknown threshold"),
        ({"version": 2}, 400, "no production version"),  # a canary needs something to compare with
        ({}, 400, "version"),
    ]
    for body, status, message in cases:
        r = api.request("POST", "/api/v1/models/iris-classifier/deployments", role="operator", json=body)
        assert r.status_code == status and message in r.json()["error"], (body, r.status_code, r.text)
    assert api.request("POST", "/api/v1/models/nope/rollback", role="operator", json={}).status_code in (
        404,
        409,
    )
    r = api.request("POST", "/api/v1/models/iris-classifier/rollback", role="operator", json={})
    assert r.status_code == 409 and "previous" in r.json()["error"]
    r = api.request("POST", "/api/v1/models/iris-classifier/rollout/acceptance", role="viewer")
    assert r.status_code == 409 and "no promoted rollout" in r.json()["error"]


def test_deploy_of_an_altered_version_is_refused_and_kept_in_history(api: Api) -> None:
    _two_versions(api)
    api.request(
        "POST",
        "/api/v1/models/iris-classifier/deployments",
        role="operator",
        json={"version": 1, "strategy": "direct"},
    )
    with api.ctx.db.session() as s:
        from mloncall.registry import service as registry

        onnx = next(
            f
            for f in registry.get_version_or_raise(session=s, name="iris-classifier", version=2).files
            if f.name == "model.onnx"
        )
    data = bytearray(api.ctx.store.get_bytes(onnx.key))
    data[5] ^= 0x10
    api.ctx.store.put_bytes(onnx.key, bytes(data))
    r = api.request(
        "POST", "/api/v1/models/iris-classifier/deployments", role="operator", json={"version": 2}
    )
    assert r.status_code == 409 and r.json()["code"] == "integrity_error"  # as verify answers it
    assert "model.onnx altered" in r.json()["error"]
    history = api.request("GET", "/api/v1/models/iris-classifier/rollouts", role="viewer").json()
    assert history[-1]["state"] == "aborted" and "pre-check failed" in history[-1]["reason"]
    status = api.request("GET", "/api/v1/models/iris-classifier/rollout", role="viewer").json()
    assert status["routing"]["stable_version"] == 1 and status["routing"]["canary_version"] is None

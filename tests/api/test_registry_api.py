"""The registry over HTTP: reads, alias moves, deletes and verify, with permissions, audit and JSON errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mloncall.registry import service as registry
from tests.api.conftest import MAX_BODY_BYTES, Api

ALIAS = "/api/v1/models/iris/aliases/production"


def test_read_routes_show_models_versions_aliases_and_history(iris: Api) -> None:
    models = iris.request("GET", "/api/v1/models", role="viewer").json()
    assert models == [
        {
            "name": "iris",
            "description": "",
            "created_at": models[0]["created_at"],
            "created_by": "test",
            "version_count": 2,
            "latest_version": 2,
            "aliases": {"production": 1},
        }
    ]

    model = iris.request("GET", "/api/v1/models/iris", role="viewer").json()
    assert [(v["version"], v["aliases"]) for v in model["versions"]] == [(1, ["production"]), (2, [])]
    assert model["versions"][0]["accuracy"] > 0.9

    v2 = iris.request("GET", "/api/v1/models/iris/versions/2", role="viewer").json()
    assert v2["ref"] == "iris:2" and v2["params"] == {"C": 0.5} and v2["aliases"] == []
    assert {f["name"] for f in v2["files"]} == {"model.onnx", "model.skops", "manifest.json"}
    assert all(len(f["sha256"]) == 64 for f in v2["files"])
    assert v2["artifact_uri"].startswith(iris.ctx.store.root) and "models/iris/" in v2["artifact_uri"]

    live = iris.request("GET", ALIAS, role="viewer").json()
    assert (live["version"], live["aliases"]) == (1, ["production"])

    history = iris.request("GET", "/api/v1/models/iris/alias-history", role="viewer").json()
    assert [(h["alias"], h["from_version"], h["to_version"], h["reason"]) for h in history] == [
        ("production", None, 1, "first")
    ]
    assert iris.audit() == [], "reads are not audited"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/v1/models/nope", "model 'nope' does not exist"),
        ("/api/v1/models/iris/versions/9", "model 'iris' has no version 9"),
        ("/api/v1/models/iris/aliases/canary", "model 'iris' has no alias 'canary'"),
        ("/api/v1/models/nope/alias-history", "model 'nope' does not exist"),
        ("/api/v1/modelz", "no such route: GET /api/v1/modelz"),
    ],
)
def test_unknown_things_are_404_json(iris: Api, path: str, message: str) -> None:
    response = iris.request("GET", path, role="viewer")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert message in response.json()["error"]


def test_operator_moves_an_alias_and_the_move_is_audited(iris: Api) -> None:
    response = iris.request(
        "PUT", ALIAS, role="operator", json={"version": 2, "reason": "v2 passed the gate"}
    )
    assert response.status_code == 200, response.text
    moved = response.json()
    assert (moved["from_version"], moved["to_version"], moved["actor"]) == (1, 2, "operator-user")
    assert iris.request("GET", ALIAS, role="viewer").json()["version"] == 2

    history = iris.request("GET", "/api/v1/models/iris/alias-history?alias=production", role="viewer").json()
    assert [(h["from_version"], h["to_version"], h["actor"]) for h in history][-1] == (1, 2, "operator-user")

    [entry] = iris.audit()
    assert entry == {
        "actor": "operator-user",
        "action": "PUT /api/v1/models/{name}/aliases/{alias}",
        "target": ALIAS,
        "outcome": "success",
        "detail": {"version": 2, "reason": "v2 passed the gate", "from_version": 1},
    }


def test_viewer_cannot_move_an_alias_and_the_denied_attempt_is_audited(iris: Api) -> None:
    response = iris.request("PUT", ALIAS, role="viewer", json={"version": 2, "reason": "sneaky"})
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "permission_denied"
    assert "viewer-user may not deploy:execute on model iris" in body["error"]
    assert body["details"]["fix"] == "mloncall access grant viewer-user oncall --scope iris"
    assert iris.request("GET", ALIAS, role="viewer").json()["version"] == 1, "nothing moved"

    [entry] = iris.audit()
    assert (entry["actor"], entry["outcome"], entry["target"]) == ("viewer-user", "denied", ALIAS)
    assert entry["action"] == "PUT /api/v1/models/{name}/aliases/{alias}"
    assert entry["detail"]["status"] == 403 and "deploy:execute" in entry["detail"]["error"]


def test_remove_alias_then_it_no_longer_resolves(iris: Api) -> None:
    response = iris.request("DELETE", ALIAS + "?reason=rollback%20drill", role="operator")
    assert response.status_code == 200, response.text
    assert (response.json()["from_version"], response.json()["to_version"]) == (1, None)
    assert iris.request("GET", ALIAS, role="viewer").status_code == 404
    again = iris.request("DELETE", ALIAS, role="operator")
    assert again.status_code == 404 and again.json()["code"] == "not_found"
    assert [(e["outcome"], e["detail"].get("reason")) for e in iris.audit()] == [
        ("error:not_found", ""),
        ("success", "rollback drill"),
    ]


def test_deleting_versions_needs_registry_write_and_no_alias(iris: Api) -> None:
    viewer = iris.request("DELETE", "/api/v1/models/iris/versions/2", role="viewer")
    assert viewer.status_code == 403 and "may not registry:write on model iris" in viewer.json()["error"]

    aliased = iris.request("DELETE", "/api/v1/models/iris/versions/1")
    assert aliased.status_code == 409
    assert aliased.json()["code"] == "conflict" and "production" in aliased.json()["error"]

    with iris.ctx.db.session() as session:
        prefix = registry.get_version_or_raise(session=session, name="iris", version=2).artifact_prefix
    deleted = iris.request("DELETE", "/api/v1/models/iris/versions/2")
    assert deleted.status_code == 200 and deleted.json() == {"name": "iris", "version": 2, "deleted": True}
    assert iris.request("GET", "/api/v1/models/iris/versions/2", role="viewer").status_code == 404
    assert iris.ctx.store.list(prefix) == [], "its files went with it"

    outcomes = [(e["actor"], e["outcome"], e["target"]) for e in reversed(iris.audit())]
    assert outcomes == [
        ("viewer-user", "denied", "/api/v1/models/iris/versions/2"),
        ("admin", "error:conflict", "/api/v1/models/iris/versions/1"),
        ("admin", "success", "/api/v1/models/iris/versions/2"),
    ]


def test_verify_passes_then_names_a_file_with_one_flipped_byte(iris: Api) -> None:
    url = "/api/v1/models/iris/versions/1/verify"
    ok = iris.request("POST", url, role="viewer")
    assert ok.status_code == 200, ok.text
    assert ok.json()["ok"] is True and ok.json()["outcome"] == "successful"
    assert {f["status"] for f in ok.json()["files"]} == {"ok"}

    with iris.ctx.db.session() as session:
        mv = registry.get_version_or_raise(session=session, name="iris", version=1)
        key = next(f.key for f in mv.files if f.name == "model.onnx")
    path = Path(iris.ctx.store.base) / key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    bad = iris.request("POST", url, role="viewer")
    assert bad.status_code == 409
    body = bad.json()
    assert body["code"] == "integrity_error" and "model.onnx altered" in body["error"]
    statuses = {f["name"]: f["status"] for f in body["details"]["files"]}
    assert statuses == {"manifest.json": "ok", "model.onnx": "altered", "model.skops": "ok"}
    assert [e["outcome"] for e in iris.audit()] == ["error:integrity_error", "success"]


BAD_REQUESTS: list[tuple[str, str, dict[str, Any], str]] = [
    ("PUT", ALIAS, {"json": {"version": "two"}}, "body.version"),
    ("PUT", ALIAS, {"json": {"version": 1.5}}, "body.version"),
    ("PUT", ALIAS, {"json": {"version": 0}}, "body.version"),
    ("PUT", ALIAS, {"json": {"reason": "no version"}}, "body.version: Field required"),
    ("PUT", ALIAS, {"json": {"version": 2, "extra": 1}}, "body.extra"),
    ("PUT", ALIAS, {"json": [2]}, "body"),
    ("PUT", ALIAS, {"json": {"version": 2, "reason": "x" * 3000}}, "body.reason"),
    (
        "PUT",
        ALIAS,
        {"content": b'{"version": 2,', "headers": {"Content-Type": "application/json"}},
        "not valid JSON",
    ),
    ("PUT", ALIAS, {"content": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}, "body"),
    (
        "PUT",
        ALIAS,
        {"content": b'{"version": 2}', "headers": {"Content-Type": "text/plain"}},
        "application/json",
    ),
    ("PUT", ALIAS, {}, "body"),
    ("PUT", "/api/v1/models/iris/aliases/Bad%20Alias", {"json": {"version": 2}}, "invalid alias"),
    ("PUT", "/api/v1/models/iris/aliases/latest", {"json": {"version": 2}}, "'latest' is not an alias"),
    ("GET", "/api/v1/models/iris/versions/abc", {}, "path.version"),
    ("POST", "/api/v1/models/iris/versions/1.5/verify", {}, "path.version"),
    ("DELETE", "/api/v1/models/iris/versions/x", {}, "path.version"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "message"), BAD_REQUESTS)
def test_client_mistakes_are_400_json_never_500(
    iris: Api, method: str, path: str, kwargs: dict[str, Any], message: str
) -> None:
    response = iris.request(method, path, **kwargs)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "invalid_input" and message in body["error"], body
    if method != "GET":
        [entry] = iris.audit()
        assert (entry["actor"], entry["outcome"]) == ("admin", "error:invalid_input")


def test_method_not_allowed_is_405_json(iris: Api) -> None:
    response = iris.request("PATCH", ALIAS, json={"version": 2})
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed" and "allow" in response.headers
    assert iris.audit()[0]["outcome"] == "error:method_not_allowed"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_413_json_and_audited(iris: Api, chunked: bool) -> None:
    payload = b'{"version": 2, "reason": "' + b"x" * MAX_BODY_BYTES + b'"}'
    content: Any = iter([payload[i : i + 8192] for i in range(0, len(payload), 8192)]) if chunked else payload
    response = iris.request("PUT", ALIAS, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {
        "error": f"request body is larger than the limit of {MAX_BODY_BYTES} bytes",
        "code": "payload_too_large",
        "request_id": response.headers["X-Request-ID"],
    }
    assert iris.request("GET", ALIAS, role="viewer").json()["version"] == 1
    [entry] = iris.audit()
    assert (entry["actor"], entry["action"], entry["outcome"]) == (
        "admin",
        "PUT /api/v1/models/{name}/aliases/{alias}",
        "error:payload_too_large",
    )


HOSTILE: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/v1/models/ir%00is", {}),
    ("GET", "/api/v1/models/iris/versions/99999999999", {}),
    ("GET", "/api/v1/models/iris/versions/-1", {}),
    ("GET", "/api/v1/models/iris/alias-history?alias=%00", {}),
    ("GET", "/api/v1/audit?actor=a%00b", {}),
    ("DELETE", "/api/v1/tokens/99999999999", {}),
    ("PUT", ALIAS, {"json": {"version": 99999999999}}),
    ("PUT", ALIAS, {"json": {"version": 2, "reason": "a\x00b"}}),
    ("PUT", "/api/v1/models/ir%00is/aliases/production", {"json": {"version": 2}}),
    ("POST", "/api/v1/tokens", {"json": {"principal": "x", "description": "\x00"}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), HOSTILE)
def test_hostile_values_are_400_on_every_backend(
    iris: Api, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    """NUL bytes and integers beyond the database's range are the caller's mistake, on every backend."""
    response = iris.request(method, path, **kwargs)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_input"
    if method != "GET":
        [entry] = iris.audit()
        assert entry["outcome"] == "error:invalid_input", "recorded, even with a NUL in the path"

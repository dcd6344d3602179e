"""Auth, tokens, audit and error mapping over HTTP."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mloncall.access import service as access
from mloncall.api.app import create_app
from mloncall.core import clock
from mloncall.core.config import Settings
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.context import Context
from mloncall.stores.db import Database
from tests.api.conftest import Api


def test_health_and_openapi_need_no_token_and_everything_else_does(api: Api) -> None:
    assert api.request("GET", "/healthz", role=None).json() == {"status": "ok"}
    schema = api.request("GET", "/openapi.json", role=None).json()
    assert "/api/v1/models/{name}/aliases/{alias}" in schema["paths"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert api.request("GET", "/docs", role=None).status_code == 200

    for path in schema["paths"]:
        if not path.startswith("/api/") or path == "/api/v1/login":  # a password login needs no token
            continue
        concrete = path.replace("{name}", "iris").replace("{version}", "1").replace("{alias}", "production")
        concrete = concrete.replace("{token_id}", "1")
        for method in schema["paths"][path]:
            response = api.request(method.upper(), concrete, role=None)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["code"] == "unauthenticated"


def test_unknown_revoked_expired_and_malformed_tokens_are_refused_with_distinct_messages(
    api: Api, frozen_clock: clock.FrozenClock
) -> None:
    with api.ctx.db.session() as session:
        revoked, revoked_secret = access.create_token(session=session, principal_name="viewer-user")
        access.revoke_token(session=session, token_id=revoked.id)
        _, expiring_secret = access.create_token(
            session=session, principal_name="viewer-user", expires_in=dt.timedelta(hours=1)
        )
    assert api.request(
        "GET", "/api/v1/whoami", headers={"Authorization": f"Bearer {expiring_secret}"}
    ).is_success
    frozen_clock.advance(hours=2)

    cases = {
        None: "missing bearer token",
        "Basic dXNlcjpwYXNz": "malformed Authorization header",
        "Bearer mlo_not-a-token": "malformed token",
        "Bearer mlo_" + "u" * 43: "unknown token",
        f"Bearer {revoked_secret}": "was revoked at 2026-01-01T00:00:00+00:00",
        f"Bearer {expiring_secret}": "expired at 2026-01-01T01:00:00+00:00",
    }
    for header, message in cases.items():
        headers = {"Authorization": header} if header else {}
        response = api.client.get("/api/v1/whoami", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert message in response.json()["error"], (header, response.json())


def test_whoami_names_the_principal_and_role(api: Api) -> None:
    for role in ("admin", "operator", "viewer"):
        me = api.request("GET", "/api/v1/whoami", role=role).json()
        assert me["roles"] == [{"operator": "oncall"}.get(role, role)]
        assert me["name"] == ("admin" if role == "admin" else f"{role}-user")


def test_admin_issues_a_token_creating_the_principal_and_the_token_works(api: Api) -> None:
    response = api.request(
        "POST", "/api/v1/tokens", json={"principal": "alice", "role": "operator", "expires_in": "7d"}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["principal_created"] is True and created["secret"].startswith("mlo_")
    assert created["token"]["prefix"] == created["secret"][:12]
    assert created["token"]["status"] == "active" and created["token"]["expires_at"] is not None

    alice = {"Authorization": f"Bearer {created['secret']}"}
    me = api.client.get("/api/v1/whoami", headers=alice).json()
    assert (me["name"], me["kind"], me["roles"], me["teams"]) == ("alice", "user", ["oncall"], [])
    assert me["token"]["prefix"] == created["token"]["prefix"]

    second = api.request("POST", "/api/v1/tokens", json={"principal": "alice", "description": "ci"})
    assert second.status_code == 201 and second.json()["principal_created"] is False
    clash = api.request("POST", "/api/v1/tokens", json={"principal": "alice", "role": "admin"})
    assert clash.status_code == 409 and "already exists without the 'admin' role" in clash.json()["error"]

    listed = api.request("GET", "/api/v1/tokens?principal=alice").json()
    assert [t["description"] for t in listed] == ["ci", ""]
    assert created["secret"] not in api.request("GET", "/api/v1/tokens").text

    entries = api.audit(action="/api/v1/tokens")
    assert [(e["actor"], e["outcome"]) for e in entries] == [
        ("admin", "error:conflict"),
        ("admin", "success"),
        ("admin", "success"),
    ]
    assert created["secret"] not in str(entries), "the secret never reaches the audit log"
    assert entries[-1]["detail"]["principal_created"] is True


def test_non_admins_cannot_issue_tokens_or_read_the_audit_log(api: Api) -> None:
    for role in ("operator", "viewer"):
        response = api.request(
            "POST", "/api/v1/tokens", role=role, json={"principal": "mallory", "role": "admin"}
        )
        assert response.status_code == 403 and f"{role}-user may not access:admin" in response.json()["error"]
        explanation = response.json()["details"]
        assert (
            explanation["allowed"] is False
            and explanation["fix"] == f"mloncall access grant {role}-user admin"
        )
        assert api.request("GET", "/api/v1/audit", role=role).status_code == 403
        assert api.request("GET", "/api/v1/tokens", role=role).status_code == 403
    with api.ctx.db.session() as session:
        assert access.get_principal(session=session, name="mallory") is None
    refused = [(e["actor"], e["action"], e["outcome"]) for e in api.audit()]
    assert refused == [
        (f"{role}-user", f"{method} /api/v1/{what}", "denied")
        for role in ("viewer", "operator")
        for method, what in (("GET", "tokens"), ("GET", "audit"), ("POST", "tokens"))
    ], "every refusal is recorded, reads included"


def test_revoking_a_token_admin_or_its_owner(api: Api) -> None:
    with api.ctx.db.session() as session:
        spare, spare_secret = access.create_token(session=session, principal_name="viewer-user")
        other, _ = access.create_token(session=session, principal_name="operator-user")
    denied = api.request("DELETE", f"/api/v1/tokens/{other.id}", role="viewer")
    assert denied.status_code == 403

    own = api.client.delete(f"/api/v1/tokens/{spare.id}", headers={"Authorization": f"Bearer {spare_secret}"})
    assert own.status_code == 200 and own.json()["status"] == "revoked"
    after = api.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {spare_secret}"})
    assert after.status_code == 401 and "revoked" in after.json()["error"]

    assert api.request("DELETE", f"/api/v1/tokens/{other.id}").json()["status"] == "revoked"
    missing = api.request("DELETE", "/api/v1/tokens/9999")
    assert missing.status_code == 404 and missing.json() == {
        "error": "token 9999 does not exist",
        "code": "not_found",
        "request_id": missing.headers["X-Request-ID"],
    }
    assert [(e["actor"], e["outcome"]) for e in reversed(api.audit())] == [
        ("viewer-user", "denied"),
        ("viewer-user", "success"),
        ("viewer-user", "unauthenticated"),  # the revoked token's GET /whoami, named by its owner
        ("admin", "success"),
        ("admin", "error:not_found"),
    ]


def test_audit_route_filters_and_validates(api: Api) -> None:
    for _ in range(3):
        api.request("POST", "/api/v1/tokens", role="viewer", json={"principal": "x"})
    api.request("POST", "/api/v1/tokens", json={"principal": "bob"})
    entries = api.request("GET", "/api/v1/audit?actor=viewer-user&limit=2").json()
    assert len(entries) == 2 and {e["outcome"] for e in entries} == {"denied"}
    assert entries[0]["id"] > entries[1]["id"], "newest first"
    mine = api.request("GET", "/api/v1/audit?action=POST%20/api/v1/tokens&actor=admin").json()
    assert [e["detail"]["principal"] for e in mine] == ["bob"]
    for bad in ("limit=0", "limit=5000", "limit=ten"):
        response = api.request("GET", f"/api/v1/audit?{bad}")
        assert response.status_code == 400 and response.json()["code"] == "invalid_input"
        assert response.json()["details"][0]["loc"] == "query.limit"


def test_unexpected_errors_are_500_json_logged_and_audited(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    app = api.client.app
    assert hasattr(app, "post")

    @app.post("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with caplog.at_level(logging.ERROR, logger="mloncall.api"):
        response = api.request("POST", "/api/v1/boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal error",
        "code": "internal",
        "request_id": response.headers["X-Request-ID"],
    }
    assert "secret internals" not in response.text
    assert any("secret internals" in str(r.exc_info) for r in caplog.records)
    [entry] = api.audit()
    assert (entry["action"], entry["outcome"]) == ("POST /api/v1/boom", "error:internal")


def test_health_is_503_json_when_the_database_is_unreachable(tmp_path: Path) -> None:
    ctx = Context(
        settings=Settings.load(env={"MLONCALL_HOME": str(tmp_path)}),
        db=Database("postgresql+psycopg://nobody@127.0.0.1:1/none"),
        store=ArtifactStore(str(tmp_path / "artifacts")),
    )
    with TestClient(create_app(ctx)) as client:
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["code"] == "store_unavailable" and response.json()["status"] == "unavailable"
        refused = client.get("/api/v1/whoami", headers={"Authorization": "Bearer mlo_" + "x" * 43})
        assert refused.status_code == 503 and refused.json()["code"] == "store_unavailable"
    ctx.close()


def test_the_last_admin_token_cannot_be_revoked_through_the_api(api: Api) -> None:
    tokens = api.request("GET", "/api/v1/tokens").json()
    [admin] = [t for t in tokens if t["principal"] == "admin"]
    refused = api.request("DELETE", f"/api/v1/tokens/{admin['id']}")
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["code"] == "conflict" and "last active admin token" in body["error"]
    assert api.request("GET", "/api/v1/whoami").status_code == 200  # still works
    second = api.request("POST", "/api/v1/tokens", json={"principal": "root2", "role": "admin"})
    assert second.status_code == 201, second.text
    assert api.request("DELETE", f"/api/v1/tokens/{admin['id']}").status_code == 200
    again = second.json()["token"]["id"]
    assert api.request("DELETE", f"/api/v1/tokens/{again}", role="operator").status_code == 403


def test_the_openapi_document_lists_every_error_status_and_no_422_the_server_never_answers(api: Api) -> None:
    doc = api.request("GET", "/openapi.json", role=None).json()
    assert doc["components"]["schemas"]["ErrorBody"]["required"] == ["error", "code", "request_id"]
    for path, operations in doc["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            expected = {"400", "401", "403", "404", "503"}
            if method != "get":
                expected |= {"409", "413"}
            assert expected <= responses.keys(), (method, path, sorted(responses))
            if (method, path) != ("post", "/api/v1/models/{name}/deployments"):
                assert "422" not in responses, (method, path)
            for code in expected:
                schema = responses[code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    upload = doc["paths"]["/api/v1/datasets/{name}"]["post"]["responses"]
    assert "415" in upload


def test_password_login_has_no_default_and_one_answer_for_every_failure(api: Api) -> None:
    bad = {"error": "wrong user name or password", "code": "unauthenticated"}
    nobody = api.client.post("/api/v1/login", json={"name": "admin", "password": "password1234"})
    assert nobody.status_code == 401 and {k: nobody.json()[k] for k in bad} == bad, "no default password"
    with api.ctx.db.session() as session:
        access.set_password(session=session, name="viewer-user", password="correct horse battery")
        stored = access.get_principal_or_raise(session=session, name="viewer-user").password_hash
    assert stored is not None and stored.startswith("$argon2id$")
    ok = api.client.post("/api/v1/login", json={"name": "viewer-user", "password": "correct horse battery"})
    assert ok.status_code == 200 and ok.json() == {"name": "viewer-user", "kind": "user"}
    for name, password in (("viewer-user", "wrong horse battery"), ("ghost", "correct horse battery")):
        refused = api.client.post("/api/v1/login", json={"name": name, "password": password})
        assert refused.status_code == 401 and refused.json()["error"] == bad["error"]
    assert api.client.post("/api/v1/login", json={"name": "viewer-user"}).status_code == 400
    outcomes = [(e["actor"], e["outcome"]) for e in api.audit(action="/api/v1/login")]
    assert ("viewer-user", "success") in outcomes and len(outcomes) == 5


def test_a_break_glass_request_tied_to_an_incident_is_listed_on_its_record(api: Api) -> None:
    from mloncall.incidents import lifecycle
    from mloncall.incidents import service as incidents

    with api.ctx.db.session() as session:
        opened = lifecycle.open_incident(
            session=session, settings=incidents.incident_settings(api.ctx.settings),
            title="iris accuracy dropped", severity="SEV2", actor="admin", model="iris",
        )  # fmt: skip
        incident_id = opened.id
    body = {"role": "oncall", "scope": "iris", "duration": "1h", "reason": "roll back iris"}
    missing = api.request("POST", "/api/v1/access/requests", role="viewer", json={**body, "incident_id": 999})
    assert missing.status_code == 404
    filed = api.request(
        "POST", "/api/v1/access/requests", role="viewer", json={**body, "incident_id": incident_id}
    )
    assert filed.status_code == 201, filed.text
    own = api.request("POST", f"/api/v1/access/requests/{filed.json()['id']}/approve", role="viewer", json={})
    assert own.status_code == 403
    approved = api.request(
        "POST", f"/api/v1/access/requests/{filed.json()['id']}/approve", json={"note": "go"}
    )
    assert approved.status_code == 200 and approved.json()["decided_by"] == "admin", approved.text
    record = api.request("GET", f"/api/v1/incidents/{incident_id}").json()
    [grant] = record["grants"]
    assert (grant["requester"], grant["role"], grant["scope"], grant["state"]) == (
        "viewer-user", "oncall", "model:iris", "approved",
    )  # fmt: skip
    timeline = api.request("GET", f"/api/v1/incidents/{incident_id}/timeline").json()
    granted = [e["text"] for e in timeline if e["kind"] == "grant"]
    assert (
        len(granted) == 2
        and "approved until" in granted[1]
        and "viewer-user for oncall on model iris" in granted[0]
    )
    rollback = api.request("POST", "/api/v1/models/iris/rollback", role="viewer", json={"reason": "x"})
    assert rollback.status_code != 403, "the grant opens the model's deploy routes"
    other = api.request("POST", "/api/v1/models/wine/rollback", role="viewer", json={"reason": "x"})
    assert other.status_code == 403

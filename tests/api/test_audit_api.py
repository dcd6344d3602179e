"""The audit log over HTTP: request ids, every refusal recorded, the filters, and the chain's verify route."""

from __future__ import annotations

import sqlalchemy as sa

from mloncall.access import audit
from mloncall.access.models import AuditRecord
from mloncall.api.deps import DbSession
from tests.api.conftest import Api


def _rows(api: Api, **filters: str) -> list[AuditRecord]:
    with api.ctx.db.session() as session:
        return [r for r in audit.list_audit(session=session, **filters) if r.id > api.audit_floor]


def test_a_safe_client_request_id_is_echoed_and_recorded(api: Api) -> None:
    response = api.request(
        "POST", "/api/v1/tokens", json={"principal": "bob"}, headers={"X-Request-ID": "ci-42.a_b"}
    )
    assert response.status_code == 201 and response.headers["X-Request-ID"] == "ci-42.a_b"
    [entry] = _rows(api)
    assert (entry.request_id, entry.outcome, entry.reason) == ("ci-42.a_b", "success", "")


def test_an_unsafe_request_id_is_replaced_and_every_answer_has_one(api: Api) -> None:
    unsafe = "no spaces allowed"
    answered = api.request("GET", "/api/v1/whoami", headers={"X-Request-ID": unsafe})
    rid = answered.headers["X-Request-ID"]
    assert answered.status_code == 200 and rid != unsafe and audit.REQUEST_ID_PATTERN.fullmatch(rid)
    other = api.request("GET", "/api/v1/whoami")
    assert other.headers["X-Request-ID"] not in (rid, "")
    assert _rows(api) == [], "a successful read is not audited"


def test_an_error_body_carries_the_request_id_of_its_audit_record(api: Api) -> None:
    response = api.request("DELETE", "/api/v1/tokens/9999", headers={"X-Request-ID": "trace-1"})
    assert response.status_code == 404
    assert response.json()["request_id"] == "trace-1" == response.headers["X-Request-ID"]
    [entry] = _rows(api)
    assert (entry.outcome, entry.request_id, entry.reason) == (
        "error:not_found",
        "trace-1",
        "token 9999 does not exist",
    )


def test_a_refused_read_is_recorded_with_its_reason(api: Api) -> None:
    denied = api.request("GET", "/api/v1/tokens", role="viewer", headers={"X-Request-ID": "look-1"})
    assert denied.status_code == 403 and denied.json()["request_id"] == "look-1"
    anonymous = api.request("GET", "/api/v1/audit", role=None)
    assert anonymous.status_code == 401
    bad = api.request("GET", "/api/v1/whoami", role=None, headers={"Authorization": "Bearer mlo_nonsense"})
    assert bad.status_code == 401
    rows = list(reversed(_rows(api)))
    assert [(r.actor, r.action, r.outcome) for r in rows] == [
        ("viewer-user", "GET /api/v1/tokens", "denied"),
        ("anonymous", "GET /api/v1/audit", "unauthenticated"),
        ("anonymous", "GET /api/v1/whoami", "unauthenticated"),
    ]
    assert rows[0].request_id == "look-1" and rows[0].reason == denied.json()["error"]
    assert rows[1].reason == anonymous.json()["error"] and "missing bearer token" in rows[1].reason
    assert rows[2].target == "/api/v1/whoami" and rows[2].detail["status"] == 401


def test_the_audit_route_filters(api: Api) -> None:
    api.request("GET", "/api/v1/tokens", role="viewer")
    api.request("POST", "/api/v1/tokens", json={"principal": "carol"}, headers={"X-Request-ID": "mine"})
    api.request("DELETE", "/api/v1/tokens/777")

    def ask(query: str) -> list[tuple[str, str]]:
        response = api.request("GET", f"/api/v1/audit?{query}")
        assert response.status_code == 200, response.text
        return [(e["action"], e["outcome"]) for e in response.json() if e["id"] > api.audit_floor]

    assert ask("principal=viewer-user") == [("GET /api/v1/tokens", "denied")]
    assert ask("actor=viewer-user") == [("GET /api/v1/tokens", "denied")], "the older name still works"
    assert ask("outcome=error") == [("DELETE /api/v1/tokens/{token_id}", "error:not_found")]
    assert ask("resource=/tokens/777") == [("DELETE /api/v1/tokens/{token_id}", "error:not_found")]
    assert ask("request_id=mine") == [("POST /api/v1/tokens", "success")]
    assert ask("since=1h&action=POST") == [("POST /api/v1/tokens", "success")]
    assert ask("until=1h") == []
    [entry] = [e for e in api.request("GET", "/api/v1/audit?request_id=mine").json()]
    assert entry["resource"] == entry["target"] == "/api/v1/tokens"
    assert {"seq", "hash", "prev_hash", "reason", "request_id"} <= entry.keys()
    assert api.request("GET", "/api/v1/audit/verify").json()["intact"], (
        "failures, refusals, successes: one chain"
    )
    for bad, where in (("since=soon", "since"), ("request_id=a%20b", "query.request_id")):
        response = api.request("GET", f"/api/v1/audit?{bad}")
        assert response.status_code == 400 and response.json()["code"] == "invalid_input"
        assert where in response.text


def test_verify_route_names_the_altered_record(api: Api) -> None:
    api.request("POST", "/api/v1/tokens", json={"principal": "dave"})
    intact = api.request("GET", "/api/v1/audit/verify")
    assert intact.status_code == 200 and intact.json()["intact"] is True and intact.json()["broken"] is None
    assert api.request("GET", "/api/v1/audit/verify", role="operator").status_code == 403
    [entry] = [r for r in _rows(api) if r.outcome == "success"]
    with api.ctx.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET actor = 'someone-else' WHERE id = :id"), {"id": entry.id})
    broken = api.request("GET", "/api/v1/audit/verify")
    assert broken.status_code == 409 and broken.json()["code"] == "integrity_error"
    assert (
        broken.json()["error"]
        == f"record {entry.id} (seq {entry.seq}) was altered: its hash does not match its content"
    )
    assert broken.json()["details"]["broken"]["kind"] == "altered"
    documented = api.request("GET", "/openapi.json", role=None).json()["paths"]["/api/v1/audit/verify"]["get"]
    assert "409" in documented["responses"], "the document says verify may answer 409"


def test_records_a_handler_writes_itself_carry_the_request_id(api: Api) -> None:
    """A service that records (a runbook move, a grant's use) files it under the request without being told."""
    app = api.client.app
    assert hasattr(app, "post")

    @app.post("/api/v1/noted")
    def noted(session: DbSession) -> dict[str, str]:
        audit.record(session=session, actor="svc", action="nested", target="t", outcome="success")
        return {}

    assert api.request("POST", "/api/v1/noted", headers={"X-Request-ID": "outer-7"}).status_code == 200
    assert {(r.action, r.request_id) for r in _rows(api)} == {
        ("nested", "outer-7"),
        ("POST /api/v1/noted", "outer-7"),
    }

"""The dashboard's login and refusals through the HTTP app in-process (no browser): cookie flags, CSRF,
tampered sessions, token logins, and an action the principal may not take."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from mloncall.access import audit
from mloncall.access import service as access
from mloncall.api.app import create_app
from mloncall.stores.context import Context

PASSWORD = "a long enough password"


@pytest.fixture
def users(ctx: Context) -> Context:
    with ctx.db.session() as s:
        for role in ("viewer", "oncall"):
            access.create_principal(session=s, name=f"{role}-user", role=role)
            access.set_password(session=s, name=f"{role}-user", password=PASSWORD)
    return ctx


@pytest.fixture
def client(users: Context) -> Iterator[TestClient]:
    with TestClient(create_app(users), base_url="https://testserver") as c:
        yield c


def _login(client: TestClient, name: str) -> str:
    r = client.post(
        "/login", data={"name": name, "password": PASSWORD, "next": "/alerts"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/alerts", r.text
    return r.headers["set-cookie"]


def _csrf(client: TestClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/alerts").text)
    assert match is not None
    return match.group(1)


def test_the_session_cookie_is_httponly_strict_and_secure_behind_tls(client: TestClient) -> None:
    cookie = _login(client, "viewer-user").lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
    assert client.get("/alerts").status_code == 200


def test_a_wrong_password_or_a_tampered_cookie_gets_no_page(client: TestClient) -> None:
    r = client.post("/login", data={"name": "viewer-user", "password": "wrong"}, follow_redirects=False)
    assert r.status_code == 401 and "wrong user name or password" in r.text
    client.cookies.set("mloncall_session", "eyJuIjoiYWRtaW4ifQ.forged.signature")
    r = client.get("/alerts", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/alerts"


def test_a_token_logs_in_as_its_owner(users: Context, client: TestClient) -> None:
    with users.db.session() as s:
        _, secret = access.create_token(session=s, principal_name="oncall-user")
    r = client.post("/login", data={"token": secret}, follow_redirects=False)
    assert r.status_code == 303
    assert "oncall-user" in client.get("/").text


def test_an_action_without_its_csrf_token_or_permission_is_refused_and_audited(
    users: Context, client: TestClient
) -> None:
    _login(client, "viewer-user")
    assert client.post("/alerts/1/ack", data={"note": "x"}).status_code == 403
    r = client.post(
        "/models/iris-classifier/rollout/abort", data={"csrf_token": _csrf(client), "confirm": "on"}
    )
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert "may not deploy:execute" in r.text and 'href="/"' in r.text
    with users.db.session() as s:
        (record,) = audit.list_audit(session=s, limit=1, resource="/rollout/abort")
        assert record.outcome == "denied" and record.actor == "viewer-user"


def test_a_refused_page_reads_as_a_page_and_the_api_keeps_json(users: Context, client: TestClient) -> None:
    _login(client, "viewer-user")
    r = client.get("/models/no-such-model", headers={"referer": "https://testserver/alerts?state=open"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "no-such-model" in r.text and 'href="/alerts?state=open"' in r.text
    r = client.get("/models/iris-classifier/monitoring?hours=99")
    assert r.status_code == 400 and "<h1>Not accepted</h1>" in r.text
    client.cookies.clear()
    with users.db.session() as s:
        _, secret = access.create_token(session=s, principal_name="viewer-user")
    r = client.post(
        "/api/v1/models/iris-classifier/rollout/abort",
        json={"reason": "x"},
        headers={"authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 403 and r.headers["content-type"] == "application/json"
    assert "may not deploy:execute" in r.json()["error"]
    r = client.get("/api/v1/models/no-such-model", headers={"authorization": f"Bearer {secret}"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_logout_needs_the_csrf_token_and_ends_the_session(client: TestClient) -> None:
    _login(client, "viewer-user")
    copied = client.cookies["mloncall_session"]
    assert client.post("/logout", data={}).status_code == 403
    r = client.post("/logout", data={"csrf_token": _csrf(client)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/alerts", follow_redirects=False).status_code == 303
    # the cookie copied before the logout is refused too: the session ended on the server
    client.cookies.set("mloncall_session", copied)
    r = client.get("/alerts", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/alerts"


def test_one_logout_ends_only_its_own_session(client: TestClient) -> None:
    _login(client, "viewer-user")
    first = client.cookies["mloncall_session"]
    client.cookies.clear()
    _login(client, "viewer-user")
    client.post("/logout", data={"csrf_token": _csrf(client)}, follow_redirects=False)
    client.cookies.set("mloncall_session", first)
    assert client.get("/alerts", follow_redirects=False).status_code == 200

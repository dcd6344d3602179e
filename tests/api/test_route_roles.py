"""Every control-plane route in `/openapi.json` x every built-in role: a route either names the permission it
needs, or is one of the few any authenticated principal may call; and each role is refused exactly the routes
whose permission it lacks. A new route without a policy fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mloncall.access import roles
from mloncall.access import service as access
from mloncall.access import views as access_views
from mloncall.api.app import ROUTERS, create_app
from mloncall.stores.context import Context

#: Routes any authenticated principal may call: each decides inside, on the caller's own things.
OWN = {
    ("GET", "/api/v1/whoami"),
    ("GET", "/api/v1/access/explain"),
    ("GET", "/api/v1/access/roles"),
    ("POST", "/api/v1/access/requests"),
    ("GET", "/api/v1/access/requests"),
    ("DELETE", "/api/v1/tokens/{token_id}"),
}
#: Routes that need no token at all.
OPEN = {("POST", "/api/v1/login")}
BUILTIN = ("viewer", "engineer", "oncall", "admin")


def _permission(dependant: Any) -> str | None:
    for sub in dependant.dependencies:
        found = getattr(sub.call, "permission", None) or _permission(sub)
        if found:
            return str(found)
    return None


@pytest.fixture
def client(ctx: Context) -> Iterator[tuple[TestClient, dict[str, str]]]:
    secrets = {}
    with ctx.db.session() as session:
        for role in BUILTIN:
            access.create_principal(session=session, name=f"{role}-1", role=role)
            _, secrets[role] = access.create_token(session=session, principal_name=f"{role}-1")
    with TestClient(create_app(ctx), raise_server_exceptions=False) as test_client:
        yield test_client, secrets


def test_every_route_has_a_policy_and_each_role_is_refused_exactly_what_it_lacks(
    ctx: Context, client: tuple[TestClient, dict[str, str]]
) -> None:
    test_client, secrets = client
    documented = test_client.get("/openapi.json").json()["paths"]
    routers = (*ROUTERS, access_views.public_router)
    app_routes = {(method, r.path): r for router in routers for r in router.routes for method in r.methods}
    with ctx.db.session() as session:
        granted = {role: set(roles.role_permissions(session=session, name=role)) for role in BUILTIN}
    checked = 0
    for path, operations in documented.items():
        if not path.startswith("/api/v1/"):
            continue
        for method in operations:
            route = app_routes.get((method.upper(), path))
            assert route is not None, (
                method,
                path,
                [(type(r).__name__, getattr(r, "path", "")) for r in test_client.app.routes][:6],
            )
            permission = _permission(route.dependant)
            key = (method.upper(), path)
            if key in OPEN:
                continue
            assert permission is not None or key in OWN, f"{method.upper()} {path} names no permission"
            concrete = re.sub(
                r"\{[^}]+\}",
                lambda m: "999999" if m.group(0).endswith("id}") or m.group(0) == "{version}" else "nope",
                path,
            )
            for role in BUILTIN:
                response = test_client.request(
                    method.upper(), concrete, headers={"Authorization": f"Bearer {secrets[role]}"}, json={}
                )
                refused = response.status_code == 403 and response.json().get("code") == "permission_denied"
                if permission is None:
                    continue
                expected = permission not in granted[role]
                assert refused == expected, (
                    role,
                    method,
                    path,
                    permission,
                    response.status_code,
                    response.text[:200],
                )
                if refused:
                    assert response.json()["details"]["permission"] == permission
            checked += 1
    assert checked > 60

"""Ids and versions past what the database holds are the client's mistake (400/404 JSON), never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api

HUGE = str(2**63)
HUGER = "99999999999999999999999"

ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", f"/api/v1/models/iris/versions/{HUGE}", {}),
    ("POST", f"/api/v1/models/iris/versions/{HUGER}/verify", {}),
    ("DELETE", f"/api/v1/models/iris/versions/{HUGE}", {}),
    ("PUT", "/api/v1/models/iris/aliases/staging", {"json": {"version": 2**63}}),
    ("POST", "/api/v1/models/iris/deployments", {"json": {"version": 2**63}}),
    ("GET", f"/api/v1/datasets/iris/versions/{HUGE}", {}),
    ("POST", "/api/v1/models/iris/versions", {"json": {"dataset": f"iris:{HUGER}"}}),
    ("POST", "/api/v1/models/iris/versions", {"json": {"dataset": "iris", "seed": 2**63}}),
    ("GET", f"/api/v1/alerts/{HUGE}", {}),
    ("POST", f"/api/v1/alerts/{HUGE}/ack", {}),
    ("POST", f"/api/v1/alerts/silences/{HUGE}/expire", {}),
    ("DELETE", f"/api/v1/tokens/{HUGE}", {}),
    ("GET", f"/api/v1/audit?limit={HUGE}", {}),
    ("GET", f"/api/v1/alerts?limit={HUGER}", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), ROUTES)
def test_an_id_or_version_too_large_is_refused_with_the_error_body(
    iris: Api, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = iris.request(method, path, **kwargs)
    assert response.status_code in (400, 404), response.text
    body = response.json()
    assert body["code"] in ("invalid_input", "not_found") and body["error"], body


def test_a_rules_file_with_a_control_character_is_400_not_500(iris: Api) -> None:
    response = iris.request("PUT", "/api/v1/alerts/rules", json={"yaml": "\u0096rules: []"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_input"


def test_the_document_states_the_name_grammar_names_are_checked_with(iris: Api) -> None:
    from mloncall.core.names import NAME_PATTERN

    doc = iris.request("GET", "/openapi.json", role=None).json()
    names = [
        p["schema"]
        for item in doc["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
        for p in op.get("parameters", [])
        if p["in"] == "path" and p["name"] in ("name", "alias")
    ]
    assert names and all(s.get("pattern") == NAME_PATTERN for s in names), names[:3]
    refused = iris.request("GET", "/api/v1/models/Iris")
    assert refused.status_code in (400, 404) and "Iris" in refused.text

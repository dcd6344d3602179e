"""The SLO routes: set, read, refuse an impossible objective, status, delete; reading needs alerts:read."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, api

__all__ = ["api"]


def test_slos_through_the_api(api: Api) -> None:
    bad = api.request("PUT", "/api/v1/slos/iris", json={"latency_p99": "50ms", "availability": 1.0})
    assert bad.status_code in (400, 422) and "availability" in bad.text
    put = api.request("PUT", "/api/v1/slos/iris", json={"latency_p99": "50ms", "window": "6h"})
    assert put.status_code == 200, put.text
    assert put.json() == {
        "model": "iris", "latency_p99_ms": 50.0, "error_rate": 0.001, "availability": 0.999,
        "window": "6h", "source": "api",
    }  # fmt: skip
    assert [s["model"] for s in api.request("GET", "/api/v1/slos", role="viewer").json()] == ["iris"]
    status = api.request("GET", "/api/v1/slos/iris/status", role="viewer")
    assert status.status_code == 200 and {o["objective"] for o in status.json()["objectives"]} == {
        "latency",
        "errors",
    }
    assert (
        api.request("PUT", "/api/v1/slos/iris", role="viewer", json={"latency_p99": "9ms"}).status_code == 403
    )
    assert api.request("DELETE", "/api/v1/slos/iris").status_code == 204
    assert api.request("GET", "/api/v1/slos/iris").status_code == 404


def test_a_model_name_the_registry_cannot_hold_is_a_400_on_every_slo_route(api: Api) -> None:
    """Once a 503: a name the prediction log's keys refuse ('ÀU') reached the store from the status route."""
    for method, path in [
        ("PUT", "/api/v1/slos/%C3%80U"),
        ("GET", "/api/v1/slos/%C3%80U"),
        ("GET", "/api/v1/slos/%C3%80U/status"),
        ("DELETE", "/api/v1/slos/%C3%80U"),
    ]:
        answer = api.request(method, path, json={"latency_p99": "50ms"} if method == "PUT" else None)
        assert answer.status_code == 400, (method, path, answer.text)
        assert "model" in answer.json()["error"], answer.text


def test_slo_set_refuses_a_bad_model_name_on_the_command_line_too() -> None:
    from mloncall.core.errors import InvalidInput
    from mloncall.scaling.slo import check_objectives

    with pytest.raises(InvalidInput, match=r"model name.*ÀU"):
        check_objectives(model="ÀU", latency_p99="50ms", error_rate=0.01, availability=None, window="1d",
                         source="api")  # fmt: skip

"""The SLO routes: set, read, refuse an impossible objective, status, delete; reading needs alerts:read."""

from __future__ import annotations

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

"""The pipeline routes: a viewer reads runs and status but may not run; an engineer runs, fails, repairs and
re-runs from the failed stage over HTTP; a refused re-run is 409 naming what changed."""

from __future__ import annotations

from fastapi.testclient import TestClient

from mloncall.access import service as access
from mloncall.api.app import create_app
from mloncall.stores.context import Context
from tests.pipelines.conftest import PIPELINE, batch, drop


def test_run_status_and_rerun_over_http(pctx: Context) -> None:
    secrets = {}
    with pctx.db.session() as s:
        for role in ("viewer", "engineer"):
            access.create_principal(session=s, name=role, role=role)
            _, secrets[role] = access.create_token(session=s, principal_name=role)
    viewer = {"Authorization": f"Bearer {secrets['viewer']}"}
    engineer = {"Authorization": f"Bearer {secrets['engineer']}"}
    with TestClient(create_app(pctx)) as client:
        assert client.post(f"/api/v1/pipelines/{PIPELINE}/runs", json={}, headers=viewer).status_code == 403
        failed = client.post(f"/api/v1/pipelines/{PIPELINE}/runs", json={}, headers=engineer)
        assert failed.status_code == 201 and failed.json()["failure_class"] == "missing_source"
        listed = client.get("/api/v1/pipelines", headers=viewer).json()
        assert listed[0]["latest_state"] == "failed"
        drop(pctx, batch())
        again = client.post(
            f"/api/v1/pipelines/{PIPELINE}/runs", json={"from_failed": True}, headers=engineer
        )
        assert again.status_code == 201 and again.json()["state"] == "succeeded"
        assert again.json()["parent_id"] == failed.json()["id"]
        refused = client.post(
            f"/api/v1/pipelines/{PIPELINE}/runs", json={"from_failed": True}, headers=engineer
        )
        assert refused.status_code == 409 and "only a failed or interrupted run" in refused.json()["error"]
        status = client.get(f"/api/v1/pipelines/{PIPELINE}/status", headers=viewer).json()
        assert status["health"]["blocked"] is False and status["latest"]["id"] == again.json()["id"]
        run = client.get(f"/api/v1/pipelines/runs/{failed.json()['id']}", headers=viewer).json()
        assert [s["state"] for s in run["stages"]] == ["failed", "skipped", "skipped", "skipped"]
        assert client.get("/api/v1/pipelines/nope", headers=viewer).status_code == 404

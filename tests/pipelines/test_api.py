"""The pipeline routes: a viewer reads runs and status but may not run; an engineer runs, fails, repairs and
re-runs from the failed stage over HTTP; a refused re-run is 409 naming what changed. The status route names
the dataset's consumers: which model version trains on, and which the monitors compare against, which
version."""

from __future__ import annotations

from fastapi.testclient import TestClient

from mloncall.access import service as access
from mloncall.api.app import create_app
from mloncall.pipelines import service
from mloncall.stores.context import Context
from tests.pipelines.conftest import MODEL, PIPELINE, batch, drop, trained_on


def _headers(ctx: Context) -> tuple[dict[str, str], dict[str, str]]:
    """A viewer's and an engineer's bearer headers."""
    secrets = {}
    with ctx.db.session() as s:
        for role in ("viewer", "engineer"):
            access.create_principal(session=s, name=role, role=role)
            _, secrets[role] = access.create_token(session=s, principal_name=role)
    viewer, engineer = ({"Authorization": f"Bearer {secrets[r]}"} for r in ("viewer", "engineer"))
    return viewer, engineer


def test_run_status_and_rerun_over_http(pctx: Context) -> None:
    viewer, engineer = _headers(pctx)
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


def test_status_route_names_the_consumers_and_the_models_a_failed_run_blocks(pctx: Context) -> None:
    viewer, _engineer = _headers(pctx)
    drop(pctx, batch(30))
    assert service.run_read(pctx, service.run(pctx, PIPELINE, actor="cron")).state == "succeeded"
    version = trained_on(pctx, "iris:1", alias="production")
    with TestClient(create_app(pctx)) as client:
        status = client.get(f"/api/v1/pipelines/{PIPELINE}/status", headers=viewer)
        assert status.status_code == 200, status.text
        assert status.json()["consumers"] == [
            {"model": MODEL, "version": version, "trains_on": "iris:1", "aliases": ["production"],
             "monitored": True},
        ]  # fmt: skip
        assert status.json()["blocked_models"] == []
        drop(pctx, batch(30).rename(columns={"petal_width": "petal_wdth"}))
        service.run(pctx, PIPELINE, actor="cron")
        blocked = client.get(f"/api/v1/pipelines/{PIPELINE}/status", headers=viewer).json()
        assert blocked["blocked_models"] == [MODEL] and blocked["consumers"] == status.json()["consumers"]
        assert "schema_mismatch" in blocked["health"]["reasons"][0]
        assert client.get(f"/api/v1/pipelines/{PIPELINE}/status").status_code == 401

"""The inference plane's token gate, against a real server: open by default; with `require_token` on, the
inference routes need a token whose principal may `inference:call` (on the path's model), the health probes
and `/metrics` stay open, and the document says so."""

from __future__ import annotations

import httpx
import pytest

from mloncall.access import roles
from mloncall.access import service as access
from mloncall.registry.models import ModelVersion
from mloncall.serving.app import create_inference_app
from mloncall.serving.config import ServingConfig
from mloncall.stores.context import Context
from tests.serving.conftest import FEATURES, ROW, ThreadServer

BODY = {
    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [ROW[f] for f in FEATURES]}]
}


def test_the_inference_routes_are_open_by_default(sctx: Context, iris_v1: ModelVersion) -> None:
    with ThreadServer(create_inference_app(sctx, config=ServingConfig())) as srv:
        assert httpx.post(f"{srv.url}/v2/models/iris/infer", json=BODY).status_code == 200


def test_a_required_token_is_checked_against_the_policy(
    sctx: Context, iris_v1: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLONCALL_SERVING_REQUIRE_TOKEN", "true")
    monkeypatch.setenv("MLONCALL_SERVING_TOKEN_CACHE_SECONDS", "0")
    with sctx.db.session() as s:
        access.create_principal(session=s, name="app", kind="service", role="viewer")
        access.create_principal(session=s, name="blocked", kind="service", role="viewer")
        roles.deny(session=s, principal=access.get_principal_or_raise(session=s, name="blocked"),
                   permission="inference:call", scope="iris")  # fmt: skip
        token, app_secret = access.create_token(session=s, principal_name="app")
        token_id = token.id
        _, blocked_secret = access.create_token(session=s, principal_name="blocked")
    url = "/v2/models/iris/infer"
    with ThreadServer(create_inference_app(sctx, config=ServingConfig())) as srv:
        anonymous = httpx.post(srv.url + url, json=BODY)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
        assert "requires a token" in anonymous.json()["error"]
        assert httpx.post(srv.url + url, json=BODY, headers={"Authorization": "Basic x"}).status_code == 401
        ok = httpx.post(srv.url + url, json=BODY, headers={"Authorization": f"Bearer {app_secret}"})
        assert ok.status_code == 200, ok.text
        denied = httpx.post(srv.url + url, json=BODY, headers={"Authorization": f"Bearer {blocked_secret}"})
        assert denied.status_code == 403 and "inference:call" in denied.json()["error"]
        for open_path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
            assert httpx.get(srv.url + open_path).status_code == 200, open_path
        doc = httpx.get(
            srv.url + "/v2/openapi.json", headers={"Authorization": f"Bearer {app_secret}"}
        ).json()
        assert "401" in doc["paths"][url]["post"]["responses"] and doc["paths"][url]["post"]["security"]
        assert "security" not in doc["paths"]["/v2/health/live"]["get"]
        with sctx.db.session() as s:
            access.revoke_token(session=s, token_id=token_id)
        revoked = httpx.post(srv.url + url, json=BODY, headers={"Authorization": f"Bearer {app_secret}"})
        assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]


def test_a_bad_gate_setting_is_refused_with_its_name(sctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    from mloncall.core.errors import InvalidInput

    monkeypatch.setenv("MLONCALL_SERVING_REQUIRE_TOKEN", "maybe")
    with pytest.raises(InvalidInput, match="require_token='maybe' must be true or false"):
        create_inference_app(sctx, config=ServingConfig())

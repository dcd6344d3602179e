"""The inference plane's OpenAPI document: every route of the table, the served model's own rules, and a
document rebuilt only when the routing changes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from mloncall.registry.models import ModelVersion
from mloncall.serving import service as routing
from mloncall.serving.app import InferenceApp, create_inference_app
from mloncall.serving.openapi import OPERATIONS
from mloncall.stores.context import Context
from tests.serving.conftest import fast_config


@pytest.fixture
def app(sctx: Context, iris_v1: ModelVersion) -> InferenceApp:
    return create_inference_app(sctx, config=fast_config())


@pytest.fixture
def client(app: InferenceApp) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def test_every_route_is_documented_with_its_statuses(app: InferenceApp, client: TestClient) -> None:
    doc = client.get("/v2/openapi.json").json()
    validate(doc)
    for route in app.routes.routes:
        op = doc["paths"][route.pattern][route.method.lower()]
        errors = OPERATIONS[route.handler.__name__].errors
        assert {str(c) for c in errors} <= set(op["responses"]), route
        for code, answer in op["responses"].items():
            if code != "200":
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}
    infer = doc["paths"]["/v2/models/iris/infer"]["post"]
    assert set(infer["responses"]) == {"200", "400", "404", "408", "413", "415", "431", "503"}
    assert doc["paths"]["/v2/models/{model}/infer"]["post"]["parameters"][0]["schema"]["not"] == {
        "enum": ["iris"]
    }


def test_a_rejecting_policy_puts_the_training_range_in_the_document(
    app: InferenceApp, client: TestClient, sctx: Context
) -> None:
    document = app.handlers.document
    assert document is not None
    first = document.body(lambda doc: b"built")
    assert document.body(lambda doc: b"again") is first  # built once for one routing
    with sctx.db.session() as s:
        routing.set_stable(session=s, name="iris", version=1, actor="t")
        routing.set_options(session=s, name="iris", out_of_range_policy="reject", max_rows=7, actor="t")
    app.router.refresh()
    doc = client.get("/v2/openapi.json").json()
    instance = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    instances = instance["properties"]["instances"]
    sepal = instances["items"]["properties"]["sepal_length"]
    assert (sepal["minimum"], sepal["maximum"], instances["maxItems"]) == (4.3, 7.9, 7)
    body = {"instances": [{"sepal_length": 7.9, "sepal_width": 2.0, "petal_length": 1.0, "petal_width": 0.1}]}
    assert client.post("/predict", json=body).status_code == 200
    body["instances"][0]["sepal_length"] = 8.0
    assert client.post("/predict", json=body).status_code == 400

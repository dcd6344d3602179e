"""schemathesis against the inference plane of a live `mloncall server` serving a registered iris model:
no 5xx, every answer as its document says, and no schema-valid request refused.

The document (`/v2/openapi.json`) is the installation's: the served model's paths carry its features, row
limit and classes, so a schema-valid body is one the server scores. The one rule JSON Schema cannot state
(a tensor's `shape` agrees with its `data`) is made true of each generated body before it is sent, as the
document's `x-shape-matches-data` says. Bounded: a few examples per operation, no shrinking.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.api.live import live_server
from tests.conftest import make_context
from tests.serving.conftest import register_iris, set_production

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("live-server")]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ctx = make_context(tmp_path_factory.mktemp("inference-schemathesis") / "home")
    mv = register_iris(ctx)
    set_production(ctx, "iris", mv.version)
    with live_server(ctx) as base:
        assert httpx.get(f"{base}/v2/health/ready", timeout=10).status_code == 200
        yield base
    ctx.close()


def agree_shapes(body: Any) -> None:
    """Make each input tensor's `shape[0]` the rows its `data` holds (and per-feature inputs agree)."""
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list):
        return
    tensors = [t for t in inputs if isinstance(t, dict) and isinstance(t.get("data"), list)]
    tensors = [t for t in tensors if isinstance(t.get("shape"), list) and t["shape"]]
    if len(tensors) == 1 and len(tensors[0]["shape"]) == 2 and tensors[0]["shape"][1] > 1:
        t = tensors[0]
        data, width = t["data"], t["shape"][1]
        rows = len(data) if data and isinstance(data[0], list) else len(data) // width
        if not (data and isinstance(data[0], list)):
            t["data"] = data[: rows * width]
        t["shape"][0] = rows
        return
    rows = min((len(t["data"]) for t in tensors), default=0)
    for t in tensors:
        t["data"] = t["data"][:rows]
        t["shape"][0] = rows


@settings(
    max_examples=6,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)
@given(data=st.data())
def _fuzz(operation: Any, data: st.DataObject) -> None:
    case = data.draw(operation.as_strategy())
    agree_shapes(case.body)
    case.call_and_validate()


def test_inference_plane_answers_as_documented(url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{url}/v2/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/v2/models/iris/infer", "/v2/models/{model}/infer", "/predict"} <= paths, paths
    for operation in operations:
        _fuzz(operation)


def test_the_served_model_scores_what_its_document_shows(url: str) -> None:
    doc = httpx.get(f"{url}/v2/openapi.json").json()
    tensor = doc["paths"]["/v2/models/iris/infer"]["post"]["requestBody"]["content"]["application/json"]
    matrix = tensor["schema"]["properties"]["inputs"]["anyOf"][0]["prefixItems"][0]
    assert matrix["properties"]["shape"]["prefixItems"][1] == {"const": 4}
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}
    assert httpx.post(f"{url}/v2/models/iris/infer", json=body).status_code == 200
    feedback = doc["paths"]["/v2/models/iris/feedback"]["post"]["requestBody"]["content"]
    label = feedback["application/json"]["schema"]["properties"]["labels"]["items"]["properties"]["label"]
    assert sorted(label["enum"]) == ["setosa", "versicolor", "virginica"]

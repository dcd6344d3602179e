"""The second probe of the inference plane: cases the first probe did not send, each a defect found or a
boundary held (huge and overflowing values, bodies, content types, names, tampered artifacts)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

from mloncall.core.config import Settings
from mloncall.core.errors import InvalidInput
from mloncall.registry import service as registry
from mloncall.registry.models import ModelVersion
from mloncall.registry.service import NewVersion
from mloncall.serving.app import create_inference_app
from mloncall.serving.config import ServingConfig
from mloncall.stores.context import Context
from tests.conftest import make_context
from tests.serving.conftest import (
    FEATURES,
    ROW,
    fast_config,
    iris,
    register_iris,
    set_production,
    signature_of,
)

VALUES = [ROW[f] for f in FEATURES]
INFER = "/v2/models/iris/infer"
OCTETS = "application/octet-stream"


def oip(data: list[float], shape: list[int] | None = None) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": shape or [1, 4], "datatype": "FP32", "data": data}]}


def register_heavy(ctx: Context) -> ModelVersion:
    """A linear model with weights of 10^12: its 32-bit arithmetic overflows at values of 10^27."""
    X, y, classes = iris()
    est = LogisticRegression(max_iter=1000).fit(X, y)
    est.coef_ = est.coef_ * 1e12
    new = NewVersion(
        name="heavy", algorithm="logistic_regression", feature_names=list(FEATURES), class_labels=classes,
        signature=signature_of(X, classes), metrics={}, params={}, lineage={}, created_by="test",
    )  # fmt: skip
    return registry.register_version(db=ctx.db, store=ctx.store, estimator=est, X_val=X[::5], new=new)


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Context, list[ModelVersion]]]:
    """iris:1 in production and three more versions, one for each damage (the tests share one server)."""
    ctx = make_context(tmp_path_factory.mktemp("probe2") / "home")
    set_production(ctx, "iris", register_iris(ctx).version)
    spare = [register_iris(ctx, C=c) for c in (0.1, 0.2, 0.3)]
    set_production(ctx, "heavy", register_heavy(ctx).version)
    yield ctx, spare
    ctx.close()


@pytest.fixture(scope="module")
def client(installation: tuple[Context, list[ModelVersion]]) -> Iterator[TestClient]:
    app = create_inference_app(installation[0], config=fast_config(max_body_bytes=64 * 1024))
    with TestClient(app) as c:
        yield c


def refused(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"], body
    return str(body["error"])


@pytest.mark.parametrize("value", [3.4e38, -3.4e38, 1e31])
def test_a_value_the_models_arithmetic_overflows_on_is_refused_not_served_as_nan(
    client: TestClient, value: float
) -> None:
    # Was 200 with a label and probabilities [null, null, null] (NaN), logged as a prediction.
    assert "at most 1e+30" in refused(client.post(INFER, json=oip([value, 3.5, 1.4, 0.2])))
    body = {"instances": [{**ROW, "petal_width": value}]}
    assert "at most 1e+30" in refused(client.post("/predict", json=body))


def test_the_largest_value_allowed_is_scored_with_finite_probabilities(client: TestClient) -> None:
    response = client.post(INFER, json=oip([1e30, -1e30, 1e30, -1e30]))
    assert response.status_code == 200, response.text
    probabilities = response.json()["outputs"][1]["data"]
    assert all(isinstance(p, float) for p in probabilities)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 5000 + b"]" * 5000, "depth limit"),  # nesting past the parser's depth: refused, not a crash
        (b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[' + b"9" * 5000 + b",1,1,1]}]}",
         "infinity"),
        (b'{"inputs":[{"name":"input\xff","shape":[1,4]}]}', "UTF-8"),
    ],
)  # fmt: skip
def test_bodies_no_parser_should_take_are_400(client: TestClient, body: bytes, reason: str) -> None:
    assert reason in refused(client.post(INFER, content=body, headers={"content-type": "application/json"}))


@pytest.mark.parametrize("length", ["9" * 30, "-5", "\u0661\u0663", "0"])
def test_an_inference_header_length_that_is_no_length_is_400(client: TestClient, length: str) -> None:
    response = client.post(
        INFER,
        content=b'{"inputs":[]}',
        headers={"inference-header-content-length": length.encode()},
    )
    assert "Inference-Header-Content-Length" in refused(response)


def test_a_binary_size_of_another_type_or_sign_is_400(client: TestClient) -> None:
    for size in (-16, 16.0, True, "16"):
        header = orjson.dumps(
            {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                         "parameters": {"binary_data_size": size}}]}
        )  # fmt: skip
        response = client.post(
            INFER,
            content=header + np.zeros(4, dtype="<f4").tobytes(),
            headers={"inference-header-content-length": str(len(header)), "content-type": OCTETS},
        )
        assert "binary_data_size" in refused(response), size


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/iris/versions/" + "9" * 500,
        "/v2/models/iris/versions/-1/ready",
        "/v2/models/iris/versions/%EF%BC%91",  # a fullwidth digit one
        "/v2/models/iris/versions/0x1/infer",
    ],
)
def test_a_version_that_is_no_version_is_404_and_its_echo_is_bounded(client: TestClient, path: str) -> None:
    if path.endswith("/infer"):
        response = client.post(path, json=oip(VALUES))
    else:
        response = client.get(path)
    message = refused(response, 404)
    assert len(message) < 400, message


def test_an_unknown_model_name_is_echoed_escaped_and_clipped(client: TestClient) -> None:
    message = refused(client.get("/v2/models/%E2%80%AE" + "a" * 5000), 404)
    assert "\u202e" not in message and "\\u202e" in message and len(message) < 300, message[:300]
    message = refused(client.post("/predict", json={"model": "\u202e" + "b" * 5000, "instances": [ROW]}), 404)
    assert "\u202e" not in message and len(message) < 300


@pytest.mark.parametrize("damage", ["missing", "garbage", "signature"])
def test_a_damaged_version_tells_an_anonymous_client_what_not_where(
    client: TestClient, installation: tuple[Context, list[ModelVersion]], damage: str
) -> None:
    sctx = installation[0]
    mv = installation[1][["missing", "garbage", "signature"].index(damage)]
    key = next(f.key for f in mv.files if f.name == registry.ONNX_FILE)
    if damage == "missing":
        sctx.store.delete(key)
    elif damage == "garbage":
        sctx.store.put_bytes(key, b"not an onnx file")
    else:
        with sctx.db.session() as s:
            row = s.get(ModelVersion, mv.id)
            assert row is not None
            row.signature = {"features": [{"name": str(sctx.settings.home)}], "classes": "x"}
    for response in (
        client.get(f"/v2/models/iris/versions/{mv.version}/ready"),
        client.post(f"/v2/models/iris/versions/{mv.version}/infer", json=oip(VALUES)),
    ):
        message = refused(response, 503)
        assert str(sctx.settings.home) not in message and "/" not in message.split(":", 1)[1], message
        assert not re.search(r"[0-9a-f]{12}", message), message


def test_more_onnx_threads_than_a_machine_can_run_is_refused_before_a_model_loads(tmp_path: Path) -> None:
    # Was taken: with 5000 intra-op threads loading a model spun for minutes, the server never ready.
    (tmp_path / "empty.toml").write_text("")
    settings = Settings.load(env={"MLONCALL_HOME": str(tmp_path)}, config_file=tmp_path / "empty.toml")
    with pytest.raises(InvalidInput, match="onnx_threads=5000 is more than 64"):
        ServingConfig.from_settings(settings, env={"MLONCALL_SERVING_ONNX_THREADS": "5000"})
    assert (
        ServingConfig.from_settings(settings, env={"MLONCALL_SERVING_ONNX_THREADS": "64"}).onnx_threads == 64
    )


def test_an_answer_whose_probabilities_are_not_finite_is_refused_not_served(client: TestClient) -> None:
    # Values within the limit, but the model's weights take its arithmetic past the 32-bit range.
    message = refused(client.post("/v2/models/heavy/infer", json=oip([1e27, 1.0, 1.0, 1.0])))
    assert "row 0" in message and "not finite" in message
    assert client.post("/v2/models/heavy/infer", json=oip(VALUES)).status_code == 200

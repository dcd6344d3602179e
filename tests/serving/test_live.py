"""Against a real uvicorn server: a real OIP client, routing changes applied live, swaps under load."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from mloncall.registry.models import ModelVersion
from mloncall.serving import service as routing
from mloncall.serving.app import create_inference_app
from mloncall.serving.config import ServingConfig
from mloncall.stores.context import Context
from mloncall.stores.predlog import read_log
from tests.serving.conftest import FEATURES, ROW, ThreadServer

X = np.asarray([[ROW[f] for f in FEATURES], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
BODY = {
    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [ROW[f] for f in FEATURES]}]
}


def test_tritonclient_infers_in_json_and_binary(sctx: Context, iris_v1: ModelVersion) -> None:
    with ThreadServer(create_inference_app(sctx, config=ServingConfig())) as srv:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{srv.port}")
        try:
            assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
            assert client.is_model_ready("iris", model_version="1")
            assert client.get_server_metadata()["name"] == "mloncall"
            meta = client.get_model_metadata("iris")
            assert meta["inputs"][0]["shape"] == [-1, 4] and meta["versions"] == ["1"]

            as_json = triton.InferInput("input", [2, 4], "FP32")
            as_json.set_data_from_numpy(X, binary_data=False)
            outputs = [triton.InferRequestedOutput(n, binary_data=False) for n in ("label", "probabilities")]
            result = client.infer("iris", [as_json], outputs=outputs, request_id="req-7")
            assert list(result.as_numpy("label")) == ["setosa", "virginica"]
            assert result.as_numpy("probabilities").shape == (2, 3)
            assert result.get_response()["id"] == "req-7"

            as_binary = triton.InferInput("input", [2, 4], "FP32")
            as_binary.set_data_from_numpy(X)  # the client's default: raw bytes after the JSON header
            result = client.infer("iris", [as_binary], model_version="1")
            assert list(result.as_numpy("label")) == [b"setosa", b"virginica"]
            probs = result.as_numpy("probabilities")
            assert probs.dtype == np.float32 and np.allclose(probs.sum(axis=1), 1, atol=1e-5)

            per_feature = []
            for j, name in enumerate(FEATURES):
                t = triton.InferInput(name, [2], "FP64")
                t.set_data_from_numpy(X[:, j].astype(np.float64))
                per_feature.append(t)
            assert list(client.infer("iris", per_feature).as_numpy("label")) == [b"setosa", b"virginica"]

            with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
                client.infer("nope", [as_json])
            wrong = triton.InferInput("input", [2, 4], "INT64")
            wrong.set_data_from_numpy(X.astype(np.int64), binary_data=False)
            with pytest.raises(InferenceServerException, match="datatype 'INT64' is not supported"):
                client.infer("iris", [wrong])
        finally:
            client.close()


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not applied after {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - start


def test_routing_change_is_applied_within_a_second(sctx: Context, iris_v2: ModelVersion) -> None:
    def canary(s: Any) -> Any:
        return routing.set_canary(session=s, name="iris", version=2, weight=0.5, actor="t")

    def abort(s: Any) -> Any:
        return routing.set_weight(session=s, name="iris", weight=0.0, actor="t")

    def promote(s: Any) -> Any:
        return routing.set_stable(session=s, name="iris", version=2, actor="t")

    def roll_back(s: Any) -> Any:
        return routing.set_stable(session=s, name="iris", version=1, actor="t")

    changes: list[tuple[str, Callable[[Any], Any], dict[str, Any]]] = [
        ("canary 2 at 50%", canary, {"stable_version": 1, "canary_version": 2, "canary_weight": 0.5}),
        ("abort (weight 0)", abort, {"stable_version": 1, "canary_version": 2, "canary_weight": 0.0}),
        ("promote 2", promote, {"stable_version": 2, "canary_version": None, "canary_weight": 0.0}),
        ("roll back to 1", roll_back, {"stable_version": 1, "canary_version": None, "canary_weight": 0.0}),
    ]
    app = create_inference_app(sctx, config=ServingConfig())  # the default 0.3 s poll
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url) as c:

        def applied(expected: dict[str, Any]) -> bool:
            r = c.get("/v2/models/iris").json()["routing"]
            return all(r[k] == v for k, v in expected.items())

        for what, change, expected in changes:
            with sctx.db.session() as s:
                change(s)
            elapsed = wait_for(lambda expected=expected: applied(expected))  # type: ignore[misc]
            print(f"{what}: applied after {elapsed * 1000:.0f} ms")
            assert elapsed < 1.0


def test_swaps_under_concurrent_load_drop_nothing(sctx: Context, iris_v2: ModelVersion) -> None:
    app = create_inference_app(sctx, config=ServingConfig(refresh_seconds=0.1))
    stop = threading.Event()
    served: Counter[str] = Counter()
    failures: list[str] = []

    def fire() -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    r = client.post("/v2/models/iris/infer", json=BODY)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")
                else:
                    served[r.json()["model_version"]] += 1

    steps: list[Callable[[Any], Any]] = [
        lambda s: routing.set_stable(session=s, name="iris", version=2, actor="t"),
        lambda s: routing.set_canary(session=s, name="iris", version=1, weight=0.5, actor="t"),
        lambda s: routing.set_weight(session=s, name="iris", weight=0.0, actor="t"),
        lambda s: routing.set_stable(session=s, name="iris", version=1, actor="t"),
        lambda s: routing.set_canary(session=s, name="iris", version=2, weight=1.0, actor="t"),
        lambda s: routing.clear_canary(session=s, name="iris", actor="t"),
    ]
    with ThreadServer(app) as srv:
        threads = [threading.Thread(target=fire) for _ in range(4)]
        for t in threads:
            t.start()
        for _ in range(2):
            for step in steps:
                time.sleep(0.25)
                with sctx.db.session() as s:
                    step(s)
        time.sleep(0.25)
        stop.set()
        for t in threads:
            t.join()
    total = sum(served.values())
    print(f"swap under load: {total} requests, by version {dict(served)}, failures {len(failures)}")
    assert failures == []
    assert served["1"] > 0 and served["2"] > 0
    table = read_log(sctx.store, "predictions", "iris")  # the server's shutdown flushed the rest
    assert table is not None and table.num_rows == total

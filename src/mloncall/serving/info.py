"""The inference plane's shared plumbing and its read-only routes: health, metadata, OpenAPI, `/metrics`.

`InfoHandlers` holds what every route needs (the router, the prediction log, the metrics, the config) and
the lookups of a model's route or an explicit version; `serving.handlers.Handlers` adds the inference and
feedback routes on top. Every handler takes (scope, receive, params, labels, t0) and returns (status, body,
content type, extra headers); `params` are the path's parameters in pattern order (model, then version).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from mloncall import __version__
from mloncall.core.errors import MloncallError, NotFound
from mloncall.core.names import MAX_ID, parse_id
from mloncall.serving.asgi import Receive, Scope
from mloncall.serving.config import ServingConfig
from mloncall.serving.metrics import ServingMetrics
from mloncall.serving.openapi import Document
from mloncall.serving.predictor import Predictor
from mloncall.serving.router import ModelRoute, Router, public_reason
from mloncall.serving.validation import MATRIX_INPUT, RequestError, quoted
from mloncall.stores.predlog import PredictionLog

JSON = b"application/json"

#: (status, body, content type, extra headers) of one answer.
Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]] | None]


def error(status: int, message: str, reason: str | None = None, field: str | None = None) -> RequestError:
    return RequestError(status, message, reason, field=field)


class Labels:
    """What a request turned out to be, for its metrics even when it fails."""

    __slots__ = ("model", "route", "version")

    def __init__(self) -> None:
        self.model = ""
        self.version = ""
        self.route = ""


class InfoHandlers:
    """What the routes share, and the health, metadata, OpenAPI and metrics routes."""

    def __init__(
        self, *, config: ServingConfig, router: Router, prediction_log: PredictionLog, metrics: ServingMetrics
    ) -> None:
        self.config = config
        self.router = router
        self.prediction_log = prediction_log
        self.metrics = metrics
        #: The OpenAPI document, given the route table by the app that builds it.
        self.document: Document | None = None
        self._server_metadata = orjson.dumps(
            {"name": "mloncall", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    # --- lookups ---

    def _route(self, model: str) -> ModelRoute:
        route = self.router.routes.get(model)
        if route is None:
            if model in self.router.known:
                raise error(
                    503, f"model {quoted(model)} is not served: it has no routing and no 'production' alias"
                )
            if not self.router.ready:
                raise error(503, "the server is starting: routing not loaded yet")
            raise error(404, f"unknown model {quoted(model)}")
        if route.stable is None:
            raise error(503, f"model {quoted(model)} is not ready: {'; '.join(route.problems)}")
        return route

    async def _explicit(self, model: str, version_text: str) -> Predictor:
        version = parse_id(version_text)
        if version is None:
            raise error(
                404,
                f"model {quoted(model)} has no version {quoted(version_text)}: versions are positive integers up to "
                f"{MAX_ID}",
            )
        router = self.router
        predictor = router.loaded(model, version)
        if predictor is not None:
            return predictor
        if model not in router.known and router.ready:
            raise error(404, f"unknown model {quoted(model)}")
        failure = router.failure(model, version)
        if failure is not None:
            raise error(503, f"{model}:{version} is not ready: {failure}")
        try:
            return await asyncio.to_thread(router.load, model, version)
        except NotFound as exc:
            raise error(404, exc.message) from None
        except MloncallError as exc:
            raise error(503, f"{model}:{version} is not ready: {public_reason(exc)}") from None

    # --- health and metadata ---

    async def server_metadata(
        self, scope: Scope, receive: Receive, params: tuple[str, ...], labels: Labels | None, t0: float
    ) -> Answer:
        """GET /v2."""
        return 200, self._server_metadata, JSON, None

    async def openapi(
        self, scope: Scope, receive: Receive, params: tuple[str, ...], labels: Labels | None, t0: float
    ) -> Answer:
        """GET /v2/openapi.json: this plane's OpenAPI document, for the models served now."""
        assert self.document is not None  # set by the app once its route table exists
        return 200, self.document.body(orjson.dumps), JSON, None

    async def live(
        self, scope: Scope, receive: Receive, params: tuple[str, ...], labels: Labels | None, t0: float
    ) -> Answer:
        """GET /v2/health/live."""
        return 200, b'{"live":true}', JSON, None

    async def ready(
        self, scope: Scope, receive: Receive, params: tuple[str, ...], labels: Labels | None, t0: float
    ) -> Answer:
        """GET /v2/health/ready: routing loaded and every routed model ready."""
        router = self.router
        if not router.ready:
            # The refresh error (a driver's text, a file path) is in the log, not in an anonymous answer.
            reason = (
                "the routing cannot be read (see the server log)"
                if router.last_error
                else "routing not loaded yet"
            )
            return 503, orjson.dumps({"error": f"not ready: {reason}"}), JSON, None
        broken = [
            f"{name}: {'; '.join(r.problems)}" for name, r in sorted(router.routes.items()) if not r.ready
        ]
        if broken:
            return 503, orjson.dumps({"error": "not ready: " + " | ".join(broken)}), JSON, None
        return 200, b'{"ready":true}', JSON, None

    async def metrics_text(
        self, scope: Scope, receive: Receive, params: tuple[str, ...], labels: Labels | None, t0: float
    ) -> Answer:
        """GET /metrics: the Prometheus text exposition."""
        self.metrics.publish()  # this worker's counts, up to this request
        body = await asyncio.to_thread(self.metrics.render)
        return 200, body, self.metrics.content_type.encode(), None

    async def model_ready(
        self, scope: Scope, receive: Receive, params: tuple[str, ...], labels: Labels | None, t0: float
    ) -> Answer:
        """GET /v2/models/{model}[/versions/{version}]/ready."""
        model, predictor = await self._target(params)
        if predictor is not None:
            doc = {"name": model, "version": str(predictor.version), "ready": True}
        else:
            doc = {"name": model, "ready": True, "routing": self._route(model).describe()}
        return 200, orjson.dumps(doc), JSON, None

    async def model_metadata(
        self, scope: Scope, receive: Receive, params: tuple[str, ...], labels: Labels | None, t0: float
    ) -> Answer:
        """GET /v2/models/{model}[/versions/{version}]."""
        model, predictor = await self._target(params)
        if predictor is not None:
            doc = _model_doc(model, [predictor.version], predictor)
        else:
            route = self._route(model)
            assert route.stable is not None
            versions = [route.stable.version] + ([route.canary.version] if route.canary is not None else [])
            doc = _model_doc(model, versions, route.stable)
            doc["routing"] = route.describe()
        return 200, orjson.dumps(doc), JSON, None

    async def _target(self, params: tuple[str, ...]) -> tuple[str, Predictor | None]:
        """The model a path names and, under `/versions/{version}`, that version (loaded on demand)."""
        model = params[0]
        return model, (await self._explicit(model, params[1]) if len(params) > 1 else None)


def _model_doc(model: str, versions: list[int], predictor: Predictor) -> dict[str, Any]:
    schema = predictor.schema
    return {
        "name": model,
        "versions": [str(v) for v in versions],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": MATRIX_INPUT, "datatype": "FP32", "shape": [-1, schema.width]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(schema.classes)]},
        ],
        "features": list(schema.features),
        "classes": list(schema.classes),
    }

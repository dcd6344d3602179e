"""The inference app: Open Inference Protocol v2 REST, `/predict`, feedback and `/metrics`, lean ASGI.

The hot path is plain ASGI with orjson, no framework routing, dependency injection or pydantic: the model
answers in microseconds, so HTTP and JSON handling set the ceiling. Paths it does not own go to an optional
`fallback` ASGI app (the control-plane API), whose lifespan it drives too, so one process serves both.

Run it with `uvicorn --factory mloncall.serving.app:app_from_env --workers N --loop uvloop --http httptools`
(with PROMETHEUS_MULTIPROC_DIR set to an empty folder when N > 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from mloncall import __version__
from mloncall.core import clock
from mloncall.core.errors import MloncallError, NotFound
from mloncall.serving.config import ServingConfig
from mloncall.serving.metrics import ServingMetrics
from mloncall.serving.predictor import Predictor
from mloncall.serving.protocol import infer_response, parse_json, requested_outputs, split_infer_body
from mloncall.serving.router import CANARY, EXPLICIT, ModelRoute, Router, choose
from mloncall.serving.validation import (
    RequestError,
    bad,
    kind_of,
    out_of_range,
    range_error,
    range_flags,
    rows_from_instances,
    rows_from_oip,
)
from mloncall.stores.context import Context
from mloncall.stores.predlog import FeedbackBatch, PredictionLog

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("mloncall.serving.app")

JSON = b"application/json"
OCTETS = b"application/octet-stream"
_ACCEPTED_TYPES = (b"", b"application/json")
_UNKNOWN = "(unknown)"
_OWN_PATHS = frozenset({"/predict", "/metrics"})
_MAX_FEEDBACK = 10_000
_MAX_ID = 128


def _error(status: int, message: str, reason: str | None = None) -> RequestError:
    return RequestError(status, message, reason)


#: Validation reasons that say something about the data a client sends (runbook 6), kept in the rejections log.
_DATA_REASONS = frozenset({"missing_feature", "unknown_feature", "out_of_range", "not_finite", "wrong_type"})
_QUOTED = re.compile(r"'([^']{1,128})'")


class _Labels:
    """What a request turned out to be, for its metrics even when it fails."""

    __slots__ = ("model", "route", "version")

    def __init__(self) -> None:
        self.model = ""
        self.version = ""
        self.route = ""


@dataclass(slots=True)
class _Scored:
    """One request's answer, before it is encoded."""

    predictor: Predictor
    route: str
    labels: list[str]
    probabilities: np.ndarray
    flags: list[list[str]] | None
    ids: list[str]
    shadow_version: int | None = None
    shadow_labels: list[str] | None = None


class InferenceApp:
    """The data plane of one worker process: router, prediction log and metrics behind an ASGI callable."""

    def __init__(
        self,
        ctx: Context,
        *,
        config: ServingConfig | None = None,
        fallback: ASGIApp | None = None,
        owns_context: bool = False,
    ) -> None:
        self.ctx = ctx
        self.config = config or ServingConfig.from_settings(ctx.settings)
        self.fallback = fallback
        self.owns_context = owns_context
        self.metrics = ServingMetrics()
        self.router = Router(db=ctx.db, store=ctx.store, config=self.config, metrics=self.metrics)
        self.prediction_log = PredictionLog(
            ctx.store, flush_seconds=self.config.log_flush_seconds, flush_rows=self.config.log_flush_rows
        )
        self._fallback_lifespan: _ChildLifespan | None = None
        self._started = False

    # --- lifecycle ---

    async def startup(self) -> None:
        """Load the routed models, then start the routing poller and the log flusher."""
        if self._started:
            return
        self._started = True
        await asyncio.to_thread(self.router.refresh)
        self.router.start()
        self.prediction_log.start()

    async def shutdown(self) -> None:
        """Stop polling and write every buffered prediction (uvicorn has drained in-flight requests)."""
        if not self._started:
            return
        self._started = False
        await asyncio.to_thread(self.router.stop)
        await asyncio.to_thread(self.prediction_log.close)
        if self.owns_context:
            self.ctx.close()

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[InferenceApp]:
        """For mounting inside another app: `async with inference.lifespan(): ...` in its lifespan."""
        await self.startup()
        try:
            yield self
        finally:
            await self.shutdown()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                    if self.fallback is not None:
                        self._fallback_lifespan = _ChildLifespan(self.fallback, scope.get("state"))
                        await self._fallback_lifespan.startup()
                except Exception as exc:
                    log.exception("inference app startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                # Everything imported and loaded so far lives as long as the worker: move it out of the
                # collector's reach, so full collections under load stop scanning ~10^5 long-lived objects
                # (they stalled a worker for tens of milliseconds, the main threat to p99).
                gc.freeze()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    if self._fallback_lifespan is not None:
                        await self._fallback_lifespan.shutdown()
                finally:
                    await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- ASGI ---

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif self.fallback is not None:
            await self.fallback(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        path: str = scope["path"]
        root = scope.get("root_path")
        if root and path.startswith(root):  # mounted under a prefix: route on the rest
            path = path[len(root) :]
        method: str = scope["method"]
        v2 = path.startswith("/v2/") or path == "/v2"
        if not v2 and path not in _OWN_PATHS and self.fallback is not None:
            await self.fallback(scope, receive, send)
            return
        labels: _Labels | None = None
        try:
            if v2:
                parts = path.rstrip("/").split("/")
                n = len(parts)
                if n >= 5 and parts[2] == "models":
                    model = parts[3]
                    if n == 5 and parts[4] == "infer":
                        _allow(method, "POST")
                        labels = _Labels()
                        status, body, ctype, extra = await self._infer(
                            scope, receive, model, None, labels, t0
                        )
                    elif n == 7 and parts[4] == "versions" and parts[6] == "infer":
                        _allow(method, "POST")
                        labels = _Labels()
                        status, body, ctype, extra = await self._infer(
                            scope, receive, model, parts[5], labels, t0
                        )
                    elif n == 5 and parts[4] == "ready":
                        _allow(method, "GET")
                        status, body, ctype, extra = await self._model_ready(model, None)
                    elif n == 7 and parts[4] == "versions" and parts[6] == "ready":
                        _allow(method, "GET")
                        status, body, ctype, extra = await self._model_ready(model, parts[5])
                    elif n == 6 and parts[4] == "versions":
                        _allow(method, "GET")
                        status, body, ctype, extra = await self._model_metadata(model, parts[5])
                    elif n == 5 and parts[4] == "feedback":
                        _allow(method, "POST")
                        status, body, ctype, extra = await self._feedback(scope, receive, model)
                    else:
                        raise _error(404, f"no such route: {method} {path}")
                elif n == 4 and parts[2] == "models":
                    _allow(method, "GET")
                    status, body, ctype, extra = await self._model_metadata(parts[3], None)
                elif n == 2:
                    _allow(method, "GET")
                    status, body, ctype, extra = 200, _server_metadata(), JSON, None
                elif n == 4 and parts[2] == "health" and parts[3] in ("live", "ready"):
                    _allow(method, "GET")
                    status, body, ctype, extra = self._health(parts[3])
                else:
                    raise _error(404, f"no such route: {method} {path}")
            elif path == "/predict":
                _allow(method, "POST")
                labels = _Labels()
                status, body, ctype, extra = await self._predict(scope, receive, labels, t0)
            elif path == "/metrics":
                _allow(method, "GET")
                body = await asyncio.to_thread(self.metrics.render)
                status, ctype, extra = 200, self.metrics.content_type.encode(), None
            else:
                raise _error(404, f"no such route: {method} {path}")
        except RequestError as exc:
            status, body, ctype = exc.status, orjson.dumps({"error": exc.message}), JSON
            extra = exc.headers
            if labels is not None:
                self._failed(labels, status, exc.message, exc.reason, t0, scope)
        except _Disconnected:
            return
        except Exception as exc:  # a bug or a broken store: say so, never hang the client
            log.exception("inference request failed: %s %s", method, path)
            status, body, ctype, extra = 500, orjson.dumps({"error": f"internal error: {exc}"}), JSON, None
            if labels is not None:
                self._failed(labels, 500, f"internal error: {exc}", None, t0, scope)
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        if extra:
            headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # --- inference ---

    async def _body(
        self, scope: Scope, receive: Receive, binary_ok: bool = False
    ) -> tuple[bytes, dict[bytes, bytes]]:
        headers = dict(scope["headers"])
        ctype = headers.get(b"content-type")
        if ctype is not None:
            base = ctype.split(b";", 1)[0].strip().lower()
            if base not in _ACCEPTED_TYPES and not (binary_ok and base == OCTETS):
                raise _error(
                    415,
                    f"content type {ctype.decode('latin-1')!r} is not supported; send application/json",
                    "wrong_content_type",
                )
        limit = self.config.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _error(
                413, f"request body of {int(declared)} bytes is over the {limit}-byte limit", "body_too_large"
            )
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        body: bytes = message.get("body", b"")
        if message.get("more_body"):
            chunks = [body]
            size = len(body)
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _error(413, f"request body is over the {limit}-byte limit", "body_too_large")
                chunks.append(chunk)
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)
        if len(body) > limit:
            raise _error(
                413, f"request body of {len(body)} bytes is over the {limit}-byte limit", "body_too_large"
            )
        if not body:
            raise _error(400, "the request body is empty; send a JSON object", "empty_body")
        return body, headers

    def _route(self, model: str) -> ModelRoute:
        route = self.router.routes.get(model)
        if route is None:
            if model in self.router.known:
                raise _error(
                    503, f"model {model!r} is not served: it has no routing and no 'production' alias"
                )
            if not self.router.ready:
                raise _error(503, "the server is starting: routing not loaded yet")
            raise _error(404, f"unknown model {model!r}")
        if route.stable is None:
            raise _error(503, f"model {model!r} is not ready: {'; '.join(route.problems)}")
        return route

    async def _explicit(self, model: str, version_text: str) -> Predictor:
        if not version_text.isdigit() or int(version_text) < 1:
            raise _error(
                404, f"model {model!r} has no version {version_text!r}: versions are positive integers"
            )
        version = int(version_text)
        router = self.router
        predictor = router.loaded(model, version)
        if predictor is not None:
            return predictor
        if model not in router.known and router.ready:
            raise _error(404, f"unknown model {model!r}")
        failure = router.failure(model, version)
        if failure is not None:
            raise _error(503, f"{model}:{version} is not ready: {failure}")
        try:
            return await asyncio.to_thread(router.load, model, version)
        except NotFound as exc:
            raise _error(404, exc.message) from None
        except MloncallError as exc:
            raise _error(503, f"{model}:{version} is not ready: {exc.message}") from None

    def _sticky(self, route: ModelRoute | None, headers: dict[bytes, bytes], fields: Any) -> str | None:
        if route is None or route.sticky_key is None:
            return None
        value = headers.get(route.sticky_header)  # type: ignore[arg-type]
        if value is not None:
            return value.decode("latin-1")
        if type(fields) is dict:
            found = fields.get(route.sticky_key)
            if isinstance(found, str | int) and not isinstance(found, bool):
                return str(found)
        return None

    async def _infer(
        self, scope: Scope, receive: Receive, model: str, version_text: str | None, labels: _Labels, t0: float
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]] | None]:
        route = self.router.routes.get(model)
        labels.model = model if (route is not None or model in self.router.known) else ""
        explicit: Predictor | None = None
        if version_text is not None:
            labels.route = EXPLICIT
            explicit = await self._explicit(model, version_text)
            labels.model = model
            labels.version = str(explicit.version)
        else:
            route = self._route(model)
        body, headers = await self._body(scope, receive, binary_ok=True)
        header_length = headers.get(b"inference-header-content-length")
        doc, binary = split_infer_body(
            body, header_length.decode("latin-1") if header_length is not None else None
        )
        request_id = doc.get("id")
        if request_id is not None and type(request_id) is not str:
            raise bad(f"'id' must be a string, got {kind_of(request_id)}")
        if explicit is not None:
            predictor, route_name = explicit, EXPLICIT
        else:
            assert route is not None
            params = doc.get("parameters")
            predictor, route_name = choose(route, self._sticky(route, headers, params))
            labels.version = str(predictor.version)
            labels.route = route_name
        max_rows = route.max_rows if route is not None else self.config.default_max_rows
        X = rows_from_oip(doc.get("inputs"), predictor.schema, max_rows, binary)
        outputs, binary_out = requested_outputs(doc)
        scored = self._score(predictor, route_name, route, X, lambda r: f"row {r}")
        parameters: dict[str, Any] = {"prediction_ids": ",".join(scored.ids)}
        if scored.flags is not None:
            parameters["flags"] = orjson.dumps(scored.flags).decode()
        out, json_length = infer_response(
            model=model,
            version=predictor.version,
            request_id=request_id,
            labels=scored.labels,
            probabilities=scored.probabilities,
            outputs=outputs,
            binary=binary_out,
            parameters=parameters,
        )
        self._record(model, scored, X, t0, request_id or _header(headers, b"x-request-id"))
        if json_length is None:
            return 200, out, JSON, None
        return 200, out, OCTETS, [(b"inference-header-content-length", str(json_length).encode())]

    async def _predict(
        self, scope: Scope, receive: Receive, labels: _Labels, t0: float
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]] | None]:
        body, headers = await self._body(scope, receive)
        doc = parse_json(body)
        if type(doc) is not dict:
            raise bad(
                f"the request must be a JSON object with 'instances', got {kind_of(doc)}", "wrong_shape"
            )
        model = doc.get("model")
        if model is None:
            if not self.router.routes:
                raise _error(503, "no model is being served")
            model = min(self.router.routes)
        elif type(model) is not str:
            raise bad(f"'model' must be a string, got {kind_of(model)}")
        route = self.router.routes.get(model)
        labels.model = model if (route is not None or model in self.router.known) else ""
        route = self._route(model)
        if "instances" not in doc:
            raise bad(
                "the request has no 'instances': send {\"instances\": [{feature: value, ...}]}", "wrong_shape"
            )
        predictor, route_name = choose(route, self._sticky(route, headers, doc))
        labels.version = str(predictor.version)
        labels.route = route_name
        X = rows_from_instances(doc["instances"], predictor.schema, route.max_rows)
        scored = self._score(predictor, route_name, route, X, lambda r: f"instances[{r}]")
        classes = predictor.classes
        flags = scored.flags
        predictions = [
            {
                "id": pid,
                "label": label,
                "probabilities": dict(zip(classes, row, strict=True)),
                "flags": flags[i] if flags is not None else [],
            }
            for i, (pid, label, row) in enumerate(
                zip(scored.ids, scored.labels, scored.probabilities.tolist(), strict=True)
            )
        ]
        out = orjson.dumps({"predictions": predictions, "model": model, "version": predictor.version})
        self._record(model, scored, X, t0, _header(headers, b"x-request-id"))
        return 200, out, JSON, None

    def _score(
        self,
        predictor: Predictor,
        route_name: str,
        route: ModelRoute | None,
        X: np.ndarray,
        row_name: Callable[[int], str],
    ) -> _Scored:
        """Check the training range, predict, shadow-score canary rows with stable."""
        schema = predictor.schema
        mask = out_of_range(X, schema)
        flags = None
        if mask is not None:
            policy = route.out_of_range_policy if route is not None else "flag"
            if policy == "reject":
                raise range_error(X, mask, schema, row_name)
            flags = range_flags(mask, schema)
            model, version = predictor.model, str(predictor.version)
            for j in np.flatnonzero(mask.any(axis=0)):
                self.metrics.flagged(model, version, schema.features[j], int(mask[:, j].sum()))
        X32 = X.astype(np.float32)
        labels, probs = predictor.predict(X32)
        ids = [str(uuid.uuid4()) for _ in range(len(labels))]
        scored = _Scored(predictor, route_name, labels, probs, flags, ids)
        if route_name == CANARY and route is not None and route.shadow_ok and route.stable is not None:
            stable = route.stable
            try:
                rows = (
                    X32
                    if route.shadow_columns is None
                    else np.ascontiguousarray(X32[:, route.shadow_columns])
                )
                scored.shadow_labels, _ = stable.predict(rows)
                scored.shadow_version = stable.version
            except Exception:  # the answer stands; only the comparison is lost
                log.exception("shadow scoring by %s failed", stable)
        return scored

    def _record(self, model: str, scored: _Scored, X: np.ndarray, t0: float, request_id: str | None) -> None:
        """Log the rows and count the request, before the response is sent: nothing served is lost."""
        seconds = time.perf_counter() - t0
        predictor = scored.predictor
        self.prediction_log.record(
            ts=clock.now().timestamp(),
            model=model,
            version=predictor.version,
            route=scored.route,
            features=predictor.schema.features,
            X=X,
            ids=scored.ids,
            labels=scored.labels,
            probabilities=scored.probabilities,
            latency_ms=seconds * 1000.0,
            flags=scored.flags,
            shadow_version=scored.shadow_version,
            shadow_labels=scored.shadow_labels,
            request_id=request_id,
        )
        self.metrics.served(model, str(predictor.version), scored.route, seconds, scored.labels)

    def _failed(
        self, labels: _Labels, status: int, error: str, reason: str | None, t0: float, scope: Scope
    ) -> None:
        """Count a failed inference request; once routed to a version, log it too (its error rate)."""
        self.metrics.failed(labels.model or _UNKNOWN, labels.version, labels.route, status, reason)
        if reason in _DATA_REASONS and labels.model:
            named = _QUOTED.search(error)
            self.prediction_log.record_rejection(
                ts=clock.now().timestamp(),
                model=labels.model,
                reason=reason,
                field=named.group(1) if named else None,
            )
        if labels.version:
            self.prediction_log.record_error(
                ts=clock.now().timestamp(),
                model=labels.model,
                version=int(labels.version),
                route=labels.route,
                status=status,
                error=error,
                latency_ms=(time.perf_counter() - t0) * 1000.0,
                request_id=_header(dict(scope["headers"]), b"x-request-id"),
            )

    # --- feedback ---

    async def _feedback(
        self, scope: Scope, receive: Receive, model: str
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]] | None]:
        if model not in self.router.known:
            if not self.router.ready:
                raise _error(503, "the server is starting: routing not loaded yet")
            raise _error(404, f"unknown model {model!r}")
        route = self.router.routes.get(model)
        classes: set[str] = set()
        for p in (route.stable, route.canary) if route is not None else ():
            if p is not None:
                classes.update(p.classes)
        if not classes:
            raise _error(503, f"model {model!r} is not served, so its labels cannot be checked")
        body, _ = await self._body(scope, receive)
        doc = parse_json(body)
        items = doc.get("labels") if type(doc) is dict else None
        if type(items) is not list or not items:
            raise bad('send {"labels": [{"id": prediction id, "label": class}, ...]}')
        if len(items) > _MAX_FEEDBACK:
            raise bad(f"{len(items)} labels, more than the limit of {_MAX_FEEDBACK} per request")
        ids: list[str] = []
        values: list[str] = []
        for i, item in enumerate(items):
            if type(item) is not dict:
                raise bad(f"labels[{i}]: expected an object with 'id' and 'label', got {kind_of(item)}")
            pid, label = item.get("id"), item.get("label")
            if type(pid) is not str or not pid or len(pid) > _MAX_ID:
                raise bad(
                    f"labels[{i}].id: expected a prediction id (a non-empty string), got {kind_of(pid)}"
                )
            if type(label) is not str:
                raise bad(f"labels[{i}].label: expected a class name, got {kind_of(label)}")
            if label not in classes:
                expected = ", ".join(sorted(classes))
                raise bad(f"labels[{i}].label: unknown label {label!r}; expected one of {expected}")
            ids.append(pid)
            values.append(label)
        self.prediction_log.record_feedback(
            FeedbackBatch(ts=clock.now().timestamp(), model=model, ids=ids, labels=values)
        )
        return 200, orjson.dumps({"model": model, "recorded": len(ids)}), JSON, None

    # --- health and metadata ---

    def _health(self, which: str) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]] | None]:
        if which == "live":
            return 200, b'{"live":true}', JSON, None
        router = self.router
        if not router.ready:
            reason = router.last_error or "routing not loaded yet"
            return 503, orjson.dumps({"error": f"not ready: {reason}"}), JSON, None
        broken = [
            f"{name}: {'; '.join(r.problems)}" for name, r in sorted(router.routes.items()) if not r.ready
        ]
        if broken:
            return 503, orjson.dumps({"error": "not ready: " + " | ".join(broken)}), JSON, None
        return 200, b'{"ready":true}', JSON, None

    async def _model_ready(
        self, model: str, version_text: str | None
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]] | None]:
        if version_text is not None:
            predictor = await self._explicit(model, version_text)
            return (
                200,
                orjson.dumps({"name": model, "version": str(predictor.version), "ready": True}),
                JSON,
                None,
            )
        route = self._route(model)
        doc = {"name": model, "ready": True, "routing": route.describe()}
        return 200, orjson.dumps(doc), JSON, None

    async def _model_metadata(
        self, model: str, version_text: str | None
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]] | None]:
        if version_text is not None:
            predictor = await self._explicit(model, version_text)
            doc = _model_doc(model, [predictor.version], predictor)
        else:
            route = self._route(model)
            assert route.stable is not None
            versions = [route.stable.version] + ([route.canary.version] if route.canary is not None else [])
            doc = _model_doc(model, versions, route.stable)
            doc["routing"] = route.describe()
        return 200, orjson.dumps(doc), JSON, None


class _Disconnected(Exception):
    """The client went away before sending its body: nothing to answer."""


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise RequestError(
            405, f"method {method} is not allowed here; use {allowed}", None, [(b"allow", allowed.encode())]
        )


def _header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None


def _server_metadata() -> bytes:
    return orjson.dumps({"name": "mloncall", "version": __version__, "extensions": ["binary_tensor_data"]})


def _model_doc(model: str, versions: list[int], predictor: Predictor) -> dict[str, Any]:
    schema = predictor.schema
    return {
        "name": model,
        "versions": [str(v) for v in versions],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, schema.width]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(schema.classes)]},
        ],
        "features": list(schema.features),
        "classes": list(schema.classes),
    }


class _ChildLifespan:
    """Drives another ASGI app's lifespan (startup, then shutdown) from inside ours."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = True

    async def _main(self) -> None:
        scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        if self.state is not None:
            scope["state"] = self.state
        try:
            await self.app(scope, self._inbox.get, self._outbox.put)
        except BaseException:  # an app without lifespan support raises on the scope: treat as 'no lifespan'
            log.debug("fallback app has no lifespan", exc_info=True)
        finally:
            await self._outbox.put({"type": "lifespan.finished"})

    async def startup(self) -> None:
        self._task = asyncio.create_task(self._main())
        await self._inbox.put({"type": "lifespan.startup"})
        message = await self._outbox.get()
        if message["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the fallback app failed to start: {message.get('message', '')}")
        if message["type"] == "lifespan.finished":
            self._supported = False

    async def shutdown(self) -> None:
        if self._task is None or not self._supported:
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._outbox.get()
        await self._task


def create_inference_app(
    ctx: Context,
    *,
    config: ServingConfig | None = None,
    fallback: ASGIApp | None = None,
    owns_context: bool = False,
) -> InferenceApp:
    """The inference ASGI app over an installation's stores; `fallback` gets every path it does not own."""
    return InferenceApp(ctx, config=config, fallback=fallback, owns_context=owns_context)


def app_from_env() -> InferenceApp:
    """uvicorn factory: settings from the environment (MLONCALL_HOME, MLONCALL_DB_URL, ...), per worker."""
    ctx = Context.from_settings()
    return create_inference_app(ctx, owns_context=True)

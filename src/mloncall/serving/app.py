"""The inference app: Open Inference Protocol v2 REST, `/predict`, feedback and `/metrics`, lean ASGI.

The hot path is plain ASGI with orjson, no framework routing, dependency injection or pydantic: the model
answers in microseconds, so HTTP and JSON handling set the ceiling. This module owns the worker's lifecycle
(start-up, shutdown, the lifespan protocol) and dispatch: `route_table` names each (method, path pattern)
and the `serving.handlers` method that answers it. Paths it does not own go to an optional `fallback` ASGI
app (the control-plane API), whose lifespan it drives too, so one process serves both.

Run it with `uvicorn --factory mloncall.serving.app:app_from_env --workers N --loop uvloop --http httptools`
(with PROMETHEUS_MULTIPROC_DIR set to an empty folder when N > 1).

Two limits guard a worker (the `[serving]` settings `max_inflight` and `request_timeout_seconds`): past
`max_inflight` inference requests at once, one more gets a quick 503 with `Retry-After`; an inference
request not answered within the timeout gets 504. One background task per worker keeps the time: it
publishes the metrics counted in memory once a second and cancels a request past its deadline (so no
request pays for a timer of its own). Scoring runs to its end once started: the deadline is enforced while
a request waits (for its body, a model load or the token check), never between its log row and its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from mloncall.serving.asgi import ASGIApp, ChildLifespan, Receive, RouteTable, Scope, Send
from mloncall.serving.config import ServingConfig
from mloncall.serving.gate import OPEN_PATHS, GateSettings, TokenGate
from mloncall.serving.handlers import JSON, Answer, Disconnected, Handlers, Labels
from mloncall.serving.metrics import ServingMetrics
from mloncall.serving.openapi import Document
from mloncall.serving.router import Router
from mloncall.serving.validation import RequestError
from mloncall.stores.context import Context
from mloncall.stores.predlog import PredictionLog

log = logging.getLogger("mloncall.serving.app")

#: How often the worker's clock task looks at the deadlines, and publishes the metrics (every 20th tick).
_TICK_S = 0.05
_PUBLISH_TICKS = 20

#: A handler: (scope, receive, path parameters, labels of an inference request, start time) -> answer.
Handler = Callable[[Scope, Receive, tuple[str, ...], Labels | None, float], Awaitable[Answer]]


def route_table(h: Handlers) -> RouteTable[Handler]:
    """Each (method, path pattern) and the handler that answers it. Inference routes count and log their
    failures; the v2 routes allow a trailing slash, and own everything under `/v2` (a 404, not the
    fallback's)."""
    table: RouteTable[Handler] = RouteTable()
    table.add("GET", "/v2", h.server_metadata)
    table.add("GET", "/v2/openapi.json", h.openapi)
    table.add("GET", "/v2/health/live", h.live)
    table.add("GET", "/v2/health/ready", h.ready)
    table.add("GET", "/v2/models/{model}", h.model_metadata)
    table.add("GET", "/v2/models/{model}/ready", h.model_ready)
    table.add("POST", "/v2/models/{model}/infer", h.infer, inference=True)
    table.add("POST", "/v2/models/{model}/feedback", h.feedback)
    table.add("GET", "/v2/models/{model}/versions/{version}", h.model_metadata)
    table.add("GET", "/v2/models/{model}/versions/{version}/ready", h.model_ready)
    table.add("POST", "/v2/models/{model}/versions/{version}/infer", h.infer, inference=True)
    table.add("POST", "/predict", h.predict, inference=True, trailing_slash=False)
    table.add("GET", "/metrics", h.metrics_text, trailing_slash=False)
    return table


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
        self.handlers = Handlers(
            config=self.config, router=self.router, prediction_log=self.prediction_log, metrics=self.metrics
        )
        self.routes = route_table(self.handlers)
        gate = GateSettings.from_settings(ctx.settings, os.environ)
        self.gate = TokenGate(ctx.db, gate) if gate.require_token else None
        self.handlers.document = Document(
            self.routes, self.router, self.config, OPEN_PATHS if self.gate is not None else None
        )
        self._fallback_lifespan: ChildLifespan | None = None
        self._started = False
        #: Inference requests in this worker now, and the deadline of each (its task's).
        self._inflight = 0
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._clock: asyncio.Task[None] | None = None
        retry = str(self.config.retry_after_seconds).encode()
        self._busy_headers = [(b"retry-after", retry)]

    # --- lifecycle ---

    async def startup(self) -> None:
        """Load the routed models, then start the routing poller and the log flusher."""
        if self._started:
            return
        self._started = True
        await asyncio.to_thread(self.router.refresh)
        self.router.start()
        self.prediction_log.start()
        self._clock = asyncio.create_task(self._keep_time(), name="mloncall-serving-clock")

    async def shutdown(self) -> None:
        """Stop polling and write every buffered prediction (uvicorn has drained in-flight requests)."""
        if not self._started:
            return
        self._started = False
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
            self._clock = None
        self.metrics.publish()
        await asyncio.to_thread(self.router.stop)
        await asyncio.to_thread(self.prediction_log.close)
        if self.owns_context:
            self.ctx.close()

    async def _keep_time(self) -> None:
        """Cancel requests past their deadline; publish the metrics counted in memory once a second."""
        ticks = 0
        while True:
            await asyncio.sleep(_TICK_S)
            if self._deadlines:
                now = time.perf_counter()
                for task, deadline in list(self._deadlines.items()):
                    if now > deadline and task not in self._expired:
                        self._expired.add(task)
                        task.cancel()
            ticks += 1
            if ticks % _PUBLISH_TICKS == 0:
                try:
                    self.metrics.publish()
                except Exception:  # a full disk under the multiprocess folder: the next second tries again
                    log.exception("publishing the serving metrics failed")

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
                        self._fallback_lifespan = ChildLifespan(self.fallback, scope.get("state"))
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
        found = self.routes.match(path)
        if found is None and self.fallback is not None and not self.routes.owns(path):
            await self.fallback(scope, receive, send)
            return
        labels: Labels | None = None
        task: asyncio.Task[Any] | None = None
        try:
            if found is None:
                raise RequestError(404, f"no such route: {method} {path}")
            methods, params = found
            route = methods.get(method)
            if route is None:
                allowed = ", ".join(methods)
                raise RequestError(
                    405,
                    f"method {method} is not allowed here; use {allowed}",
                    None,
                    [(b"allow", allowed.encode())],
                )
            if route.inference:
                labels = Labels()
                if self._inflight >= self.config.max_inflight:
                    raise RequestError(
                        503,
                        f"this worker is at its limit of {self.config.max_inflight} requests at once: "
                        f"try again in {self.config.retry_after_seconds} s",
                        None,
                        self._busy_headers,
                    )
                task = asyncio.current_task()
                if task is not None:
                    self._deadlines[task] = t0 + self.config.request_timeout_seconds
                self._inflight += 1
            try:
                if self.gate is not None and self.gate.applies(path):
                    await self.gate.check(
                        scope, params[0] if params and path.startswith("/v2/models/") else None
                    )
                status, body, ctype, extra = await route.handler(scope, receive, params, labels, t0)
            finally:
                if labels is not None:
                    self._inflight -= 1
                    if task is not None:
                        self._deadlines.pop(task, None)
        except asyncio.CancelledError:
            if task is None or task not in self._expired:
                raise  # the server is stopping, or the client went away
            self._expired.discard(task)
            task.uncancel()
            seconds = self.config.request_timeout_seconds
            status, body, ctype = 504, orjson.dumps({"error": f"not answered within {seconds:g} s"}), JSON
            extra = None
            if labels is not None:
                self.handlers.failed(labels, 504, f"timed out after {seconds:g} s", None, t0, scope)
        except RequestError as exc:
            status, body, ctype = exc.status, orjson.dumps({"error": exc.message}), JSON
            extra = exc.headers
            if labels is not None:
                self.handlers.failed(labels, status, exc.message, exc, t0, scope)
        except Disconnected:
            return
        except Exception as exc:  # a bug or a broken store: say so, never hang the client
            log.exception("inference request failed: %s %s", method, path)
            # The exception's text may name files or values: the log has it, the anonymous answer does not.
            status, body, ctype, extra = 500, b'{"error":"internal error"}', JSON, None
            if labels is not None:
                self.handlers.failed(labels, 500, f"internal error: {exc}", None, t0, scope)
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        if extra:
            headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


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

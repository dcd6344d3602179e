"""The control-plane HTTP app: every domain's router behind bearer-token auth, one unit of work per request,
a request id on every request (`X-Request-ID`), an audit record for every mutating request and for every
refusal (401, 403) of any request, and every error a JSON body with a stable code and the request id.

What views need (the session, the caller, `allow`, the audit note) lives in `mloncall.api.deps`; this module
adds the middleware, maps errors once and mounts each domain's router by name.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, StatementError
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import mloncall
from mloncall.access import audit
from mloncall.access import jobs as access_jobs
from mloncall.access import service as access
from mloncall.access import views as access_views
from mloncall.alerts import scheduler as alert_scheduler
from mloncall.alerts import views as alert_views
from mloncall.api.deps import (
    MUTATING_METHODS,
    _action,
    _request_audit,
    audit_actor,
    current_principal,
    db_session,
    refuse_nul_bytes,
)
from mloncall.api.openapi import truthful_openapi
from mloncall.core.errors import MloncallError, StoreUnavailable
from mloncall.data import views as data_views
from mloncall.incidents import jobs as incident_jobs
from mloncall.incidents import views as incident_views
from mloncall.monitoring import scheduler as log_scheduler
from mloncall.pipelines import views as pipeline_views
from mloncall.pipelines import views_quarantine as quarantine_views
from mloncall.registry import views as registry_views
from mloncall.rollout import scheduler as rollout_scheduler
from mloncall.rollout import views as rollout_views
from mloncall.runbooks import jobs as runbook_jobs
from mloncall.runbooks import views as runbook_views
from mloncall.scaling import views as slo_views
from mloncall.stores.context import Context
from mloncall.stores.db import OUT_OF_CALENDAR, out_of_calendar
from mloncall.training import views as training_views
from mloncall.web import mount as dashboard

logger = logging.getLogger("mloncall.api")

DEFAULT_MAX_BODY_BYTES = 50 * 1024 * 1024
#: Every domain's routes, in the order the OpenAPI document lists them.
ROUTERS = (
    access_views.router,
    registry_views.router,
    data_views.router,
    pipeline_views.router,
    training_views.router,
    rollout_views.router,
    alert_views.router,
    incident_views.router,
    runbook_views.router,
    quarantine_views.router,
    slo_views.router,
)


class BackgroundJob(Protocol):
    """A job the server runs: `start()` answers whether this process took the job's lock."""

    def start(self) -> bool: ...

    def stop(self) -> None: ...


#: Background jobs the server runs, each built from the installation's context.
BACKGROUND_JOBS = (
    access_jobs.Scheduler,
    rollout_scheduler.Scheduler,
    alert_scheduler.Scheduler,
    incident_jobs.Scheduler,
    runbook_jobs.Scheduler,
    log_scheduler.Scheduler,
)

_STATUS_CODES = {
    400: "invalid_input",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


#: Statuses audited on every method, reads included: each refusal is evidence.
REFUSALS = frozenset({401, 403})
REQUEST_ID_HEADER = "X-Request-ID"


def _outcome(status: int, code: str | None) -> str:
    if status < 400:
        return "success"
    if status == 403 or code == "permission_denied":
        return "denied"
    if status == 401 or code == "unauthenticated":
        return "unauthenticated"
    return f"error:{code or _STATUS_CODES.get(status, f'http_{status}')}"


def _token_owner(session: Session, headers: Headers) -> str | None:
    scheme, _, secret = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    token = access.identify(session=session, secret=secret.strip())
    return token.principal.name if token is not None else None


def _write_failure_audit(ctx: Context, scope: Scope, status: int) -> None:
    """Record a request the unit of work did not record, in its own session (the request's rolled back)."""
    entry = _request_audit(scope)
    detail = {**entry.detail, "status": status}
    if entry.error:
        detail["error"] = entry.error[:500]  # as before the reason column, for readers of `detail`
    try:
        with ctx.db.session() as session:
            actor = entry.principal or _token_owner(session, Headers(scope=scope)) or "anonymous"
            audit.record(
                session=session,
                actor=actor,
                action=_action(scope),
                target=scope.get("path", ""),
                outcome=_outcome(status, entry.error_code),
                reason=entry.error or "",
                detail=detail,
                request_id=entry.request_id,
            )
    except Exception:  # a lost audit record must not turn the caller's answer into another error
        logger.exception("could not write the audit record of %s", _action(scope))


def _with_request_id(message: Message, request_id: str) -> Message:
    headers = MutableHeaders(raw=list(message.get("headers", [])))
    if REQUEST_ID_HEADER not in headers:
        headers.append(REQUEST_ID_HEADER, request_id)
    return {**message, "headers": headers.raw}


class AuditMiddleware:
    """Gives every request its id (the client's `X-Request-ID` if safe, else a new one), echoed in the
    response header and bound for every audit record the request writes; and writes the audit record of
    every mutating request that the unit of work did not record itself (failures, denials, rejected bodies,
    unknown routes, routes that use no unit of work) and of every refused request (401, 403) of any method.

    The record is written before the response starts, so a client that sees the answer finds the record.
    """

    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        entry = _request_audit(scope)
        entry.request_id = request_id = audit.accept_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
        mutating = scope["method"] in MUTATING_METHODS

        async def send_after_audit(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = _with_request_id(message, request_id)
                status = int(message["status"])
                if not entry.written and (status in REFUSALS or mutating):
                    entry.written = True
                    if not (entry.claimed and status < 400):
                        await run_in_threadpool(_write_failure_audit, self.ctx, scope, status)
            await send(message)

        with audit.bind_request_id(request_id):
            try:
                await self.app(scope, receive, send_after_audit)
            except Exception:
                if mutating and not entry.written:
                    entry.written = True
                    entry.error_code, entry.error = "internal", "internal error"
                    await run_in_threadpool(_write_failure_audit, self.ctx, scope, 500)
                raise


# --- request body limit ----------------------------------------------------------------------------------


class BodyLimitMiddleware:
    """Refuse request bodies over the limit with 413 when a route reads them: without reading a byte when
    Content-Length says so, else as soon as the bytes read pass the limit."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        too_large = declared.isdigit() and int(declared) > self.limit
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if too_large:
                raise self._error()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise self._error()
            return message

        await self.app(scope, limited_receive, send)

    def _error(self) -> StarletteHTTPException:
        # Raised from the body read, after routing: the handler makes it JSON and the audit names the route.
        # (FastAPI lets an HTTPException from a body read through; any other error would become a 400.)
        return StarletteHTTPException(
            413, detail=f"request body is larger than the limit of {self.limit} bytes"
        )


# --- errors: mapped once ---------------------------------------------------------------------------------


def _error_response(request: Request, status: int, body: dict[str, Any], headers: Any = None) -> JSONResponse:
    entry = _request_audit(request.scope)
    entry.error_code, entry.error = str(body.get("code")), str(body.get("error"))
    if entry.request_id is not None:
        body = {**body, "request_id": entry.request_id}
        headers = {**(headers or {}), REQUEST_ID_HEADER: entry.request_id}
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


async def _on_mloncall_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MloncallError)
    if exc.http_status >= 500:
        logger.warning("%s %s failed: %s", request.method, request.url.path, exc.message)
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
    return _error_response(request, exc.http_status, exc.to_dict(), headers)


def _validation_message(error: dict[str, Any], content_type: str) -> tuple[str, str]:
    loc = ".".join(str(p) for p in error.get("loc", ()))
    msg = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        return (
            "body",
            f"not valid JSON ({reason} at character {error['loc'][-1]})" if reason else "not valid JSON",
        )
    if loc == "body" and "json" not in content_type:
        # FastAPI parses a body as JSON only when the request says it is JSON.
        return loc, f"expected a JSON object sent with 'Content-Type: application/json', got {content_type!r}"
    return loc, msg


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    content_type = request.headers.get("content-type", "")
    details = []
    for error in exc.errors():
        loc, msg = _validation_message(dict(error), content_type)
        details.append({"loc": loc, "msg": msg, "type": str(error.get("type", ""))})
    message = "; ".join(f"{d['loc']}: {d['msg']}" for d in details) or "invalid request"
    return _error_response(request, 400, {"error": message, "code": "invalid_input", "details": details})


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 404 and "route" not in request.scope:
        message = f"no such route: {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    body = {"error": message, "code": _STATUS_CODES.get(status, f"http_{status}")}
    return _error_response(request, status, body, exc.headers)


def _db_reason(exc: Exception) -> str:
    """The first line of the driver's message (the rest is SQL and parameters), or the error itself."""
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()
    return reason[0] if reason else str(exc)


async def _on_db_integrity_error(request: Request, exc: Exception) -> Response:
    body = {"error": f"the change conflicts with the stored state: {_db_reason(exc)}", "code": "conflict"}
    return _error_response(request, 409, body)


async def _on_db_data_error(request: Request, exc: Exception) -> Response:
    body = {"error": f"a value the database cannot take: {_db_reason(exc)}", "code": "invalid_input"}
    return _error_response(request, 400, body)


async def _on_unencodable_text(request: Request, exc: Exception) -> Response:
    # JSON may escape a lone surrogate (\ud800) that no UTF-8 file, hash or database column can hold.
    body = {
        "error": "the request holds text that is not valid Unicode (a lone surrogate)",
        "code": "invalid_input",
    }
    return _error_response(request, 400, body)


async def _on_db_statement_error(request: Request, exc: Exception) -> Response:
    if out_of_calendar(exc):
        return _error_response(request, 400, {"error": OUT_OF_CALENDAR, "code": "invalid_input"})
    return await _on_unexpected_error(request, exc)


async def _on_unexpected_error(request: Request, exc: Exception) -> Response:
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_response(request, 500, {"error": "internal error", "code": "internal"})


# --- the app ---------------------------------------------------------------------------------------------


@contextmanager
def background_jobs(ctx: Context) -> Iterator[list[BackgroundJob]]:
    """Run each background job whose lock this process can take (the ones it started) until the block
    ends."""
    started: list[BackgroundJob] = []
    try:
        for make_job in BACKGROUND_JOBS:
            job: BackgroundJob = make_job(ctx)
            if job.start():
                started.append(job)
        yield started
    finally:
        for job in started:
            job.stop()


@asynccontextmanager
async def _background(app: FastAPI) -> AsyncIterator[None]:
    """Start the background jobs (rollout analysis, alert evaluation) when the app asks for them and no
    other process of the installation runs them (a supervised server's supervisor does)."""
    with background_jobs(app.state.ctx) if app.state.background else nullcontext():
        yield


def create_app(ctx: Context, *, max_body_bytes: int | None = None, background: bool = False) -> FastAPI:
    """The control-plane app over one installation; the body limit defaults to `[server] max_body_bytes`.

    With `background`, its lifespan also runs the rollout and alert schedulers (one process per installation
    holds each job's lock, so several workers do not duplicate them).
    """
    limit = max_body_bytes or int(
        ctx.settings.section("server").get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)
    )
    app = FastAPI(
        title="mloncall",
        version=mloncall.__version__,
        description="Control plane of mloncall: registry, data, training, rollouts, alerts, access and audit.",
        lifespan=_background,
    )
    app.state.background = background
    app.state.ctx = ctx
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=limit)
    app.add_middleware(AuditMiddleware, ctx=ctx)  # added last: the outermost of the two
    app.add_exception_handler(MloncallError, _on_mloncall_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(SAIntegrityError, _on_db_integrity_error)
    app.add_exception_handler(DataError, _on_db_data_error)  # e.g. an integer out of range, a NUL in a string
    app.add_exception_handler(StatementError, _on_db_statement_error)  # e.g. a time past the UTC calendar
    app.add_exception_handler(UnicodeEncodeError, _on_unencodable_text)
    app.add_exception_handler(Exception, _on_unexpected_error)

    @app.get("/healthz", tags=["health"], summary="Is the metadata database reachable? (no token needed)")
    def healthz() -> JSONResponse:
        try:
            ctx.db.check()
        except StoreUnavailable as exc:
            # Anonymous: the database's address and the driver's text go to the log only.
            logger.warning("health check failed: %s", exc.message)
            body = {"status": "unavailable", "error": "the metadata database cannot be reached"}
            return JSONResponse({**body, "code": exc.code}, status_code=503)
        return JSONResponse({"status": "ok"})

    for router in ROUTERS:
        app.include_router(router, dependencies=[Depends(refuse_nul_bytes), Depends(current_principal)])
    app.include_router(access_views.public_router, dependencies=[Depends(refuse_nul_bytes)])
    # The dashboard at `/`, its actions in the API's audited unit of work (the API stays under /api/v1).
    dashboard.install(
        app, unit_of_work=db_session, name_actor=audit_actor, dependencies=[Depends(refuse_nul_bytes)]
    )
    app.openapi = lambda: truthful_openapi(app)  # type: ignore[method-assign]
    return app

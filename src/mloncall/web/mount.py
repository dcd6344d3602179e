"""Mount the dashboard on an app: its pages and actions, its static files, and what it borrows from the app.

`install(app, unit_of_work=..., name_actor=...)` is called by `mloncall.api.app` with the API's audited unit
of work and the hook naming a request's actor, so the dashboard imports nothing from the API it sits beside.
It also wraps the app's error handlers: a refusal of a dashboard route (403, 404, 409, a bad form...) is
answered as a page a person reads, with the same status and explanation the API's JSON gives (and the same
audit record, written by the API's handler); every other route keeps its JSON.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from mloncall.core.errors import MloncallError
from mloncall.web import actions, base, pages
from mloncall.web.auth import CsrfRefused, LoginRequired

STATIC = Path(__file__).parent / "static"
#: The errors whose app handler answers JSON, answered as a page on a dashboard route.
PAGE_ERRORS: tuple[type[Exception], ...] = (MloncallError, RequestValidationError, StarletteHTTPException)
TITLES = {
    400: "Not accepted",
    401: "Log in first",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible now",
    413: "Too large",
    422: "Check failed",
}
Handler = Callable[[Request, Any], Response | Awaitable[Response]]


async def _to_login(request: Request, exc: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        return HTMLResponse("<h1>401</h1><p>log in first: <a href='/login'>login</a></p>", status_code=401)
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def _back(request: Request) -> str:
    """Where the page's link leads: the dashboard page the request came from, else the overview."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc != request.url.netloc or not referer.path.startswith("/"):
        return "/"
    return referer.path + (f"?{referer.query}" if referer.query else "")


def error_page(request: Request, status: int, message: str, request_id: str | None = None) -> HTMLResponse:
    """A refusal as a page: what was refused and why, and a link back."""
    return base.render(
        request,
        "error.html",
        None,
        None,
        status_code=status,
        status=status,
        title=TITLES.get(status, "Refused" if status < 500 else "Failed"),
        message=message,
        request_id=request_id,
        back=_back(request),
    )


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    return error_page(
        request, 403, "the form's CSRF token is missing or wrong: reload the page and try again"
    )


def _as_page(app_handler: Handler, endpoints: frozenset[Callable[..., Any]]) -> Handler:
    """The app's handler, its JSON answer turned into a page when the route is the dashboard's."""

    async def handler(request: Request, exc: Any) -> Response:
        response = app_handler(request, exc)  # the API's answer and audit, whoever asked
        if inspect.isawaitable(response):
            response = await response
        if getattr(request.scope.get("route"), "endpoint", None) not in endpoints:
            return response
        try:
            body = json.loads(bytes(response.body))
        except ValueError:
            return response
        page = error_page(request, response.status_code, str(body.get("error", "")), body.get("request_id"))
        for name, value in response.headers.items():
            if name.lower() not in ("content-type", "content-length"):
                page.headers[name] = value
        return page

    return handler


def install(
    app: FastAPI,
    *,
    unit_of_work: Callable[..., Any],
    name_actor: Callable[[Request, str], None],
    dependencies: list[Any] | None = None,
) -> None:
    """The dashboard at `/` of app, its actions audited through unit_of_work."""
    app.dependency_overrides[base.unit_of_work] = unit_of_work
    app.state.web_name_actor = name_actor
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    endpoints = frozenset(
        route.endpoint
        for route in (*actions.router.routes, *pages.router.routes)
        if isinstance(route, APIRoute)
    )
    for error in PAGE_ERRORS:
        app_handler = app.exception_handlers.get(error)
        if app_handler is not None:
            app.add_exception_handler(error, _as_page(app_handler, endpoints))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(actions.router, dependencies=dependencies or [])
    app.include_router(pages.router, dependencies=dependencies or [])

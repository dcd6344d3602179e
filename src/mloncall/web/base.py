"""What every dashboard page shares: the templates, the logged-in user, pagination, and the unit of work.

The dashboard sits beside `mloncall.api` and imports nothing from it: `mloncall.api.app` mounts it with
`web.mount.install`, overriding `unit_of_work` with the API's own audited unit of work and giving the hook
that names the actor of a request's audit record, so a dashboard action is audited as the API's are.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session

from mloncall.core import clock
from mloncall.stores.context import Context
from mloncall.web.auth import WebUser, may, session_user

TEMPLATES = Path(__file__).parent / "templates"
PAGE_SIZE = 25

env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


env.filters["when"] = _when


def unit_of_work(request: Request) -> Iterator[Session]:
    """The request's unit of work; `install` replaces this with the API's audited one."""
    ctx: Context = request.app.state.ctx
    with ctx.db.session() as session:
        yield session


DbSession = Annotated[Session, Depends(unit_of_work, scope="function")]


def context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


CurrentContext = Annotated[Context, Depends(context)]


def current_user(request: Request, session: DbSession, ctx: CurrentContext) -> WebUser:
    """The logged-in principal (else a redirect to the login page), named as the actor of the audit record."""
    user = session_user(session, ctx, request)
    name_actor: Callable[[Request, str], None] | None = getattr(request.app.state, "web_name_actor", None)
    if name_actor is not None:
        name_actor(request, user.name)
    return user


User = Annotated[WebUser, Depends(current_user)]


@dataclass
class Page:
    """One page of a list: `number` from 1, and whether there is a next one."""

    number: int
    size: int = PAGE_SIZE
    has_next: bool = False

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    def cut(self, rows: list[Any]) -> list[Any]:
        """Rows fetched with `size + 1`: keep `size`, and remember whether there was more."""
        self.has_next = len(rows) > self.size
        return rows[: self.size]


def page_of(page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Page:
    return Page(number=page)


PageQuery = Annotated[Page, Depends(page_of)]


def render(
    request: Request,
    template: str,
    user: WebUser | None,
    session: Session | None,
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    """The template with what every page shows: who is logged in, the CSRF token, `may` and the time."""

    def can(permission: str, model: str | None = None) -> bool:
        return user is not None and session is not None and may(session, user, permission, model)

    html = env.get_template(template).render(
        request=request,
        user=user,
        csrf=user.csrf if user else "",
        can=can,
        now=clock.now(),
        query=dict(request.query_params),
        **values,
    )
    return HTMLResponse(html, status_code=status_code)

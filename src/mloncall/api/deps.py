"""What a domain's `views.py` needs from the HTTP layer, and nothing else: it imports no view.

- `DbSession`: the request's unit of work, committed after the handler returns and rolled back if it raises;
- `CurrentPrincipal` (or `allow("deploy:execute", model="name")` for a permission check) for the caller;
- `CurrentContext` for the installation (artifact store, settings);
- `audit_note(request, **detail)` to add detail to the request's audit record.

A domain router carries its full path (`APIRouter(prefix="/api/v1/...")`): the route template names the
action in the audit log. Handlers signal failure by raising a `MloncallError`, never by returning an error
response, so the success record written inside the unit of work is never wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.types import Scope

from mloncall.access import audit, authorize, grants
from mloncall.access import service as access
from mloncall.access.models import Principal
from mloncall.access.permissions import check_permission
from mloncall.access.policy import policy_version
from mloncall.core.errors import InvalidInput, Unauthenticated
from mloncall.core.names import MAX_ID
from mloncall.stores.context import Context

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# --- what one request leaves for its audit record --------------------------------------------------------


@dataclass
class _RequestAudit:
    principal: str | None = None
    claimed: bool = False  # the unit of work writes the success record in the same transaction as the change
    written: bool = False
    detail: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error: str | None = None
    request_id: str | None = None  # accepted from X-Request-ID or generated (`api.app.AuditMiddleware`)


def _request_audit(scope: Scope) -> _RequestAudit:
    state = scope.setdefault("state", {})
    entry = state.get("mloncall_audit")
    if not isinstance(entry, _RequestAudit):
        entry = state["mloncall_audit"] = _RequestAudit()
    return entry


def audit_note(request: Request, **detail: Any) -> None:
    """Add detail (JSON-able values) to the audit record of this request."""
    _request_audit(request.scope).detail.update(jsonable_encoder(detail))


def audit_actor(request: Request, name: str) -> None:
    """Name who acted, for a route that identifies its caller itself (a password login)."""
    _request_audit(request.scope).principal = name


def _action(scope: Scope) -> str:
    """`METHOD /route/{template}`, or the concrete path when no route matched."""
    route = scope.get("route")
    path = getattr(route, "path", None) or scope.get("path", "")
    return f"{scope.get('method', '')} {path}"


# --- dependencies for the domains' views -----------------------------------------------------------------


def get_context(request: Request) -> Context:
    """The installation this app serves."""
    ctx: Context = request.app.state.ctx
    return ctx


CurrentContext = Annotated[Context, Depends(get_context)]


def send_later(send: Callable[[Context], object], *, log: logging.Logger, what: str) -> Any:
    """A dependency giving a route that may queue messages a callable to have `send(ctx)` run after its
    answer; a failure then is logged (the answer is sent already; the scheduler's next pass retries)."""

    def dependency(ctx: CurrentContext, tasks: BackgroundTasks) -> Callable[[], None]:
        def run() -> None:
            try:
                send(ctx)
            except Exception:
                log.exception("sending %s failed", what)

        return lambda: tasks.add_task(run)

    return Depends(dependency)


# --- parameter types: every id, version and limit bounded alike (`core.names.MAX_ID`) ------------------

VersionPath = Annotated[int, Path(ge=1, le=MAX_ID, description="version number")]
AlertIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="alert id")]
SilenceIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="silence id")]
TokenIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="token id")]
RequestIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="access request id")]
LimitQuery = Annotated[int, Query(ge=1, le=1000, description="at most this many, newest first")]
SeedQuery = Annotated[int | None, Query(ge=0, le=MAX_ID, description="random seed")]


def db_session(request: Request) -> Iterator[Session]:
    """The request's unit of work; a mutating request's success audit record commits with its change."""
    ctx = get_context(request)
    entry = _request_audit(request.scope)
    mutating = request.method in MUTATING_METHODS
    if mutating:
        entry.claimed = True
    with ctx.db.session() as session:
        yield session
        if mutating:
            audit.record(
                session=session,
                actor=entry.principal or "anonymous",
                action=_action(request.scope),
                target=request.url.path,
                outcome="success",
                detail=entry.detail,
                request_id=entry.request_id,
            )


#: `scope="function"`: commit before the response is sent, so a failed commit is the caller's error too.
DbSession = Annotated[Session, Depends(db_session, scope="function")]

_bearer = HTTPBearer(
    auto_error=False, description="an API token from `mloncall init` or `mloncall tokens create`"
)


def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller named by the bearer token; 401 if it is missing, malformed, unknown, revoked or expired."""
    if credentials is None:
        if request.headers.get("authorization"):
            raise Unauthenticated("malformed Authorization header: expected 'Bearer <token>'")
        raise Unauthenticated("missing bearer token: send the header 'Authorization: Bearer <token>'")
    # Its own unit of work: the token's last use is recorded even when the request then fails.
    with get_context(request).db.session() as session:
        token = access.authenticate_token(session=session, secret=credentials.credentials)
        principal = token.principal
        # read with the token, in its unit of work: the decision then needs no query of its own
        request.state.mloncall_policy_version = policy_version(session)
    request.state.mloncall_token = token
    _request_audit(request.scope).principal = principal.name
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def refuse_nul_bytes(request: Request) -> None:
    """400 for a NUL byte in the path or query: PostgreSQL cannot store one, so no backend accepts one."""
    query = request.query_params.multi_items()
    if "\x00" in request.url.path or any("\x00" in key + value for key, value in query):
        raise InvalidInput("the request path or query contains a NUL byte")


def allow(permission: str, *, model: str | None = None) -> Any:
    """A dependency returning the caller if the policy lets them do permission, else 403 with the reasons.

    `model` names the path parameter holding the model the route acts on: the decision is then made in that
    model's scope, so a grant on one model opens its routes and no other's. A use of a break-glass grant is
    counted on the grant and noted in the request's audit record.
    """
    check_permission(permission)

    def check(request: Request, principal: CurrentPrincipal) -> Principal:
        target = request.path_params.get(model) if model is not None else None
        token = getattr(request.state, "mloncall_token", None)
        with get_context(request).db.session() as session:
            grant = authorize.require(
                session=session,
                principal=principal,
                permission=permission,
                model=target,
                token=token,
                version=getattr(request.state, "mloncall_policy_version", None),
            )
            if grant is not None:
                grants.record_use(session=session, request_id=grant)
        if grant is not None:
            audit_note(request, grant=grant)
        return principal

    check.permission = permission  # type: ignore[attr-defined]  # read by the route x role matrix test
    return Depends(check)


@dataclass
class Change:
    """What a change route works with: its unit of work, the installation, the caller, its audit record."""

    session: Session
    ctx: Context
    principal: Principal
    request: Request

    @property
    def actor(self) -> str:
        return self.principal.name

    def note(self, **detail: Any) -> None:
        """Add to the request's audit record (`audit_note`)."""
        audit_note(self.request, **detail)


def change(permission: str, *, model: str | None = None) -> Any:
    """A dependency giving a change route its `Change`, once the policy lets the caller do permission."""

    def build(
        request: Request,
        session: DbSession,
        ctx: CurrentContext,
        principal: Principal = allow(permission, model=model),
    ) -> Change:
        return Change(session=session, ctx=ctx, principal=principal, request=request)

    return Depends(build)

"""Access routes: who am I, explain a decision, roles, break-glass requests, the audit log, tokens."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from mloncall.access import audit, authorize, grants, roles, service
from mloncall.access.models import ApiToken, Principal
from mloncall.access.permissions import PERMISSIONS
from mloncall.access.schemas import (
    AccessRequestOut,
    AuditRecordOut,
    AuditVerifyOut,
    ExplanationOut,
    LoginIn,
    LoginOut,
    RequestAnswer,
    RequestCreate,
    RoleOut,
    TokenCreate,
    TokenCreated,
    TokenOut,
    WhoAmI,
)
from mloncall.api.deps import (
    CurrentPrincipal,
    DbSession,
    LimitQuery,
    RequestIdPath,
    TokenIdPath,
    allow,
    audit_actor,
    audit_note,
    get_context,
)
from mloncall.core.durations import duration_pattern, parse_duration
from mloncall.core.errors import IntegrityError
from mloncall.core.names import MAX_ID
from mloncall.incidents import service as incidents

router = APIRouter(prefix="/api/v1", tags=["access"])

#: An ISO time (UTC unless it has an offset) or a duration ago, as `audit.parse_moment` reads it. The
#: document states days 01-28 only, so that every time it describes is a real one.
_ISO = (
    r"(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])"
    r"(?:T(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?(?:Z|[+-](?:0\d|1[0-3]):[0-5]\d)?)?"
)
MomentQuery = Annotated[
    str | None,
    Query(
        max_length=64,
        description="an ISO time or a duration ago (2h)",
        json_schema_extra={"pattern": f"^{_ISO}$|{duration_pattern(maximum=dt.timedelta(days=3650))}"},
    ),
]
#: Routes that need no token: logging in with a password.
public_router = APIRouter(prefix="/api/v1", tags=["access"])


@public_router.post("/login", summary="Check a user's dashboard password (no token needed)")
def login(body: LoginIn, request: Request, session: DbSession) -> LoginOut:
    audit_note(request, name=body.name)
    principal = service.check_password(session=session, name=body.name, password=body.password)
    audit_actor(request, principal.name)
    return LoginOut(name=principal.name, kind=principal.kind)


@router.get("/whoami", summary="The principal the token belongs to, its roles, teams and token")
def whoami(request: Request, session: DbSession, principal: CurrentPrincipal) -> WhoAmI:
    return WhoAmI.model_validate(service.whoami(session=session, name=principal.name, token=_token(request)))


def _token(request: Request) -> ApiToken | None:
    token = getattr(request.state, "mloncall_token", None)
    return token if isinstance(token, ApiToken) else None


@router.get("/access/explain", summary="Whether a principal may do a permission (on a model), and why")
def explain(
    request: Request,
    session: DbSession,
    caller: CurrentPrincipal,
    permission: Annotated[str, Query(pattern="^(" + "|".join(PERMISSIONS) + ")$")],
    principal: Annotated[str | None, Query(max_length=128, description="default: the caller")] = None,
    model: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")] = None,
) -> ExplanationOut:
    own = principal is None or principal == caller.name
    if not own:
        authorize.require(session=session, principal=caller, permission="access:admin", token=_token(request))
    who = service.get_principal_or_raise(session=session, name=principal or caller.name)
    why = authorize.explain(
        session=session,
        principal=who,
        permission=permission,
        model=model,
        token=_token(request) if own else None,
    )
    return ExplanationOut.model_validate(why.as_dict())


@router.get("/access/roles", summary="Every role and the permissions it grants")
def list_roles(session: DbSession, _: CurrentPrincipal) -> list[RoleOut]:
    return [
        RoleOut(
            name=r.name,
            description=r.description,
            builtin=r.builtin,
            permissions=roles.role_permissions(session=session, name=r.name),
        )
        for r in roles.list_roles(session=session)
    ]


@router.post("/access/requests", status_code=201, summary="File a break-glass request for yourself")
def file_request(
    body: RequestCreate, request: Request, session: DbSession, caller: CurrentPrincipal
) -> AccessRequestOut:
    if body.incident_id is not None:
        incidents.get_incident_or_raise(session=session, incident_id=body.incident_id)
    row = grants.request(
        session=session,
        requester=service.get_principal_or_raise(session=session, name=caller.name),
        role=body.role,
        scope=body.scope,
        duration=parse_duration(body.duration, what="grant duration"),
        reason=body.reason,
        incident_id=body.incident_id,
        limits=grants.GrantLimits.load(get_context(request).settings),
    )
    audit_note(request, request_id=row.id, role=row.role, scope=row.scope)
    return AccessRequestOut.model_validate(row)


@router.get(
    "/access/requests", summary="Requests and grants, newest first (yours, or all with access:approve)"
)
def list_requests(
    request: Request,
    session: DbSession,
    caller: CurrentPrincipal,
    state: Annotated[str | None, Query(pattern="^(pending|approved|denied|lapsed|expired|revoked)$")] = None,
    requester: Annotated[str | None, Query(max_length=128)] = None,
    incident: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: LimitQuery = 100,
) -> list[AccessRequestOut]:
    if requester != caller.name:
        authorize.require(
            session=session, principal=caller, permission="access:approve", token=_token(request)
        )
    rows = grants.list_requests(
        session=session, requester=requester, state=state, incident_id=incident, limit=limit
    )
    return [AccessRequestOut.model_validate(r) for r in rows]


def _answer_route(answer: Any, verb: str, summary: str) -> Callable[..., AccessRequestOut]:
    """The route that answers someone else's request with `answer` (grants.approve or grants.deny)."""

    @router.post(f"/access/requests/{{request_id}}/{verb}", summary=summary, name=f"{verb}_request")
    def answer_request(
        request_id: RequestIdPath,
        body: RequestAnswer,
        request: Request,
        session: DbSession,
        caller: Principal = allow("access:approve"),
    ) -> AccessRequestOut:
        approver = service.get_principal_or_raise(session=session, name=caller.name)
        row = answer(session=session, request_id=request_id, approver=approver, note=body.note)
        audit_note(
            request, request_id=row.id, requester=row.requester, state=row.state, expires_at=row.expires_at
        )
        return AccessRequestOut.model_validate(row)

    return answer_request


approve_request = _answer_route(
    grants.approve, "approve", "Approve someone else's request: the grant starts now"
)
deny_request = _answer_route(grants.deny, "deny", "Deny someone else's request")


@router.post("/access/requests/{request_id}/revoke", summary="End an approved grant now")
def revoke_request(
    request_id: RequestIdPath,
    request: Request,
    session: DbSession,
    caller: Principal = allow("access:approve"),
) -> AccessRequestOut:
    row = grants.revoke(session=session, request_id=request_id, actor=caller.name)
    audit_note(request, request_id=row.id, requester=row.requester)
    return AccessRequestOut.model_validate(row)


@router.get(
    "/audit", summary="The audit log, newest first, by principal, action, resource, outcome, time (admin)"
)
def list_audit(
    session: DbSession,
    principal: Annotated[str | None, Query(max_length=128, description="exactly this principal")] = None,
    actor: Annotated[str | None, Query(max_length=128, description="older name of principal")] = None,
    action: Annotated[str | None, Query(max_length=128, description="actions containing this text")] = None,
    resource: Annotated[str | None, Query(max_length=512, description="targets containing this text")] = None,
    outcome: Annotated[
        str | None, Query(max_length=32, description="success, denied, unauthenticated, error")
    ] = None,
    since: MomentQuery = None,
    until: MomentQuery = None,
    request_id: Annotated[str | None, Query(pattern=f"^{audit.REQUEST_ID_PATTERN.pattern}$")] = None,
    limit: LimitQuery = 100,
    _: Principal = allow("access:admin"),
) -> list[AuditRecordOut]:
    where = audit.AuditFilter.from_text(
        actor=principal or actor,
        action=action,
        resource=resource,
        outcome=outcome,
        request_id=request_id,
        since=since,
        until=until,
    )
    return [
        AuditRecordOut.model_validate(r)
        for r in audit.list_matching(session=session, where=where, limit=limit)
    ]


@router.get("/tokens", summary="Every token, newest first, never its secret (admin)")
def list_tokens(
    session: DbSession,
    principal: Annotated[str | None, Query(max_length=128, description="only this principal's")] = None,
    _: Principal = allow("access:admin"),
) -> list[TokenOut]:
    return [
        TokenOut.model_validate(t) for t in service.list_tokens(session=session, principal_name=principal)
    ]


@router.post("/tokens", status_code=201, summary="Issue a token, creating the principal if new (admin)")
def create_token(
    body: TokenCreate, request: Request, session: DbSession, _: Principal = allow("access:admin")
) -> TokenCreated:
    audit_note(request, principal=body.principal, role=body.role, expires_in=body.expires_in)
    principal, created = service.ensure_principal(session=session, name=body.principal, role=body.role)
    token, secret = service.create_token(
        session=session,
        principal_name=principal.name,
        description=body.description,
        expires_in=body.expiry(),
        permissions=body.permissions,
        model=body.model,
    )
    audit_note(request, token_id=token.id, prefix=token.prefix, principal_created=created)
    return TokenCreated(token=TokenOut.model_validate(token), secret=secret, principal_created=created)


@router.delete("/tokens/{token_id}", summary="Revoke a token (admin, or the token's own principal)")
def revoke_token(
    token_id: TokenIdPath,
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
) -> TokenOut:
    token = service.get_token_or_raise(session=session, token_id=token_id)
    if token.principal.name != principal.name:
        authorize.require(
            session=session, principal=principal, permission="access:admin", token=_token(request)
        )
    token = service.revoke_token(session=session, token_id=token_id)
    audit_note(request, principal=token.principal.name, prefix=token.prefix)
    return TokenOut.model_validate(token)


@router.get(
    "/audit/verify",
    summary="Walk the audit hash chain; 409 integrity_error naming the first altered or missing record (admin)",
)
def verify_audit(session: DbSession, _: Principal = allow("access:admin")) -> AuditVerifyOut:
    report = AuditVerifyOut.model_validate(audit.verify(session=session).to_dict())
    if not report.intact:
        raise IntegrityError(report.message, details=report.model_dump(mode="json"))
    return report

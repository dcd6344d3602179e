"""Access routes: who am I, the audit log, and issuing and revoking tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from mloncall.access import audit, service
from mloncall.access.models import Principal
from mloncall.access.schemas import (
    AuditRecordOut,
    AuditVerifyOut,
    TokenCreate,
    TokenCreated,
    TokenOut,
    WhoAmI,
)
from mloncall.api.deps import CurrentPrincipal, DbSession, LimitQuery, TokenIdPath, allow, audit_note
from mloncall.core.errors import IntegrityError

router = APIRouter(prefix="/api/v1", tags=["access"])


@router.get("/whoami", summary="The principal the token belongs to")
def whoami(principal: CurrentPrincipal) -> WhoAmI:
    return WhoAmI(name=principal.name, role=principal.role)


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
    since: Annotated[
        str | None, Query(max_length=64, description="an ISO time or a duration ago (2h)")
    ] = None,
    until: Annotated[
        str | None, Query(max_length=64, description="an ISO time or a duration ago (2h)")
    ] = None,
    request_id: Annotated[str | None, Query(pattern=f"^{audit.REQUEST_ID_PATTERN.pattern}$")] = None,
    limit: LimitQuery = 100,
    _: Principal = allow("audit.read"),
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
    _: Principal = allow("tokens.read"),
) -> list[TokenOut]:
    return [
        TokenOut.model_validate(t) for t in service.list_tokens(session=session, principal_name=principal)
    ]


@router.post("/tokens", status_code=201, summary="Issue a token, creating the principal if new (admin)")
def create_token(
    body: TokenCreate, request: Request, session: DbSession, _: Principal = allow("tokens.create")
) -> TokenCreated:
    audit_note(request, principal=body.principal, role=body.role, expires_in=body.expires_in)
    principal, created = service.ensure_principal(session=session, name=body.principal, role=body.role)
    token, secret = service.create_token(
        session=session, principal_name=principal.name, description=body.description, expires_in=body.expiry()
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
        service.require(principal, "tokens.delete")
    token = service.revoke_token(session=session, token_id=token_id)
    audit_note(request, principal=token.principal.name, prefix=token.prefix)
    return TokenOut.model_validate(token)


@router.get(
    "/audit/verify",
    summary="Walk the audit hash chain; 409 integrity_error naming the first altered or missing record (admin)",
)
def verify_audit(session: DbSession, _: Principal = allow("audit.read")) -> AuditVerifyOut:
    report = AuditVerifyOut.model_validate(audit.verify(session=session).to_dict())
    if not report.intact:
        raise IntegrityError(report.message, details=report.model_dump(mode="json"))
    return report

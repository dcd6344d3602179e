"""May this principal do this here, and why: casbin's decision with the chain of reasons and the fix.

`require` is what every route and every server-side command calls; `explain` is the same decision told in
full (`mloncall access explain`, and the body of every 403).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.access import roles
from mloncall.access.models import AccessRequest, ApiToken, Principal
from mloncall.access.permissions import GLOBAL, check_permission, scope_label, scope_of, scope_option
from mloncall.access.policy import AUTHORIZER, SubjectPolicy, Verdict
from mloncall.core.errors import PermissionDenied


@dataclass
class Explanation:
    """A decision and its reasons, as `access explain` prints it and a 403 carries it."""

    principal: str
    permission: str
    scope: str
    allowed: bool
    #: The line that decided, in casbin's words (`p, role:engineer, *, registry:write, allow`); None: no line
    #: allowed it.
    decided_by: str | None = None
    #: How the principal reaches the deciding line: `user:alice -> team:ml -> role:engineer`.
    via: list[str] = field(default_factory=list)
    #: The teams and roles the principal holds in this scope.
    considered: list[str] = field(default_factory=list)
    #: The break-glass grant that allowed it, if one did.
    grant: int | None = None
    grant_expires_at: dt.datetime | None = None
    reasons: list[str] = field(default_factory=list)
    #: The one command that would fix a denial, for whoever may run it.
    fix: str | None = None
    #: The short-term workaround the principal can file themselves.
    workaround: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["grant_expires_at"] = self.grant_expires_at.isoformat() if self.grant_expires_at else None
        return out


def _path(policy: SubjectPolicy, target: str, scope: str) -> tuple[list[str], int | None, dt.datetime | None]:
    """The chain of `g` links from the subject to target that holds in scope, and the grant on it if any."""
    links = [
        (line[1], line[2], line) for line in policy.lines if line[0] == "g" and line[3] in (GLOBAL, scope)
    ]
    queue: list[tuple[str, list[str], int | None, dt.datetime | None]] = [
        (policy.subject, [policy.subject], None, None)
    ]
    seen = {policy.subject}
    while queue:
        node, chain, grant, expires = queue.pop(0)
        if node == target:
            return chain, grant, expires
        for start, end, line in links:
            if start == node and end not in seen:
                seen.add(end)
                meta = policy.grants.get(line)
                queue.append((end, [*chain, end], meta[0] if meta else grant, meta[1] if meta else expires))
    return [policy.subject, target], None, None


def _narrowed_by_token(token: ApiToken | None, permission: str, scope: str) -> str | None:
    if token is None:
        return None
    if token.scope_permissions is not None and permission not in token.scope_permissions:
        return f"token {token.prefix}… is limited to {', '.join(token.scope_permissions)}"
    if token.scope_model is not None and scope != f"model:{token.scope_model}":
        return f"token {token.prefix}… is limited to model {token.scope_model}"
    return None


def decide(
    *,
    session: Session,
    principal: Principal,
    permission: str,
    model: str | None = None,
    token: ApiToken | None = None,
    version: int | None = None,
) -> tuple[bool, Verdict, SubjectPolicy]:
    """The bare decision (casbin's verdict), for the hot path; `explain` tells it in full. `version` is the
    policy version when the caller already read it in this request."""
    scope = scope_of(model)
    policy = AUTHORIZER.policy(session, principal.subject, version)
    verdict = policy.decide(permission, scope)
    allowed = (
        verdict.allowed and not principal.disabled and _narrowed_by_token(token, permission, scope) is None
    )
    return allowed, verdict, policy


def explain(
    *,
    session: Session,
    principal: Principal,
    permission: str,
    model: str | None = None,
    token: ApiToken | None = None,
) -> Explanation:
    """The decision on principal doing permission (on model, or globally), with every reason and the fix."""
    check_permission(permission)
    allowed, verdict, policy = decide(
        session=session, principal=principal, permission=permission, model=model, token=token
    )
    scope = scope_of(model)
    out = Explanation(principal=principal.name, permission=permission, scope=scope, allowed=allowed)
    out.considered = sorted(policy.roles(scope))
    held = ", ".join(out.considered) or "no team and no role"
    out.reasons.append(f"{principal.subject} holds {held} {scope_label(scope)}")
    if verdict.rule:
        out.decided_by = ", ".join(("p", *verdict.rule))
        out.via, out.grant, out.grant_expires_at = _path(policy, verdict.rule[0], scope)
    if principal.disabled:
        out.reasons.append(f"principal {principal.name!r} is disabled")
        out.fix = f"mloncall access enable {principal.name}"
        return out
    if verdict.allowed:
        _explain_allowed(out, token)
        return out
    if verdict.rule:  # a deny decided
        out.reasons.append(
            f"denied by an explicit deny ({out.decided_by}) reached through {' -> '.join(out.via)}: "
            "a deny wins over every role and grant"
        )
        who = verdict.rule[0].split(":", 1)[1]
        out.fix = f"mloncall access undeny {who} {permission}{scope_option(verdict.rule[1])}"
        return out
    _explain_missing(session, out, policy, principal)
    return out


def _explain_allowed(out: Explanation, token: ApiToken | None) -> None:
    out.reasons.append(f"allowed by {out.decided_by} through {' -> '.join(out.via)}")
    if out.grant is not None:
        until = out.grant_expires_at.isoformat() if out.grant_expires_at else "?"
        out.reasons.append(f"through break-glass grant #{out.grant}, which expires at {until}")
    narrowed = _narrowed_by_token(token, out.permission, out.scope)
    if narrowed is not None:
        out.allowed = False
        out.reasons.append(f"but {narrowed}")
        extra = f" --model {out.scope.removeprefix('model:')}" if out.scope != GLOBAL else ""
        out.fix = f"mloncall tokens create {out.principal} --permission {out.permission}{extra}"


def _explain_missing(session: Session, out: Explanation, policy: SubjectPolicy, principal: Principal) -> None:
    out.reasons.append(
        f"none of the roles {principal.subject} holds {scope_label(out.scope)} grants {out.permission}"
    )
    elsewhere = [
        s for s in sorted(policy.scopes) if s != out.scope and policy.decide(out.permission, s).allowed
    ]
    if elsewhere:
        out.reasons.append(
            f"scope mismatch: it may {out.permission} {', '.join(scope_label(s) for s in elsewhere)}, "
            f"not {scope_label(out.scope)}"
        )
    for expired in _expired_grants(session, principal, out.permission, out.scope):
        out.reasons.append(
            f"break-glass grant #{expired.id} ({expired.role} {scope_label(expired.scope)}) "
            f"{'was revoked' if expired.state == 'revoked' else 'expired'} at {expired.ended_at or expired.expires_at}"
        )
    role = roles.weakest_role_with(session=session, permission=out.permission)
    if role is None:
        out.reasons.append(f"no role grants {out.permission}: define one with `mloncall access role create`")
        return
    out.fix = f"mloncall access grant {principal.name} {role}{scope_option(out.scope)}"
    out.workaround = (
        f"mloncall access request {role}{scope_option(out.scope)} --for 2h --reason 'why you need it'"
    )


def _expired_grants(
    session: Session, principal: Principal, permission: str, scope: str
) -> list[AccessRequest]:
    """The principal's ended grants (newest first, at most 3) that would have allowed this."""
    rows = session.scalars(
        sa.select(AccessRequest)
        .where(
            AccessRequest.requester == principal.name,
            AccessRequest.state.in_(("expired", "revoked")),
            AccessRequest.scope.in_((GLOBAL, scope)),
        )
        .order_by(AccessRequest.id.desc())
        .limit(10)
    ).all()
    return [r for r in rows if permission in roles.role_permissions(session=session, name=r.role)][:3]


def require(
    *,
    session: Session,
    principal: Principal,
    permission: str,
    model: str | None = None,
    token: ApiToken | None = None,
    version: int | None = None,
) -> int | None:
    """Nothing if principal may do permission (on model), but the id of the break-glass grant it went through
    if one did; PermissionDenied carrying the explanation otherwise."""
    allowed, verdict, policy = decide(
        session=session, principal=principal, permission=permission, model=model, token=token, version=version
    )
    if allowed:
        return _path(policy, verdict.rule[0], scope_of(model))[1] if policy.grants else None
    why = explain(session=session, principal=principal, permission=permission, model=model, token=token)
    message = f"{principal.name} may not {permission} {scope_label(why.scope)}: {why.reasons[-1]}"
    if why.fix:
        message += f"; fix: `{why.fix}`"
    raise PermissionDenied(message, details=why.as_dict())

"""Access: principals and their roles, what each role may do, and API tokens (digests only)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.access import audit
from mloncall.access.models import ApiToken, Principal, TokenStatus
from mloncall.core import clock
from mloncall.core.errors import Conflict, InvalidInput, PermissionDenied, Unauthenticated
from mloncall.stores.db import find_one, find_one_or_raise, get_or_raise

# --- roles and permissions -------------------------------------------------------------------------------

ADMIN = "admin"
OPERATOR = "operator"
VIEWER = "viewer"
#: Weakest first: each role may do everything the roles before it may do.
ROLES = (VIEWER, OPERATOR, ADMIN)

#: Resources that only an admin touches, whatever the verb.
_ADMIN_RESOURCES = frozenset({"tokens", "principals", "audit", "access"})
#: What an action's last word (`models.alias` -> `alias`) needs; an action not listed here needs admin.
_VERB_ROLE: dict[str, str] = {
    **dict.fromkeys(("read", "list", "get", "show", "view", "verify", "whoami", "history"), VIEWER),
    **dict.fromkeys(
        (
            "write", "create", "update", "set", "alias", "unalias", "register", "upload", "validate",
            "deploy", "train", "retrain", "promote", "rollback", "abort", "pause", "resume", "run",
            "ack", "acknowledge", "resolve", "silence", "assign", "note", "evaluate",
            # incidents: what an incident's commander and responders do while it is worked
            "open", "handoff", "bridge", "escalate", "mitigate", "close", "merge", "unmerge", "link", "detach",
            "postmortem", "override",
        ),
        OPERATOR,
    ),
    **dict.fromkeys(("delete", "manage", "admin", "disable"), ADMIN),
}  # fmt: skip


def required_role(action: str) -> str:
    """The weakest role allowed to do action (`resource.verb`, `resource:verb`, a verb); unknown: admin."""
    parts = [p for p in re.split(r"[.:/ ]", action.strip().lower()) if p]
    if not parts:
        raise ValueError("empty action")
    if parts[0] in _ADMIN_RESOURCES:
        return ADMIN
    return _VERB_ROLE.get(parts[-1], ADMIN)


def allows(role: str, action: str) -> bool:
    """Whether role may do action."""
    if role not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(required_role(action))


def require(principal: Principal, action: str) -> None:
    """Raise PermissionDenied naming the role and the action unless principal may do action."""
    if principal.disabled:
        raise PermissionDenied(f"principal {principal.name!r} is disabled")
    if not allows(principal.role, action):
        needed = required_role(action)
        raise PermissionDenied(
            f"role {principal.role!r} may not {action!r}: it needs the {needed!r} role"
            f" (principal {principal.name!r})",
            details={"principal": principal.name, "role": principal.role, "action": action, "needs": needed},
        )


def check_role(role: str) -> str:
    """Return role if it is one of the roles, else raise InvalidInput listing them."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


# --- principals ------------------------------------------------------------------------------------------

_PRINCIPAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


def check_principal_name(name: str) -> str:
    """Return name if it is a valid principal name, else raise InvalidInput saying what is allowed."""
    if not isinstance(name, str) or not _PRINCIPAL.match(name):
        raise InvalidInput(
            f"invalid principal name {name!r}: use 1-128 letters, digits, '.', '_', '@', '+' or '-', "
            "starting with a letter or digit"
        )
    return name


def get_principal(*, session: Session, name: str) -> Principal | None:
    """The principal called name, or None."""
    return find_one(session, Principal, name=name)


def get_principal_or_raise(*, session: Session, name: str) -> Principal:
    """The principal called name; NotFound names it otherwise."""
    return find_one_or_raise(session, Principal, what="principal", name=name)


def list_principals(*, session: Session) -> Sequence[Principal]:
    """Every principal, by name."""
    return session.scalars(sa.select(Principal).order_by(Principal.name)).all()


def create_principal(*, session: Session, name: str, role: str) -> Principal:
    """A new principal with a role; Conflict if the name is taken."""
    check_principal_name(name)
    check_role(role)
    if get_principal(session=session, name=name) is not None:
        raise Conflict(f"principal {name!r} already exists")
    principal = Principal(name=name, role=role, created_at=clock.now(), disabled=False)
    session.add(principal)
    session.flush()
    return principal


def ensure_principal(*, session: Session, name: str, role: str | None = None) -> tuple[Principal, bool]:
    """The principal called name, created with role (default viewer) if new; True if it was created.

    An existing principal keeps its role: asking for a different one is a Conflict, not a silent change.
    """
    principal = get_principal(session=session, name=name)
    if principal is None:
        return create_principal(session=session, name=name, role=role or VIEWER), True
    if role is not None and role != principal.role:
        check_role(role)
        raise Conflict(
            f"principal {name!r} already exists with role {principal.role!r}; its role is not changed here"
        )
    return principal, False


def disable_principal(*, session: Session, name: str) -> Principal:
    """Disable a principal: its tokens stop working at once."""
    principal = get_principal_or_raise(session=session, name=name)
    principal.disabled = True
    session.flush()
    return principal


# --- tokens ----------------------------------------------------------------------------------------------

TOKEN_PREFIX = "mlo_"
_SHOWN_CHARS = 12  # "mlo_" + 8 characters: enough to tell tokens apart in a list, useless to an attacker


def token_digest(secret: str) -> str:
    """The sha256 hex digest under which a token is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def token_status(token: ApiToken, at: dt.datetime | None = None) -> TokenStatus:
    """`active`, `revoked` or `expired`."""
    return token.status_at(at or clock.now())


def create_token(
    *, session: Session, principal_name: str, description: str = "", expires_in: dt.timedelta | None = None
) -> tuple[ApiToken, str]:
    """A new token for an existing principal and its secret, which is returned here once and never stored."""
    principal = get_principal_or_raise(session=session, name=principal_name)
    if expires_in is not None and expires_in <= dt.timedelta(0):
        raise InvalidInput(f"a token must expire in the future, not in {expires_in}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    token = ApiToken(
        principal_id=principal.id,
        digest=token_digest(secret),
        prefix=secret[:_SHOWN_CHARS],
        description=description,
        created_at=now,
        expires_at=now + expires_in if expires_in is not None else None,
    )
    token.principal = principal
    session.add(token)
    session.flush()
    return token, secret


def get_token_or_raise(*, session: Session, token_id: int) -> ApiToken:
    """The token with this id; NotFound otherwise."""
    return get_or_raise(session, ApiToken, token_id, what="token")


def list_tokens(*, session: Session, principal_name: str | None = None) -> Sequence[ApiToken]:
    """Tokens, newest first, optionally of one principal."""
    stmt = sa.select(ApiToken).join(Principal).order_by(ApiToken.id.desc())
    if principal_name is not None:
        stmt = stmt.where(Principal.name == principal_name)
    return session.scalars(stmt).all()


def revoke_token(*, session: Session, token_id: int) -> ApiToken:
    """Revoke a token (idempotent: revoking twice keeps the first time).

    Conflict for the last active token of an enabled admin: without it nobody could issue tokens over the
    API again, and recovery would need shell access to the installation.
    """
    token = get_token_or_raise(session=session, token_id=token_id)
    if token.revoked_at is None and _is_last_admin_token(session=session, token=token):
        raise Conflict(
            f"token {token.id} ({token.prefix}…) is the last active admin token: create another admin token "
            "first (`mloncall tokens create NAME --role admin`), then revoke this one"
        )
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        session.flush()
    return token


def _is_last_admin_token(*, session: Session, token: ApiToken) -> bool:
    principal = token.principal
    if principal.role != ADMIN or principal.disabled or token.status != "active":
        return False
    now = clock.now()
    others = session.scalars(
        sa.select(ApiToken)
        .join(Principal)
        .where(
            Principal.role == ADMIN,
            Principal.disabled.is_(False),
            ApiToken.id != token.id,
            ApiToken.revoked_at.is_(None),
            sa.or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
        )
        .limit(1)
    ).first()
    return others is None


def identify(*, session: Session, secret: str) -> ApiToken | None:
    """The token a secret belongs to, whatever its state, without touching it; None if unknown."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    return session.scalars(sa.select(ApiToken).where(ApiToken.digest == token_digest(secret))).one_or_none()


def authenticate(*, session: Session, secret: str) -> Principal:
    """The principal a token secret belongs to; Unauthenticated says if it is unknown, revoked or expired."""
    token = identify(session=session, secret=secret)
    if token is None:
        raise Unauthenticated("unknown token: it was never issued by this installation")
    now = clock.now()
    if token.revoked_at is not None:
        raise Unauthenticated(f"token {token.prefix}… was revoked at {token.revoked_at.isoformat()}")
    if token.expires_at is not None and token.expires_at <= now:
        raise Unauthenticated(f"token {token.prefix}… expired at {token.expires_at.isoformat()}")
    if token.principal.disabled:
        raise Unauthenticated(f"principal {token.principal.name!r} is disabled")
    token.last_used_at = now
    session.flush()
    return token.principal


def bootstrap_admin(*, session: Session) -> str | None:
    """With no admin yet: create principal `admin` with an admin token and return its secret; else None."""
    if session.scalar(sa.select(sa.func.count()).select_from(Principal).where(Principal.role == ADMIN)):
        return None
    principal, _ = ensure_principal(session=session, name="admin", role=ADMIN)
    token, secret = create_token(
        session=session, principal_name=principal.name, description="created by init"
    )
    audit.record(
        session=session,
        actor="mloncall init",
        action="access.bootstrap_admin",
        target=f"principal:{principal.name}",
        outcome="success",
        detail={"token_id": token.id, "prefix": token.prefix},
    )
    return secret

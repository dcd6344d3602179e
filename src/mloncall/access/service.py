"""Access: principals (users, service accounts, teams), team membership, dashboard passwords, and API tokens
(digests only, looked up by prefix, compared in constant time)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence

import argon2
import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.access import audit, roles
from mloncall.access.models import ApiToken, PolicyLine, Principal, TokenStatus
from mloncall.access.permissions import ADMIN, GLOBAL, VIEWER, check_permission, check_scope
from mloncall.core import clock
from mloncall.core.errors import Conflict, InvalidInput, Unauthenticated
from mloncall.stores.db import find_one, find_one_or_raise, get_or_raise

#: argon2id with the library's defaults (RFC 9106's second recommended option).
_HASHER = argon2.PasswordHasher()

# --- principals ------------------------------------------------------------------------------------------

_PRINCIPAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
KINDS = ("user", "service", "team")


def check_principal_name(name: str) -> str:
    """Return name if it is a valid principal name, else raise InvalidInput saying what is allowed."""
    if not isinstance(name, str) or not _PRINCIPAL.match(name):
        raise InvalidInput(
            f"invalid principal name {name!r}: use 1-128 letters, digits, '.', '_', '@', '+' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_kind(kind: str) -> str:
    """Return kind if it is `user`, `service` or `team`, else InvalidInput."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown principal kind {kind!r}: use one of {', '.join(KINDS)}")
    return kind


def get_principal(*, session: Session, name: str) -> Principal | None:
    """The principal called name, or None."""
    return find_one(session, Principal, name=name)


def get_principal_or_raise(*, session: Session, name: str) -> Principal:
    """The principal called name; NotFound names it otherwise."""
    return find_one_or_raise(session, Principal, what="principal", name=name)


def list_principals(*, session: Session, kind: str | None = None) -> Sequence[Principal]:
    """Every principal (or every one of a kind), by name."""
    stmt = sa.select(Principal).order_by(Principal.name)
    if kind is not None:
        stmt = stmt.where(Principal.kind == check_kind(kind))
    return session.scalars(stmt).all()


def create_principal(
    *,
    session: Session,
    name: str,
    role: str | None = None,
    kind: str = "user",
    description: str = "",
    actor: str = "",
) -> Principal:
    """A new principal, holding role everywhere if one is given; Conflict if the name is taken."""
    check_principal_name(name)
    check_kind(kind)
    if role is not None:
        role = roles.canonical(role)
        roles.get_role_or_raise(session=session, name=role)
    if get_principal(session=session, name=name) is not None:
        raise Conflict(f"principal {name!r} already exists")
    principal = Principal(
        name=name, kind=kind, description=description, created_at=clock.now(), disabled=False
    )
    session.add(principal)
    session.flush()
    if role is not None:
        roles.bind(session=session, principal=principal, role=role, scope=GLOBAL, actor=actor)
    return principal


def ensure_principal(*, session: Session, name: str, role: str | None = None) -> tuple[Principal, bool]:
    """The principal called name, created holding role (default viewer) everywhere if new; True if created.

    An existing principal keeps its roles: asking for one it does not hold everywhere is a Conflict, not a
    silent grant (`mloncall access grant` gives a role).
    """
    principal = get_principal(session=session, name=name)
    if principal is None:
        return create_principal(session=session, name=name, role=role or VIEWER), True
    if role is not None:
        role = roles.canonical(role)
        if role not in roles.bound_roles(session=session, principal=principal, scope=GLOBAL):
            raise Conflict(
                f"principal {name!r} already exists without the {role!r} role; give it with "
                f"`mloncall access grant {name} {role}`"
            )
    return principal, False


def disable_principal(*, session: Session, name: str) -> Principal:
    """Disable a principal: its tokens stop working at once."""
    principal = get_principal_or_raise(session=session, name=name)
    principal.disabled = True
    session.flush()
    return principal


def enable_principal(*, session: Session, name: str) -> Principal:
    """Enable a disabled principal again."""
    principal = get_principal_or_raise(session=session, name=name)
    principal.disabled = False
    session.flush()
    return principal


def add_member(*, session: Session, team: str, member: str, actor: str = "") -> bool:
    """Put a user or a service account in a team; False if it already was."""
    group = get_principal_or_raise(session=session, name=team)
    person = get_principal_or_raise(session=session, name=member)
    if group.kind != "team":
        raise InvalidInput(f"{team!r} is a {group.kind}, not a team")
    if person.kind == "team":
        raise InvalidInput(f"{member!r} is a team: teams do not nest, add its members instead")
    return roles.add_line(
        session=session, ptype="g", values=(person.subject, group.subject, GLOBAL), actor=actor
    )


def remove_member(*, session: Session, team: str, member: str) -> bool:
    """Take a member out of a team; False if it was not in it."""
    group = get_principal_or_raise(session=session, name=team)
    person = get_principal_or_raise(session=session, name=member)
    return roles.remove_line(session=session, ptype="g", values=(person.subject, group.subject, GLOBAL))


def teams_of(*, session: Session, principal: Principal) -> list[str]:
    """The teams a principal belongs to, by name."""
    subjects = session.scalars(
        sa.select(PolicyLine.v1).where(PolicyLine.ptype == "g", PolicyLine.v0 == principal.subject)
    ).all()
    return sorted(s.removeprefix("team:") for s in subjects if s.startswith("team:"))


def members_of(*, session: Session, team: str) -> list[str]:
    """The members of a team, by name."""
    group = get_principal_or_raise(session=session, name=team)
    subjects = session.scalars(
        sa.select(PolicyLine.v0).where(PolicyLine.ptype == "g", PolicyLine.v1 == group.subject)
    ).all()
    return sorted(s.split(":", 1)[1] for s in subjects)


def set_password(*, session: Session, name: str, password: str) -> Principal:
    """Set a user's dashboard password, stored as its argon2id hash; refuse a short one."""
    principal = get_principal_or_raise(session=session, name=name)
    if principal.kind != "user":
        raise InvalidInput(f"{name!r} is a {principal.kind}: only users log in to the dashboard")
    if len(password) < 12:
        raise InvalidInput("a password needs at least 12 characters")
    principal.password_hash = _HASHER.hash(password)
    session.flush()
    return principal


def check_password(*, session: Session, name: str, password: str) -> Principal:
    """The user whose password this is; Unauthenticated (one message for all causes) otherwise."""
    principal = get_principal(session=session, name=name)
    refused = Unauthenticated("wrong user name or password")
    if principal is None or principal.password_hash is None:
        _HASHER.hash(password)  # the same work as a real check, so timing tells no user names
        raise refused
    try:
        _HASHER.verify(principal.password_hash, password)
    except argon2.exceptions.VerificationError:
        raise refused from None
    if principal.disabled:
        raise Unauthenticated(f"principal {name!r} is disabled")
    if _HASHER.check_needs_rehash(principal.password_hash):
        principal.password_hash = _HASHER.hash(password)
        session.flush()
    return principal


def whoami(*, session: Session, name: str, token: ApiToken | None = None) -> dict[str, object]:
    """A principal as it sees itself: kind, roles (`role` everywhere, `role@model` on one), teams, token."""
    principal = get_principal_or_raise(session=session, name=name)
    bound = [
        line.v1.removeprefix("role:") + ("" if line.v2 == GLOBAL else "@" + line.v2.removeprefix("model:"))
        for line in roles.bindings(session=session, principal=principal)
        if line.ptype == "g" and line.v1.startswith("role:")
    ]
    shown = None
    if token is not None:
        shown = {
            "prefix": token.prefix,
            "expires_at": token.expires_at,
            "permissions": token.scope_permissions,
            "model": token.scope_model,
        }
    return {
        "name": principal.name,
        "kind": principal.kind,
        "roles": sorted(set(bound)),
        "teams": teams_of(session=session, principal=principal),
        "token": shown,
    }


# --- tokens ----------------------------------------------------------------------------------------------

TOKEN_PREFIX = "mlo_"
_SHOWN_CHARS = 12  # "mlo_" + 8 characters: enough to tell tokens apart in a list, useless to an attacker
_SECRET = re.compile(r"^mlo_[A-Za-z0-9_-]{43}$")


def token_digest(secret: str) -> str:
    """The sha256 hex digest under which a token is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def token_status(token: ApiToken, at: dt.datetime | None = None) -> TokenStatus:
    """`active`, `revoked` or `expired`."""
    return token.status_at(at or clock.now())


def create_token(
    *,
    session: Session,
    principal_name: str,
    description: str = "",
    expires_in: dt.timedelta | None = None,
    permissions: Sequence[str] | None = None,
    model: str | None = None,
    rotated_from: int | None = None,
) -> tuple[ApiToken, str]:
    """A new token for an existing principal and its secret, which is returned here once and never stored.

    `permissions` and `model` narrow the token below its owner's roles: it can never do more than its owner.
    """
    principal = get_principal_or_raise(session=session, name=principal_name)
    if principal.kind == "team":
        raise Conflict(f"{principal_name!r} is a team: tokens belong to users and service accounts")
    if expires_in is not None and expires_in <= dt.timedelta(0):
        raise InvalidInput(f"a token must expire in the future, not in {expires_in}")
    if permissions is not None:
        permissions = [check_permission(p) for p in dict.fromkeys(permissions)]
        if not permissions:
            raise InvalidInput("a token scoped to no permission could do nothing: name at least one")
    if model is not None:
        model = check_scope(model).removeprefix("model:")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    token = ApiToken(
        principal_id=principal.id,
        digest=token_digest(secret),
        prefix=secret[:_SHOWN_CHARS],
        description=description,
        created_at=now,
        expires_at=now + expires_in if expires_in is not None else None,
        scope_permissions=permissions,
        scope_model=model,
        rotated_from=rotated_from,
    )
    token.principal = principal
    session.add(token)
    session.flush()
    return token, secret


def rotate_token(
    *, session: Session, token_id: int, expires_in: dt.timedelta | None = None
) -> tuple[ApiToken, str, ApiToken]:
    """Replace a token with a new one of the same owner, scope and description, and revoke the old one.

    The new token keeps the old one's remaining lifetime unless `expires_in` gives another.
    """
    old = get_token_or_raise(session=session, token_id=token_id)
    if old.status != "active":
        raise Conflict(f"token {old.id} ({old.prefix}…) is {old.status}: only an active token is rotated")
    if expires_in is None and old.expires_at is not None:
        expires_in = old.expires_at - clock.now()
    new, secret = create_token(
        session=session,
        principal_name=old.principal.name,
        description=old.description,
        expires_in=expires_in,
        permissions=old.scope_permissions,
        model=old.scope_model,
        rotated_from=old.id,
    )
    old.revoked_at = clock.now()
    session.flush()
    return new, secret, old


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


def _admin_names(session: Session) -> set[str]:
    subjects = session.scalars(
        sa.select(PolicyLine.v0).where(
            PolicyLine.ptype == "g", PolicyLine.v1 == f"role:{ADMIN}", PolicyLine.v2 == GLOBAL,
            PolicyLine.request_id.is_(None),
        )
    ).all()  # fmt: skip
    return {s.split(":", 1)[1] for s in subjects}


def _is_last_admin_token(*, session: Session, token: ApiToken) -> bool:
    principal = token.principal
    admins = _admin_names(session)
    if (
        principal.name not in admins
        or principal.disabled
        or token.status != "active"
        or token.scope_permissions
    ):
        return False
    now = clock.now()
    others = session.scalars(
        sa.select(ApiToken)
        .join(Principal)
        .where(
            Principal.name.in_(admins),
            Principal.disabled.is_(False),
            ApiToken.id != token.id,
            ApiToken.revoked_at.is_(None),
            ApiToken.scope_permissions.is_(None),
            sa.or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
        )
        .limit(1)
    ).first()
    return others is None


def identify(*, session: Session, secret: str) -> ApiToken | None:
    """The token a secret belongs to, whatever its state, without touching it; None if unknown.

    Looked up by its prefix, then its digest compared in constant time, so the lookup's timing says nothing
    about how much of a guessed secret was right.
    """
    if not _SECRET.match(secret):
        return None
    digest = token_digest(secret)
    candidates = session.scalars(sa.select(ApiToken).where(ApiToken.prefix == secret[:_SHOWN_CHARS])).all()
    found = None
    for token in candidates:
        if hmac.compare_digest(token.digest, digest):
            found = token
    return found


def authenticate_token(*, session: Session, secret: str) -> ApiToken:
    """The token a secret is; Unauthenticated says if it is malformed, unknown, revoked or expired."""
    if not secret.startswith(TOKEN_PREFIX):
        raise Unauthenticated(f"not an mloncall token: tokens start with {TOKEN_PREFIX!r}")
    if not _SECRET.match(secret):
        raise Unauthenticated(
            f"malformed token: {TOKEN_PREFIX!r} and 43 characters of A-Z, a-z, 0-9, '_' or '-'"
        )
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
    return token


def authenticate(*, session: Session, secret: str) -> Principal:
    """The principal a token secret belongs to (`authenticate_token`)."""
    return authenticate_token(session=session, secret=secret).principal


def bootstrap_admin(*, session: Session) -> str | None:
    """With no admin yet: create principal `admin` with an admin token and return its secret; else None.

    There is never a default password: the first admin gets a token, printed once.
    """
    if roles.admins_exist(session=session):
        return None
    principal = get_principal(session=session, name="admin")
    if principal is None:
        principal = create_principal(session=session, name="admin", role=ADMIN, actor="mloncall init")
    else:
        roles.bind(session=session, principal=principal, role=ADMIN, actor="mloncall init")
        principal.disabled = False
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

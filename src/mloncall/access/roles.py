"""Roles and the policy lines that give them: define a role, bind it to a principal or a team in a scope,
deny a permission outright. Every change bumps the policy version in the same transaction."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.access.models import PolicyLine, Principal, Role
from mloncall.access.permissions import (
    BUILTIN_NAMES,
    BUILTIN_ROLES,
    GLOBAL,
    PERMISSIONS,
    RENAMED_ROLES,
    check_permission,
    check_scope,
)
from mloncall.access.policy import bump_version
from mloncall.core import clock
from mloncall.core.errors import Conflict, InvalidInput, NotFound
from mloncall.stores.db import find_one

_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def canonical(name: str) -> str:
    """A role's name as the policy knows it (`operator`, the older name, is `oncall`)."""
    return RENAMED_ROLES.get(name, name)


def check_role_name(name: str) -> str:
    if not isinstance(name, str) or not _ROLE_NAME.match(name):
        raise InvalidInput(
            f"invalid role name {name!r}: use 1-64 lowercase letters, digits, '_' or '-', starting with a letter"
        )
    return name


def get_role_or_raise(*, session: Session, name: str) -> Role:
    """The role called name; NotFound lists the roles otherwise."""
    role = find_one(session, Role, name=canonical(name))
    if role is None:
        known = ", ".join(r.name for r in list_roles(session=session))
        raise NotFound(f"unknown role {name!r}: use one of {known}")
    return role


def list_roles(*, session: Session) -> Sequence[Role]:
    """Every role, built-in ones first, weakest first."""
    rows = session.scalars(sa.select(Role)).all()
    order = {name: i for i, name in enumerate(BUILTIN_NAMES)}
    return sorted(rows, key=lambda r: (order.get(r.name, len(order)), r.name))


def role_permissions(*, session: Session, name: str) -> list[str]:
    """The permissions role grants, its included roles' among them."""
    seen: set[str] = set()
    permissions: set[str] = set()
    pending = [f"role:{canonical(name)}"]
    while pending:
        subject = pending.pop()
        if subject in seen:
            continue
        seen.add(subject)
        for line in session.scalars(sa.select(PolicyLine).where(PolicyLine.v0 == subject)):
            if line.ptype == "p" and line.v3 == "allow":
                permissions.add(line.v2)
            elif line.ptype == "g" and line.v1.startswith("role:"):
                pending.append(line.v1)
    return sorted(permissions, key=list(PERMISSIONS).index)


def weakest_role_with(*, session: Session, permission: str) -> str | None:
    """The weakest built-in role granting permission, else the first defined role that does."""
    for builtin in BUILTIN_ROLES:
        if permission in role_permissions(session=session, name=builtin.name):
            return builtin.name
    for role in list_roles(session=session):
        if permission in role_permissions(session=session, name=role.name):
            return role.name
    return None


def define_role(
    *,
    session: Session,
    name: str,
    permissions: Sequence[str],
    includes: Sequence[str] = (),
    description: str = "",
    max_grant: dt.timedelta | None = None,
    actor: str = "",
) -> Role:
    """A new role of its own permissions and the roles it includes; Conflict if the name is taken."""
    check_role_name(name)
    if find_one(session, Role, name=name) is not None or name in RENAMED_ROLES:
        raise Conflict(f"role {name!r} already exists")
    if not permissions and not includes:
        raise InvalidInput(f"role {name!r} needs at least one permission or an included role")
    for permission in permissions:
        check_permission(permission)
    for included in includes:
        get_role_or_raise(session=session, name=included)
    if max_grant is not None and max_grant <= dt.timedelta(0):
        raise InvalidInput("a role's longest grant must be positive")
    role = Role(
        name=name,
        description=description,
        builtin=False,
        max_grant_seconds=int(max_grant.total_seconds()) if max_grant is not None else None,
        created_at=clock.now(),
    )
    session.add(role)
    for permission in dict.fromkeys(permissions):
        add_line(
            session=session, ptype="p", values=(f"role:{name}", GLOBAL, permission, "allow"), actor=actor
        )
    for included in dict.fromkeys(includes):
        add_line(
            session=session,
            ptype="g",
            values=(f"role:{name}", f"role:{canonical(included)}", GLOBAL),
            actor=actor,
        )
    session.flush()
    return role


def delete_role(*, session: Session, name: str) -> None:
    """Remove a role defined here, with every binding of it; built-in roles stay."""
    role = get_role_or_raise(session=session, name=name)
    if role.builtin:
        raise Conflict(f"{role.name!r} is a built-in role and cannot be deleted")
    subject = f"role:{role.name}"
    session.execute(sa.delete(PolicyLine).where(sa.or_(PolicyLine.v0 == subject, PolicyLine.v1 == subject)))
    session.delete(role)
    bump_version(session)


# --- lines -----------------------------------------------------------------------------------------------


def _matching(ptype: str, values: Sequence[str]) -> sa.ColumnElement[bool]:
    padded = [*values, "", "", "", ""][:4]
    return sa.and_(
        PolicyLine.ptype == ptype, *(getattr(PolicyLine, f"v{i}") == v for i, v in enumerate(padded))
    )


def add_line(
    *,
    session: Session,
    ptype: str,
    values: Sequence[str],
    actor: str = "",
    expires_at: dt.datetime | None = None,
    request_id: int | None = None,
) -> bool:
    """Add one policy line unless a lasting copy of it is there; False if it was."""
    if request_id is None:
        lasting = session.scalar(
            sa.select(PolicyLine.id).where(_matching(ptype, values), PolicyLine.request_id.is_(None)).limit(1)
        )
        if lasting is not None:
            return False
    padded = [*values, "", "", "", ""][:4]
    session.add(
        PolicyLine(
            ptype=ptype, v0=padded[0], v1=padded[1], v2=padded[2], v3=padded[3],
            expires_at=expires_at, request_id=request_id, created_at=clock.now(), created_by=actor,
        )
    )  # fmt: skip
    bump_version(session)
    return True


def remove_line(*, session: Session, ptype: str, values: Sequence[str]) -> bool:
    """Remove a lasting policy line (not a grant's); False if there was none."""
    result = session.execute(
        sa.delete(PolicyLine).where(_matching(ptype, values), PolicyLine.request_id.is_(None))
    )
    removed = bool(getattr(result, "rowcount", 0))
    if removed:
        bump_version(session)
    return removed


# --- bindings and denies ---------------------------------------------------------------------------------


def bind(*, session: Session, principal: Principal, role: str, scope: str = GLOBAL, actor: str = "") -> bool:
    """Give principal role in scope (`*` or `model:NAME`); False if it already held it there."""
    name = get_role_or_raise(session=session, name=role).name
    return add_line(
        session=session,
        ptype="g",
        values=(principal.subject, f"role:{name}", check_scope(scope)),
        actor=actor,
    )


def unbind(*, session: Session, principal: Principal, role: str, scope: str = GLOBAL) -> bool:
    """Take role in scope from principal; False if it did not hold it there."""
    name = get_role_or_raise(session=session, name=role).name
    return remove_line(
        session=session, ptype="g", values=(principal.subject, f"role:{name}", check_scope(scope))
    )


def bound_roles(*, session: Session, principal: Principal, scope: str | None = None) -> list[str]:
    """The roles bound to principal itself (not through a team), in scope or in any scope."""
    stmt = sa.select(PolicyLine).where(
        PolicyLine.ptype == "g", PolicyLine.v0 == principal.subject, PolicyLine.v1.startswith("role:")
    )
    now = clock.now()
    lines = [
        line
        for line in session.scalars(stmt)
        if (scope is None or line.v2 == scope) and (line.expires_at is None or line.expires_at > now)
    ]
    return sorted({line.v1.removeprefix("role:") for line in lines})


def bindings(*, session: Session, principal: Principal) -> list[PolicyLine]:
    """Every live line about principal itself: its roles, teams and denies."""
    now = clock.now()
    return [
        line
        for line in session.scalars(
            sa.select(PolicyLine).where(PolicyLine.v0 == principal.subject).order_by(PolicyLine.id)
        )
        if line.expires_at is None or line.expires_at > now
    ]


def deny(
    *, session: Session, principal: Principal, permission: str, scope: str = GLOBAL, actor: str = ""
) -> bool:
    """Deny principal permission in scope, whatever its roles allow; False if it already was."""
    values = (principal.subject, check_scope(scope), check_permission(permission), "deny")
    return add_line(session=session, ptype="p", values=values, actor=actor)


def undeny(*, session: Session, principal: Principal, permission: str, scope: str = GLOBAL) -> bool:
    """Lift a deny; False if there was none."""
    values = (principal.subject, check_scope(scope), check_permission(permission), "deny")
    return remove_line(session=session, ptype="p", values=values)


def admins_exist(*, session: Session) -> bool:
    """Whether any enabled principal holds the admin role everywhere, directly."""
    subjects = session.scalars(
        sa.select(PolicyLine.v0).where(
            PolicyLine.ptype == "g", PolicyLine.v1 == "role:admin", PolicyLine.v2 == GLOBAL,
            PolicyLine.request_id.is_(None),
        )
    ).all()  # fmt: skip
    names = [s.split(":", 1)[1] for s in subjects]
    return bool(names) and bool(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(Principal)
            .where(Principal.name.in_(names), Principal.disabled.is_(False))
        )
    )

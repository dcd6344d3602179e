"""Principals, roles, tokens and the audit log, through the access service."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest
import sqlalchemy as sa

from mloncall.access import audit
from mloncall.access import service as access
from mloncall.access.models import ApiToken
from mloncall.core import clock
from mloncall.core.durations import parse_duration
from mloncall.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from mloncall.stores.context import Context


def test_a_token_is_stored_only_as_its_digest_and_a_short_prefix(any_ctx: Context) -> None:
    with any_ctx.db.session() as session:
        access.create_principal(session=session, name="alice", role="viewer")
        token, secret = access.create_token(session=session, principal_name="alice", description="laptop")
    assert re.fullmatch(r"mlo_[A-Za-z0-9_-]{43}", secret)
    with any_ctx.db.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM api_tokens")).mappings().all()
    [row] = rows
    assert row["digest"] == hashlib.sha256(secret.encode()).hexdigest()
    assert row["prefix"] == secret[:12] == token.prefix
    assert not any(secret in str(value) for value in row.values()), "the secret itself is stored nowhere"
    with any_ctx.db.session() as session:
        assert access.authenticate(session=session, secret=secret).name == "alice"


def test_authenticate_refuses_unknown_revoked_expired_and_disabled_with_distinct_messages(
    any_ctx: Context, frozen_clock: clock.FrozenClock
) -> None:
    with any_ctx.db.session() as session:
        access.create_principal(session=session, name="bob", role="operator")
        access.create_principal(session=session, name="carol", role="viewer")
        revoked, revoked_secret = access.create_token(session=session, principal_name="bob")
        _, expiring = access.create_token(
            session=session, principal_name="bob", expires_in=dt.timedelta(days=1)
        )
        _, carols = access.create_token(session=session, principal_name="carol")
        access.revoke_token(session=session, token_id=revoked.id)
        access.disable_principal(session=session, name="carol")
    frozen_clock.advance(days=1)

    cases = {
        "mlo_" + "n" * 43: r"^unknown token",
        "mlo_never-issued": r"^malformed token",
        "not even the format": r"^not an mloncall token",
        revoked_secret: r"was revoked at 2026-01-01T00:00:00\+00:00$",
        expiring: r"expired at 2026-01-02T00:00:00\+00:00$",
        carols: r"principal 'carol' is disabled",
    }
    for secret, message in cases.items():
        with any_ctx.db.session() as session, pytest.raises(Unauthenticated, match=message):
            access.authenticate(session=session, secret=secret)


def test_authenticate_records_the_last_use(ctx: Context, frozen_clock: clock.FrozenClock) -> None:
    with ctx.db.session() as session:
        access.create_principal(session=session, name="dave", role="viewer")
        token, secret = access.create_token(session=session, principal_name="dave")
        assert token.last_used_at is None
    frozen_clock.advance(minutes=5)
    with ctx.db.session() as session:
        access.authenticate(session=session, secret=secret)
    with ctx.db.session() as session:
        assert (
            access.get_token_or_raise(session=session, token_id=token.id).last_used_at == frozen_clock.current
        )


def test_bootstrap_creates_the_admin_once(any_ctx: Context) -> None:
    with any_ctx.db.session() as session:
        secret = access.bootstrap_admin(session=session)
    assert secret is not None
    with any_ctx.db.session() as session:
        assert access.bootstrap_admin(session=session) is None
        assert access.whoami(session=session, name=access.authenticate(session=session, secret=secret).name)[
            "roles"
        ] == ["admin"]
        assert [p.name for p in access.list_principals(session=session)] == ["admin"]
        assert access.whoami(session=session, name="admin")["roles"] == ["admin"]
        assert len(access.list_tokens(session=session)) == 1
        [entry] = audit.list_audit(session=session)
        assert (entry.action, entry.outcome) == ("access.bootstrap_admin", "success")
        assert secret not in str(entry.detail)


@pytest.mark.parametrize(
    ("permission", "viewer", "engineer", "oncall", "admin"),
    [
        ("registry:read", True, True, True, True),
        ("dashboard:view", True, True, True, True),
        ("registry:write", False, True, True, True),
        ("runbooks:run", False, True, True, True),
        ("deploy:execute", False, False, True, True),
        ("incidents:manage", False, False, True, True),
        ("access:approve", False, False, False, True),
        ("access:admin", False, False, False, True),
    ],
)
def test_built_in_roles_allow_what_they_should(
    ctx: Context, permission: str, viewer: bool, engineer: bool, oncall: bool, admin: bool
) -> None:
    from mloncall.access import authorize

    with ctx.db.session() as session:
        for role, allowed in (
            ("viewer", viewer),
            ("engineer", engineer),
            ("oncall", oncall),
            ("admin", admin),
        ):
            principal = access.create_principal(session=session, name=f"{role}-1", role=role)
            if allowed:
                authorize.require(session=session, principal=principal, permission=permission)
            else:
                with pytest.raises(PermissionDenied) as err:
                    authorize.require(session=session, principal=principal, permission=permission)
                assert permission in err.value.message and err.value.details["allowed"] is False
                assert err.value.details["fix"].startswith(f"mloncall access grant {role}-1 ")


def test_principals_are_validated(ctx: Context) -> None:
    with ctx.db.session() as session:
        with pytest.raises(NotFound, match="unknown role 'root'"):
            access.create_principal(session=session, name="eve", role="root")
        with pytest.raises(InvalidInput, match="invalid principal name"):
            access.create_principal(session=session, name="bad name", role="viewer")
        access.create_principal(session=session, name="frank@example.com", role="viewer")
        with pytest.raises(Conflict, match="already exists"):
            access.create_principal(session=session, name="frank@example.com", role="viewer")
        assert access.ensure_principal(session=session, name="frank@example.com", role="viewer")[1] is False
        with pytest.raises(Conflict, match="without the 'admin' role"):
            access.ensure_principal(session=session, name="frank@example.com", role="admin")
        principal, created = access.ensure_principal(session=session, name="grace")
        assert created and access.whoami(session=session, name=principal.name)["roles"] == ["viewer"], (
            "a new principal gets the least rights by default"
        )
        with pytest.raises(NotFound, match="principal 'nobody' does not exist"):
            access.create_token(session=session, principal_name="nobody")
        with pytest.raises(InvalidInput, match="must expire in the future"):
            access.create_token(session=session, principal_name="grace", expires_in=dt.timedelta(0))


def test_revoking_is_idempotent_and_unknown_ids_are_not_found(
    ctx: Context, frozen_clock: clock.FrozenClock
) -> None:
    with ctx.db.session() as session:
        access.create_principal(session=session, name="heidi", role="viewer")
        token, _ = access.create_token(session=session, principal_name="heidi")
        first = access.revoke_token(session=session, token_id=token.id).revoked_at
        frozen_clock.advance(hours=1)
        assert access.revoke_token(session=session, token_id=token.id).revoked_at == first
        assert access.token_status(token) == "revoked"
        with pytest.raises(NotFound, match="token 999 does not exist"):
            access.revoke_token(session=session, token_id=999)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", dt.timedelta(seconds=90)), ("30m", dt.timedelta(minutes=30)), ("12h", dt.timedelta(hours=12)),
     ("7d", dt.timedelta(days=7)), ("2w", dt.timedelta(weeks=2)), ("1h30m", dt.timedelta(minutes=90))],
)  # fmt: skip
def test_parse_duration(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0d", "-1h", "7 days", "1.5h", "d", "90", "2W"])
def test_parse_duration_refuses_nonsense(text: str) -> None:
    with pytest.raises(InvalidInput, match="bad duration"):
        parse_duration(text)


def test_audit_log_newest_first_with_filters_and_clipped_fields(any_ctx: Context) -> None:
    with any_ctx.db.session() as session:
        audit.record(session=session, actor="alice", action="PUT /a", target="/a/1", outcome="success")
        audit.record(session=session, actor="bob", action="DELETE /a", target="/a/2", outcome="denied")
        audit.record(
            session=session,
            actor="alice",
            action="POST /b",
            target="/" + "x" * 600,
            outcome="error:conflict",
            detail={"status": 409},
        )
    with any_ctx.db.session() as session:
        assert [r.action for r in audit.list_audit(session=session)] == ["POST /b", "DELETE /a", "PUT /a"]
        assert [r.action for r in audit.list_audit(session=session, actor="alice")] == ["POST /b", "PUT /a"]
        assert [r.actor for r in audit.list_audit(session=session, action="/a")] == ["bob", "alice"]
        assert [r.action for r in audit.list_audit(session=session, action="%")] == []
        assert len(audit.list_audit(session=session, limit=1)) == 1
        newest = audit.list_audit(session=session, limit=1)[0]
        assert len(newest.target) == 512 and newest.detail == {"status": 409}
        with pytest.raises(InvalidInput, match="limit"):
            audit.list_audit(session=session, limit=0)


def test_tokens_are_listed_newest_first_per_principal(ctx: Context) -> None:
    with ctx.db.session() as session:
        for name in ("ivan", "judy"):
            access.create_principal(session=session, name=name, role="viewer")
        for name in ("ivan", "judy", "ivan"):
            access.create_token(session=session, principal_name=name)
    with ctx.db.session() as session:
        ivans = access.list_tokens(session=session, principal_name="ivan")
        assert [t.principal.name for t in ivans] == ["ivan", "ivan"] and ivans[0].id > ivans[1].id
        assert len(access.list_tokens(session=session)) == 3
        assert session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 3

"""The casbin policy in the database: scoped roles, teams, denies, narrow tokens, break-glass grants and
`explain`, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from mloncall.access import authorize, grants, roles
from mloncall.access import service as access
from mloncall.access.models import PolicyLine, Principal
from mloncall.core import clock
from mloncall.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from mloncall.stores.context import Context


def _may(ctx: Context, name: str, permission: str, model: str | None = None) -> bool:
    with ctx.db.session() as session:
        who = access.get_principal_or_raise(session=session, name=name)
        return authorize.explain(session=session, principal=who, permission=permission, model=model).allowed


def _people(ctx: Context) -> None:
    with ctx.db.session() as session:
        access.create_principal(session=session, name="alice", role="viewer")
        access.create_principal(session=session, name="bob", role="admin")
        access.create_principal(session=session, name="ml", kind="team")
        access.create_principal(session=session, name="svc-retrain", kind="service")


def test_a_role_bound_on_one_model_holds_there_and_nowhere_else(any_ctx: Context) -> None:
    _people(any_ctx)
    assert not _may(any_ctx, "alice", "deploy:execute", "iris")
    with any_ctx.db.session() as session:
        alice = access.get_principal_or_raise(session=session, name="alice")
        roles.bind(session=session, principal=alice, role="oncall", scope="iris")
    assert _may(any_ctx, "alice", "deploy:execute", "iris")
    assert not _may(any_ctx, "alice", "deploy:execute", "wine")
    assert not _may(any_ctx, "alice", "deploy:execute"), "a model's role does not open global actions"
    with any_ctx.db.session() as session:
        alice = access.get_principal_or_raise(session=session, name="alice")
        why = authorize.explain(session=session, principal=alice, permission="deploy:execute", model="wine")
    assert any("scope mismatch" in r and "model iris" in r for r in why.reasons), why.reasons
    assert why.fix == "mloncall access grant alice oncall --scope wine"
    assert why.workaround is not None and why.workaround.startswith(
        "mloncall access request oncall --scope wine"
    )


def test_team_roles_reach_members_and_a_deny_wins_over_them(any_ctx: Context) -> None:
    _people(any_ctx)
    with any_ctx.db.session() as session:
        team = access.get_principal_or_raise(session=session, name="ml")
        roles.bind(session=session, principal=team, role="engineer")
        access.add_member(session=session, team="ml", member="svc-retrain")
    assert _may(any_ctx, "svc-retrain", "registry:write", "iris")
    with any_ctx.db.session() as session:
        svc = access.get_principal_or_raise(session=session, name="svc-retrain")
        why = authorize.explain(session=session, principal=svc, permission="registry:write", model="iris")
        assert why.via == ["service:svc-retrain", "team:ml", "role:engineer"]
        assert why.decided_by == "p, role:engineer, *, registry:write, allow"
        roles.deny(session=session, principal=team, permission="registry:write", scope="iris")
    assert not _may(any_ctx, "svc-retrain", "registry:write", "iris")
    assert _may(any_ctx, "svc-retrain", "registry:write", "wine")
    with any_ctx.db.session() as session:
        svc = access.get_principal_or_raise(session=session, name="svc-retrain")
        with pytest.raises(PermissionDenied) as denied:
            authorize.require(session=session, principal=svc, permission="registry:write", model="iris")
    assert denied.value.details["decided_by"] == "p, team:ml, model:iris, registry:write, deny"
    assert denied.value.details["fix"] == "mloncall access undeny ml registry:write --scope iris"


def test_a_grant_counts_from_approval_expires_by_itself_and_stays_in_the_history(
    any_ctx: Context, frozen_clock: clock.FrozenClock
) -> None:
    _people(any_ctx)
    with any_ctx.db.session() as session:
        alice = access.get_principal_or_raise(session=session, name="alice")
        row = grants.request(
            session=session, requester=alice, role="oncall", scope="iris", duration=dt.timedelta(hours=2),
            reason="roll back iris", incident_id=7,
        )  # fmt: skip
        request_id = row.id
        with pytest.raises(PermissionDenied, match="someone else must approve"):
            grants.approve(session=session, request_id=request_id, approver=alice)
    frozen_clock.advance(minutes=30)  # approval comes late: the two hours start then
    assert not _may(any_ctx, "alice", "deploy:execute", "iris")
    with any_ctx.db.session() as session:
        bob = access.get_principal_or_raise(session=session, name="bob")
        approved = grants.approve(session=session, request_id=request_id, approver=bob)
        assert approved.expires_at == clock.now() + dt.timedelta(hours=2)
    assert _may(any_ctx, "alice", "deploy:execute", "iris")
    with any_ctx.db.session() as session:
        alice = access.get_principal_or_raise(session=session, name="alice")
        assert authorize.require(
            session=session, principal=alice, permission="deploy:execute", model="iris"
        ) == (request_id)
    frozen_clock.advance(hours=2)
    # no job has run yet: the line carries its expiry, so the decision already refuses
    assert not _may(any_ctx, "alice", "deploy:execute", "iris")
    with any_ctx.db.session() as session:
        assert [r.id for r in grants.expire_due(session=session)] == [request_id]
        assert (
            session.scalar(
                sa.select(sa.func.count()).select_from(PolicyLine).where(PolicyLine.request_id == request_id)
            )
            == 0
        )
        [kept] = grants.list_requests(session=session, incident_id=7)
        assert (kept.state, kept.decided_by) == ("expired", "bob")
        alice = access.get_principal_or_raise(session=session, name="alice")
        why = authorize.explain(session=session, principal=alice, permission="deploy:execute", model="iris")
    assert any(f"grant #{request_id}" in r and "expired" in r for r in why.reasons), why.reasons


def test_requests_are_checked_and_an_unanswered_one_cannot_be_approved_later(
    any_ctx: Context, frozen_clock: clock.FrozenClock
) -> None:
    _people(any_ctx)
    with any_ctx.db.session() as session:
        alice = access.get_principal_or_raise(session=session, name="alice")
        bob = access.get_principal_or_raise(session=session, name="bob")
        with pytest.raises(PermissionDenied, match="at most 8:00:00"):
            grants.request(
                session=session,
                requester=alice,
                role="admin",
                scope=None,
                duration=dt.timedelta(hours=9),
                reason="x",
            )
        with pytest.raises(InvalidInput, match="needs a reason"):
            grants.request(
                session=session,
                requester=alice,
                role="oncall",
                scope=None,
                duration=dt.timedelta(hours=1),
                reason=" ",
            )
        with pytest.raises(NotFound, match="unknown role 'root'"):
            grants.request(
                session=session,
                requester=alice,
                role="root",
                scope=None,
                duration=dt.timedelta(hours=1),
                reason="x",
            )
        row = grants.request(
            session=session,
            requester=alice,
            role="oncall",
            scope=None,
            duration=dt.timedelta(hours=1),
            reason="x",
        )
        request_id = row.id
    frozen_clock.advance(hours=25)
    with any_ctx.db.session() as session, pytest.raises(Conflict, match="lapsed, not pending"):
        grants.approve(session=session, request_id=request_id, approver=bob)
    with any_ctx.db.session() as session:
        assert grants.get_request_or_raise(session=session, request_id=request_id).state == "lapsed"


def test_a_token_narrower_than_its_owner_is_held_to_its_scope(any_ctx: Context) -> None:
    _people(any_ctx)
    with any_ctx.db.session() as session:
        token, secret = access.create_token(
            session=session, principal_name="bob", permissions=["registry:read"], model="iris"
        )
    with any_ctx.db.session() as session:
        token = access.authenticate_token(session=session, secret=secret)
        bob = token.principal
        authorize.require(
            session=session, principal=bob, permission="registry:read", model="iris", token=token
        )
        for permission, model in (("registry:write", "iris"), ("registry:read", "wine")):
            with pytest.raises(PermissionDenied, match=r"token mlo_.* is limited to"):
                authorize.require(
                    session=session, principal=bob, permission=permission, model=model, token=token
                )
        # the owner is not narrowed
        authorize.require(session=session, principal=bob, permission="registry:write", model="iris")


def test_rotating_a_token_revokes_the_old_and_keeps_the_scope(any_ctx: Context) -> None:
    _people(any_ctx)
    with any_ctx.db.session() as session:
        old, old_secret = access.create_token(
            session=session, principal_name="alice", permissions=["registry:read"]
        )
        new, new_secret, _ = access.rotate_token(session=session, token_id=old.id)
        assert (new.scope_permissions, new.rotated_from) == (["registry:read"], old.id)
    with any_ctx.db.session() as session:
        assert access.authenticate(session=session, secret=new_secret).name == "alice"
        with pytest.raises(Exception, match="was revoked"):
            access.authenticate(session=session, secret=old_secret)


def test_custom_roles_and_teams_are_validated(any_ctx: Context) -> None:
    _people(any_ctx)
    with any_ctx.db.session() as session:
        roles.define_role(
            session=session, name="releaser", permissions=["deploy:execute"], includes=["viewer"]
        )
        assert "deploy:execute" in roles.role_permissions(session=session, name="releaser")
        with pytest.raises(InvalidInput, match="unknown permission 'deploy:everything'"):
            roles.define_role(session=session, name="bad", permissions=["deploy:everything"])
        with pytest.raises(Conflict, match="built-in"):
            roles.delete_role(session=session, name="admin")
        with pytest.raises(InvalidInput, match="not a team"):
            access.add_member(session=session, team="alice", member="bob")
        with pytest.raises(Conflict, match="is a team"):
            access.create_token(session=session, principal_name="ml")
        alice: Principal = access.get_principal_or_raise(session=session, name="alice")
        roles.bind(session=session, principal=alice, role="releaser", scope="model:iris")
    assert _may(any_ctx, "alice", "deploy:execute", "iris") and not _may(
        any_ctx, "alice", "deploy:execute", "wine"
    )


def test_the_expiry_job_ends_grants_and_lapses_requests_and_audits_each(
    ctx: Context, frozen_clock: clock.FrozenClock
) -> None:
    from mloncall.access import audit, jobs

    _people(ctx)
    with ctx.db.session() as session:
        alice = access.get_principal_or_raise(session=session, name="alice")
        bob = access.get_principal_or_raise(session=session, name="bob")
        granted = grants.request(session=session, requester=alice, role="oncall", scope="iris",
                                 duration=dt.timedelta(hours=1), reason="x")  # fmt: skip
        grants.approve(session=session, request_id=granted.id, approver=bob)
        waiting = grants.request(session=session, requester=alice, role="engineer", scope=None,
                                 duration=dt.timedelta(hours=1), reason="y")  # fmt: skip
        ids = (granted.id, waiting.id)
    assert jobs.expire_once(ctx) == []
    frozen_clock.advance(hours=25)
    assert sorted(jobs.expire_once(ctx)) == sorted(ids)
    assert jobs.expire_once(ctx) == [], "a second pass finds nothing: the job is idempotent"
    with ctx.db.session() as session:
        states = {r.id: r.state for r in grants.list_requests(session=session)}
        actions = [r.action for r in audit.list_audit(session=session, actor="mloncall")]
    assert states == {ids[0]: "expired", ids[1]: "lapsed"}
    assert sorted(actions) == ["access.request.expired", "access.request.lapsed"]
    assert jobs.Scheduler(ctx).interval == 30

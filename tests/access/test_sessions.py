"""Dashboard sessions on the server: live until ended or expired, one logout ending only its own session,
and a principal's dead sessions removed when it logs in again."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from mloncall.access import service as access
from mloncall.access import sessions
from mloncall.access.models import WebSession
from mloncall.core import clock
from mloncall.stores.context import Context

HOUR = dt.timedelta(hours=1)


def test_a_session_lives_until_it_is_ended(any_ctx: Context, frozen_clock: clock.FrozenClock) -> None:
    with any_ctx.db.session() as s:
        alice = access.create_principal(session=s, name="alice", role="viewer")
        first = sessions.start(session=s, principal=alice, lifetime=HOUR)
        second = sessions.start(session=s, principal=alice, lifetime=HOUR)
        live = sessions.get_active(session=s, session_id=first)
        assert live is not None and live.principal_id == alice.id
        assert first not in s.scalars(sa.select(WebSession.digest)).all()  # only digests are kept
        assert sessions.end(session=s, session_id=first)
        assert sessions.get_active(session=s, session_id=first) is None
        assert not sessions.end(session=s, session_id=first)
        assert sessions.get_active(session=s, session_id=second) is not None
        assert sessions.get_active(session=s, session_id="never-issued") is None


def test_a_session_expires_and_dead_ones_are_removed_at_the_next_login(
    ctx: Context, frozen_clock: clock.FrozenClock
) -> None:
    with ctx.db.session() as s:
        alice = access.create_principal(session=s, name="alice", role="viewer")
        old = sessions.start(session=s, principal=alice, lifetime=HOUR)
        frozen_clock.advance(hours=1)
        assert sessions.get_active(session=s, session_id=old) is None
        new = sessions.start(session=s, principal=alice, lifetime=HOUR)
        assert s.scalar(sa.select(sa.func.count()).select_from(WebSession)) == 1
        assert sessions.get_active(session=s, session_id=new) is not None

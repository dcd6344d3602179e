"""The audit hash chain: appends, verify naming the first broken link, concurrent writers, the 0005 upgrade."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from mloncall.access import audit
from mloncall.access.models import AuditChainHead, AuditRecord
from mloncall.core import clock
from mloncall.core.errors import InvalidInput
from mloncall.stores.context import Context
from mloncall.stores.db import Database


def _append(ctx: Context, n: int, *, actor: str = "alice", **fields: str) -> list[int]:
    """n records, each in its own unit of work; their ids."""
    ids = []
    for i in range(n):
        with ctx.db.session() as session:
            entry = audit.record(
                session=session,
                actor=actor,
                action=fields.get("action", f"PUT /things/{i}"),
                target=fields.get("target", f"/things/{i}"),
                outcome=fields.get("outcome", "success"),
                detail={"i": i, "nested": {"b": [1, 2.5, None], "a": "é"}},
            )
            ids.append(entry.id)
    return ids


def _sql(ctx: Context, statement: str, **params: object) -> None:
    with ctx.db.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def _verify(ctx: Context, **kwargs: int) -> audit.ChainReport:
    with ctx.db.session() as session:
        return audit.verify(session=session, **kwargs)


def test_records_chain_from_genesis_without_gaps(any_ctx: Context) -> None:
    ids = _append(any_ctx, 4)
    with any_ctx.db.session() as session:
        rows = session.scalars(sa.select(AuditRecord).order_by(AuditRecord.seq)).all()
        head = session.get(AuditChainHead, audit.HEAD_ID)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert head is not None and (head.seq, head.hash) == (rows[-1].seq, rows[-1].hash)
    assert [r.id for r in rows[-4:]] == ids
    report = _verify(any_ctx, batch=3)  # several batches
    assert report.intact and report.checked == len(rows) and report.broken is None


def test_the_hash_is_sha256_of_prev_hash_and_the_canonical_content(ctx: Context) -> None:
    import hashlib
    import json

    frozen = clock.FrozenClock(dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=dt.UTC))
    clock.set_clock(frozen)
    with ctx.db.session() as session:
        entry = audit.record(
            session=session,
            actor="a",
            action="b",
            target="c",
            outcome="denied",
            reason="why",
            request_id="r-1",
        )
    content = [entry.seq, "2026-03-04T05:06:07.890123+00:00", "a", "b", "c", "denied", "why", "r-1", {}]
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert entry.hash == hashlib.sha256((entry.prev_hash + canonical).encode()).hexdigest()


def test_an_edited_row_is_named_by_verify(any_ctx: Context) -> None:
    ids = _append(any_ctx, 5, outcome="denied")
    victim = ids[2]
    _sql(any_ctx, "UPDATE audit_log SET outcome = 'success' WHERE id = :id", id=victim)
    report = _verify(any_ctx)
    with any_ctx.db.session() as session:
        seq = session.get_one(AuditRecord, victim).seq
    assert not report.intact and report.broken is not None
    assert report.broken.kind == "altered" and report.broken.record_id == victim
    assert report.message == f"record {victim} (seq {seq}) was altered: its hash does not match its content"
    assert report.checked == seq - 1, "the walk stops at the first broken link"


def test_an_edited_detail_or_time_is_named_too(any_ctx: Context) -> None:
    ids = _append(any_ctx, 3)
    _sql(any_ctx, "UPDATE audit_log SET at = :at WHERE id = :id", at="2020-01-01 00:00:00", id=ids[0])
    assert _verify(any_ctx).broken.record_id == ids[0]  # type: ignore[union-attr]


def test_a_deleted_row_is_named_as_the_gap(any_ctx: Context) -> None:
    ids = _append(any_ctx, 5)
    with any_ctx.db.session() as session:
        seqs = {i: session.get_one(AuditRecord, i).seq for i in ids}
    _sql(any_ctx, "DELETE FROM audit_log WHERE id = :id", id=ids[2])
    report = _verify(any_ctx)
    assert report.broken is not None and report.broken.kind == "missing"
    before, after = seqs[ids[1]], seqs[ids[3]]
    assert (
        report.message == f"record after seq {before} is missing: seq {after} links to a hash no record has"
    )
    assert report.broken.seq == before + 1

    _sql(any_ctx, "DELETE FROM audit_log WHERE id = :id", id=ids[3])
    assert f"2 records after seq {before} are missing: seq {after + 1}" in _verify(any_ctx).message


def test_the_first_rows_deleted(any_ctx: Context) -> None:
    _append(any_ctx, 3)
    _sql(any_ctx, "DELETE FROM audit_log WHERE seq = 1")
    assert _verify(any_ctx).message == "record before seq 2 is missing: seq 2 links to a hash no record has"


def test_a_truncated_tail_is_named_against_the_chain_head(any_ctx: Context) -> None:
    _append(any_ctx, 5)
    with any_ctx.db.session() as session:
        last = session.scalar(sa.select(sa.func.max(AuditRecord.seq)))
    assert last is not None
    _sql(any_ctx, "DELETE FROM audit_log WHERE seq > :seq", seq=last - 2)
    report = _verify(any_ctx)
    assert report.broken is not None and report.broken.kind == "truncated"
    assert report.message == (
        f"the last 2 records of the chain are missing: the chain head is at seq {last}, "
        f"the last record is seq {last - 2}"
    )


def test_a_rewritten_record_with_its_own_hash_recomputed_breaks_the_next_link(any_ctx: Context) -> None:
    ids = _append(any_ctx, 3)
    with any_ctx.db.session() as session:
        row = session.get_one(AuditRecord, ids[1])
        row.outcome = "denied"
        row.hash = audit._hash_of(row)  # a forger who knows the formula
        following = session.get_one(AuditRecord, ids[2])
    report = _verify(any_ctx)
    assert report.broken is not None and report.broken.kind == "unlinked"
    assert report.broken.record_id == following.id
    assert f"(seq {following.seq}) does not link to seq {following.seq - 1}" in report.message


def test_a_rolled_back_unit_of_work_leaves_no_record_and_no_gap(any_ctx: Context) -> None:
    _append(any_ctx, 1)
    with pytest.raises(RuntimeError), any_ctx.db.session() as session:
        audit.record(session=session, actor="x", action="y", target="z", outcome="success")
        raise RuntimeError("the change failed after its record was written")
    _append(any_ctx, 1)
    with any_ctx.db.session() as session:
        seqs = session.scalars(sa.select(AuditRecord.seq).order_by(AuditRecord.seq)).all()
        assert session.scalar(sa.select(sa.func.count()).where(AuditRecord.actor == "x")) == 0
    assert list(seqs) == list(range(1, len(seqs) + 1))
    assert _verify(any_ctx).intact


def test_verify_after_appending_in_the_same_session(ctx: Context) -> None:
    with ctx.db.session() as session:
        assert audit.verify(session=session).intact
        audit.record(session=session, actor="a", action="b", target="c", outcome="success")
        report = audit.verify(session=session)
    assert report.intact and report.checked == report.head_seq >= 1


def test_progress_is_reported_per_batch(ctx: Context) -> None:
    _append(ctx, 7)
    seen: list[tuple[int, int]] = []
    with ctx.db.session() as session:
        total = session.scalar(sa.select(sa.func.count()).select_from(AuditRecord))
        audit.verify(session=session, batch=3, on_progress=lambda done, of: seen.append((done, of)))
    assert seen[-1] == (total, total) and len(seen) >= 3


def test_concurrent_writers_take_turns(any_ctx: Context) -> None:
    """Threads, each with its own sessions, append at once: one chain, no gap, no duplicate."""
    writers, each = 6, 15
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(n: int) -> None:
        try:
            start.wait()
            _append(any_ctx, each, actor=f"writer-{n}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with any_ctx.db.session() as session:
        seqs = session.scalars(sa.select(AuditRecord.seq).order_by(AuditRecord.seq)).all()
        mine = session.scalar(sa.select(sa.func.count()).where(AuditRecord.actor.startswith("writer-")))
    assert mine == writers * each
    assert list(seqs) == list(range(1, len(seqs) + 1))
    report = _verify(any_ctx)
    assert report.intact, report.message


def test_filters(any_ctx: Context, frozen_clock: clock.FrozenClock) -> None:
    with any_ctx.db.session() as session:
        audit.record(
            session=session, actor="alice", action="PUT /a", target="/models/iris", outcome="success"
        )
        frozen_clock.advance(hours=3)
        audit.record(
            session=session,
            actor="bob",
            action="GET /b",
            target="/models/wine",
            outcome="denied",
            reason="role viewer may not",
            request_id="req-1",
        )
        frozen_clock.advance(hours=1)
        audit.record(session=session, actor="bob", action="POST /c", target="run:3", outcome="error:conflict")

    def ask(**filters: object) -> list[str]:
        with any_ctx.db.session() as session:
            where = audit.AuditFilter.from_text(**filters)  # type: ignore[arg-type]
            return [r.action for r in audit.list_matching(session=session, where=where, limit=10)]

    assert ask(actor="bob") == ["POST /c", "GET /b"]
    assert ask(resource="models/") == ["GET /b", "PUT /a"]
    assert ask(resource="%") == []
    assert ask(outcome="error") == ["POST /c"]
    assert ask(outcome="denied") == ["GET /b"]
    assert ask(request_id="req-1") == ["GET /b"]
    assert ask(since="2h") == ["POST /c", "GET /b"]
    assert ask(until="2h") == ["PUT /a"]
    start = frozen_clock.current - dt.timedelta(hours=4)
    assert ask(since=start.isoformat(), until=(start + dt.timedelta(hours=3)).isoformat()) == [
        "GET /b",
        "PUT /a",
    ]
    assert ask(since=start.replace(tzinfo=None).isoformat(timespec="seconds")) == [
        "POST /c",
        "GET /b",
        "PUT /a",
    ]
    with pytest.raises(InvalidInput, match="bad since 'yesterday'"):
        ask(since="yesterday")
    with pytest.raises(InvalidInput, match="is after until"):
        ask(since="1h", until="2h")


def _alembic(db: Database, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from mloncall.stores.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = db.engine
    command.upgrade(cfg, revision)


@pytest.fixture(params=["sqlite", "postgres"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'old.db'}"


def test_the_upgrade_chains_the_rows_already_there(any_db_url: str) -> None:
    db = Database(any_db_url)
    try:
        _alembic(db, "0004")
        old = sa.table(
            "audit_log",
            sa.column("at", AuditRecord.__table__.c.at.type),
            sa.column("actor"),
            sa.column("action"),
            sa.column("target"),
            sa.column("outcome"),
            sa.column("detail", sa.JSON()),
        )
        at = dt.datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=dt.UTC)
        with db.engine.begin() as conn:
            conn.execute(
                old.insert(),
                [
                    {
                        "at": at + dt.timedelta(seconds=i),
                        "actor": f"user-{i}",
                        "action": "PUT /x",
                        "target": f"/x/{i}",
                        "outcome": "success" if i % 2 else "denied",
                        "detail": {"i": i, "z": {"k": "v"}},
                    }
                    for i in range(5)
                ],
            )
        _alembic(db, "head")
        with db.session() as session:
            rows = session.scalars(sa.select(AuditRecord).order_by(AuditRecord.id)).all()
            assert [(r.seq, r.actor, r.reason, r.request_id) for r in rows] == [
                (i + 1, f"user-{i}", "", None) for i in range(5)
            ]
            assert audit.verify(session=session).intact
            audit.record(session=session, actor="new", action="a", target="t", outcome="success")
        with db.session() as session:
            report = audit.verify(session=session)
            assert report.intact and report.checked == 6 and report.head_seq == 6
    finally:
        db.dispose()


def test_an_empty_upgraded_log_verifies(any_db_url: str) -> None:
    db = Database(any_db_url)
    try:
        _alembic(db, "head")
        with db.session() as session:
            report = audit.verify(session=session)
        assert report.intact and report.checked == 0 and report.head_hash == audit.GENESIS
    finally:
        db.dispose()


def test_request_ids() -> None:
    assert audit.accept_request_id("abc-1.2_3") == "abc-1.2_3"
    for bad in (None, "", "x" * 65, "a b", "<script>", "é"):
        fresh = audit.accept_request_id(bad)
        assert fresh != bad and audit.REQUEST_ID_PATTERN.fullmatch(fresh)
    assert audit.current_request_id() is None
    with audit.bind_request_id("outer") as rid:
        assert rid == audit.current_request_id() == "outer"
    assert audit.current_request_id() is None

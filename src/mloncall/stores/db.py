"""The metadata store: one SQL database through SQLAlchemy 2.x, migrated by Alembic.

SQLite (the embedded default) and PostgreSQL take the same code path. Services take a session and never
commit; the caller (a view, a CLI command, a job) owns the unit of work through `Database.session()`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from mloncall.core.errors import InvalidInput, NotFound, StoreUnavailable
from mloncall.core.names import MAX_ID

#: Alembic's script folder. Alembic loads its env.py by path, so no store imports the domains' tables.
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


#: A time the UTC columns cannot hold: `0001-01-01T00:00+14:00` is in the year 0 in UTC.
OUT_OF_CALENDAR = "a date or time is out of range: in UTC it must fall within the years 1 to 9999"


def out_of_calendar(exc: BaseException) -> bool:
    """Whether a statement failed because a time given to a UTC column overflowed the calendar: the
    client's mistake, whatever the domain (the conversion's error reaches the caller wrapped)."""
    return isinstance(exc, sa.exc.StatementError) and isinstance(exc.orig, OverflowError)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite drops the zone; this puts it back)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Base of every table."""

    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: sa.JSON, list[Any]: sa.JSON}


class NamedEntity:
    """The columns every named, owned thing shares (a model, a dataset): an id, a unique name, who made it."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(sa.String(128))


class TransitionEvent:
    """The columns of one recorded state change: when, who, from which state to which, why, the evidence.

    Every state machine of the project (rollouts, alerts, runbook runs) keeps its history in a table made
    of these columns plus a foreign key to the thing that moved.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(sa.String(128))
    from_state: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)


Row = TypeVar("Row")


def get_or_raise(session: Session, table: type[Row], key: Any, *, what: str) -> Row:
    """The row of `table` with primary key `key`; NotFound names it (`alert group 3 does not exist`)."""
    row = None if _out_of_range(key) else session.get(table, key)
    if row is None:
        raise NotFound(
            f"{what} {key!r} does not exist" if isinstance(key, str) else f"{what} {key} does not exist"
        )
    return row


def _out_of_range(value: Any) -> bool:
    return type(value) is int and not -MAX_ID - 1 <= value <= MAX_ID


def find_one(session: Session, table: type[Row], **equal_to: Any) -> Row | None:
    """The one row of `table` whose columns equal the given values, or None."""
    if any(_out_of_range(v) for v in equal_to.values()):
        return None  # no row holds an integer the columns cannot: the driver would overflow instead
    stmt = sa.select(table).filter_by(**equal_to)
    return session.scalars(stmt).one_or_none()


def find_one_or_raise(session: Session, table: type[Row], *, what: str, **equal_to: Any) -> Row:
    """`find_one`, or NotFound naming what was looked for (`dataset 'iris' does not exist`)."""
    row = find_one(session, table, **equal_to)
    if row is None:
        key = ", ".join(repr(v) for v in equal_to.values())
        raise NotFound(f"{what} {key} does not exist")
    return row


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def make_engine(url: str) -> Engine:
    """An engine for the URL; SQLite gets WAL, foreign keys and a busy timeout so writers wait, not fail."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput(f"database URL {url!r} is not a valid SQLAlchemy URL") from None
    kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    elif parsed.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 5}
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise InvalidInput(f"database URL {safe_url(url)} cannot be used: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def check(self) -> None:
        """Connect once, raising StoreUnavailable with the reason if the database cannot be reached."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StoreUnavailable(f"cannot reach the database {safe_url(self.url)}: {reason}") from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: committed if the block succeeds, rolled back if it raises."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StoreUnavailable(f"database error on {safe_url(self.url)}: {reason}") from None
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @property
    def sqlite_file(self) -> Path | None:
        """The file of a file-backed SQLite database (None for other backends and `:memory:`)."""
        url = self.engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return Path(url.database)

    def initialised(self) -> bool:
        """Whether `mloncall init` ran here (its schema exists); never creates anything to find out."""
        file = self.sqlite_file
        if file is not None and not file.is_file():
            return False  # connecting would create the file
        self.check()
        with self.engine.connect() as conn:
            return sa.inspect(conn).has_table("alembic_version")

    def create(self) -> None:
        """Create the database where that is the client's job (a SQLite file and its folder), then migrate."""
        file = self.sqlite_file
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
        self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent)."""
        from alembic import command
        from alembic.config import Config

        self.check()
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def on_commit(session: Session, fn: Any) -> None:
    """Run fn once the session's transaction has committed (side effects outside the database)."""
    event.listen(session, "after_commit", lambda _s: fn(), once=True)


def on_rollback(session: Session, fn: Any) -> None:
    """Run fn if the session's transaction rolls back (undo side effects outside the database)."""
    event.listen(session, "after_soft_rollback", lambda _s, _t: fn(), once=True)

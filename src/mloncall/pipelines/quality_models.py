"""Tables of data quality: quarantined row batches (and their moves), quarantined files, and each source's
recorded history (what upstream checks saw, what the freshness monitor reads)."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mloncall.core.states import Moves
from mloncall.stores.db import Base, TransitionEvent


class QuarantineState(enum.StrEnum):
    HELD = "held"
    RELEASED = "released"
    DROPPED = "dropped"


#: A batch is held until its rows are released (all of them pass again) or dropped; a release that refuses
#: some rows keeps the batch held with those rows.
QUARANTINE_MOVES = Moves(
    QuarantineState,
    {
        None: frozenset({QuarantineState.HELD}),
        QuarantineState.HELD: frozenset(
            {QuarantineState.HELD, QuarantineState.RELEASED, QuarantineState.DROPPED}
        ),
        QuarantineState.RELEASED: frozenset(),
        QuarantineState.DROPPED: frozenset(),
    },
)


class QuarantineBatchRow(Base):
    """The bad rows one validate stage set aside: `rows_key` holds them whole, `failures_key` every failing
    cell (row, column, check, value, source file); `schema` is what they were checked against."""

    __tablename__ = "quarantine_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline: Mapped[str] = mapped_column(sa.String(128), index=True)
    run_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    source_file: Mapped[str] = mapped_column(sa.Text)
    dataset: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    rows: Mapped[int]
    cells: Mapped[int]
    source_rows: Mapped[int]
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    schema: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rows_key: Mapped[str] = mapped_column(sa.String(512))
    rows_sha256: Mapped[str] = mapped_column(sa.String(64))
    failures_key: Mapped[str] = mapped_column(sa.String(512))
    failures_sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    released_rows: Mapped[int] = mapped_column(default=0)
    released_to: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(sa.String(128))

    events: Mapped[list[QuarantineEvent]] = relationship(
        back_populates="batch", order_by="QuarantineEvent.id", cascade="all, delete-orphan"
    )


class QuarantineEvent(TransitionEvent, Base):
    """One move of a quarantine batch: held, rows released (how many, where to), dropped."""

    __tablename__ = "quarantine_events"

    batch_id: Mapped[int] = mapped_column(
        sa.ForeignKey("quarantine_batches.id", ondelete="CASCADE"), index=True
    )

    batch: Mapped[QuarantineBatchRow] = relationship(back_populates="events")


class QuarantinedFile(Base):
    """A source file found corrupted and moved aside: where it was, where it is now, and why."""

    __tablename__ = "quarantined_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(128), index=True)
    location: Mapped[str] = mapped_column(sa.Text)
    key: Mapped[str] = mapped_column(sa.String(512))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    reason: Mapped[str] = mapped_column(sa.Text)
    run_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    created_at: Mapped[dt.datetime]


class SourceObservation(Base):
    """What one upstream check saw of a source: its status, files, bytes and rows, when its newest data is
    from, the freshness SLA it was held to and the models it feeds (as the pipeline declares them)."""

    __tablename__ = "source_observations"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(128), index=True)
    observed_at: Mapped[dt.datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    files: Mapped[int]
    size: Mapped[int] = mapped_column(sa.BigInteger)
    rows: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    newest_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    sla_seconds: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    feeds: Mapped[list[Any]] = mapped_column(default=list)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

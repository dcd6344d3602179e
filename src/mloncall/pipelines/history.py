"""Each source's recorded history: what upstream checks saw, compared with what they saw before, and how
fresh every source is now (what the `freshness` monitor reads)."""

from __future__ import annotations

import datetime as dt
import fnmatch
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.core.records import Record
from mloncall.pipelines.quality_models import SourceObservation

#: Statuses of an observation whose size and rows say something about the source.
COUNTED = ("ok", "stale", "anomalous")


def record(*, session: Session, observation: SourceObservation) -> SourceObservation:
    session.add(observation)
    session.flush()
    return observation


def recent(*, session: Session, source: str, limit: int) -> Sequence[SourceObservation]:
    """The source's last `limit` observations that counted its files, newest first."""
    stmt = (
        sa.select(SourceObservation)
        .where(SourceObservation.source == source, SourceObservation.status.in_(COUNTED))
        .order_by(SourceObservation.observed_at.desc(), SourceObservation.id.desc())
        .limit(limit)
    )
    return session.scalars(stmt).all()


def compare(
    *, name: str, value: float, past: Sequence[float], max_drop: float, max_jump: float, min_history: int
) -> str | None:
    """Why value is out of line with its history (a drop or a jump against the median), or None."""
    if len(past) < min_history:
        return None
    median = statistics.median(past)
    if median <= 0:
        return None
    if value < (1.0 - max_drop) * median:
        return f"{name} {value:g} dropped below {1.0 - max_drop:.0%} of its median {median:g} over {len(past)} runs"
    if value > max_jump * median:
        return f"{name} {value:g} jumped above {max_jump:g}x its median {median:g} over {len(past)} runs"
    return None


@dataclass
class Freshness(Record):
    """How old a source's newest data is, against its SLA, as of the last observation that saw data."""

    source: str
    newest_at: dt.datetime | None
    observed_at: dt.datetime
    status: str
    age_seconds: float | None
    sla_seconds: float | None
    feeds: list[str]

    def late(self, max_age: float | None) -> bool:
        limit = max_age if max_age is not None else self.sla_seconds
        if limit is None:
            return False
        return self.age_seconds is None or self.age_seconds > limit


def freshness(
    *, session: Session, now: dt.datetime, pattern: str = "*", model: str | None = None
) -> list[Freshness]:
    """Each source matching pattern (and feeding model, when its pipeline names the models it feeds): the
    age of its newest data at now, from its latest observation; a source never seen with data has no age."""
    latest = (
        sa.select(SourceObservation.source, sa.func.max(SourceObservation.id).label("id"))
        .group_by(SourceObservation.source)
        .subquery()
    )
    rows = session.scalars(
        sa.select(SourceObservation)
        .join(latest, SourceObservation.id == latest.c.id)
        .order_by(SourceObservation.source)
    ).all()
    out: list[Freshness] = []
    for row in rows:
        if not fnmatch.fnmatchcase(row.source, pattern):
            continue
        feeds = [str(f) for f in row.feeds or []]
        if model is not None and feeds and model not in feeds:
            continue
        newest = row.newest_at if row.newest_at is not None else _last_newest(session, row.source)
        age = (now - newest).total_seconds() if newest is not None else None
        out.append(Freshness(row.source, newest, row.observed_at, row.status, age, row.sla_seconds, feeds))
    return out


def _last_newest(session: Session, source: str) -> dt.datetime | None:
    """The newest data time any observation of the source recorded (the last one may have seen nothing)."""
    stmt = (
        sa.select(SourceObservation.newest_at)
        .where(SourceObservation.source == source, SourceObservation.newest_at.is_not(None))
        .order_by(SourceObservation.newest_at.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def evidence(items: Sequence[Freshness]) -> list[dict[str, Any]]:
    return [i.to_dict() for i in items]

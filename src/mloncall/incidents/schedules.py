"""On-call schedules: rotations (members take shifts of one length in turn from a first handoff in a time
zone), overrides, who is on call at a moment, and the shifts as an iCalendar feed.

Shifts of whole days keep their handoff at the same local time across daylight-saving changes; shorter shifts
are counted in absolute time.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from mloncall.access import service as access
from mloncall.core import clock
from mloncall.core.durations import format_duration, parse_duration
from mloncall.core.errors import Conflict, InvalidInput
from mloncall.core.records import Record
from mloncall.incidents.models import Override, Schedule
from mloncall.stores.db import find_one, find_one_or_raise

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_DAY = 86400.0


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"invalid {what} name {name!r}: use 1-64 lowercase letters, digits, '.', '_' or '-'"
        )
    return name


def zone(name: str) -> ZoneInfo:
    """The time zone called name (`Europe/Paris`, `UTC`); InvalidInput otherwise."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Paris"
        ) from None


def _local_start(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"bad start {text!r}: use a local date and time, e.g. 2026-01-05T09:00") from None
    if value.tzinfo is not None:
        raise InvalidInput(
            f"bad start {text!r}: give the local time without an offset (the time zone says it)"
        )
    return value


def get_schedule_or_raise(*, session: Session, name: str) -> Schedule:
    return find_one_or_raise(session, Schedule, what="schedule", name=name)


def list_schedules(*, session: Session) -> Sequence[Schedule]:
    return session.scalars(
        sa.select(Schedule).options(selectinload(Schedule.overrides)).order_by(Schedule.name)
    ).all()


def create_schedule(
    *,
    session: Session,
    name: str,
    members: Sequence[str],
    time_zone: str,
    handoff: str,
    shift: str | float | dt.timedelta,
    start: dt.date | None,
    actor: str,
    description: str = "",
) -> Schedule:
    """A rotation: members in turn, shifts of `shift` from `start` at `handoff` (HH:MM) local time."""
    check_name(name, "schedule")
    if find_one(session, Schedule, name=name) is not None:
        raise Conflict(f"schedule {name!r} already exists")
    if not members:
        raise InvalidInput("a schedule needs at least one member")
    for member in members:
        access.get_principal_or_raise(session=session, name=member)
    tz = zone(time_zone)
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", handoff or ""):
        raise InvalidInput(f"bad handoff time {handoff!r}: use HH:MM, e.g. 09:00")
    length = parse_duration(shift, what="shift length", maximum=dt.timedelta(days=28))
    if length < dt.timedelta(hours=1):
        raise InvalidInput(f"bad shift length {format_duration(length)}: at least 1h")
    day = start or clock.now().astimezone(tz).date()
    schedule = Schedule(
        name=name,
        members=list(members),
        time_zone=time_zone,
        starts=f"{day.isoformat()}T{handoff}",
        shift_s=length.total_seconds(),
        description=description,
        created_at=clock.now(),
        created_by=actor[:128],
    )
    session.add(schedule)
    session.flush()
    return schedule


def add_override(
    *,
    session: Session,
    schedule: str,
    principal: str,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    actor: str,
    reason: str = "",
) -> Override:
    """Someone takes the schedule from starts_at until ends_at."""
    row = get_schedule_or_raise(session=session, name=schedule)
    access.get_principal_or_raise(session=session, name=principal)
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise InvalidInput("override times need a time zone offset (e.g. 2026-01-05T09:00+01:00)")
    if ends_at <= starts_at:
        raise InvalidInput("an override must end after it starts")
    override = Override(
        schedule_id=row.id,
        principal=principal,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        created_by=actor[:128],
        created_at=clock.now(),
    )
    session.add(override)
    session.flush()
    session.refresh(row)
    return override


# --- who is on call --------------------------------------------------------------------------------------


def handoff_at(schedule: Schedule, n: int) -> dt.datetime:
    """The n-th handoff (0 is the first) in UTC."""
    tz = zone(schedule.time_zone)
    start = _local_start(schedule.starts)
    if schedule.shift_s % _DAY == 0:  # whole days: the same local time every handoff
        local = start + dt.timedelta(days=n * schedule.shift_s / _DAY)
        return local.replace(tzinfo=tz).astimezone(dt.UTC)
    first = start.replace(tzinfo=tz).astimezone(dt.UTC)
    return first + dt.timedelta(seconds=n * schedule.shift_s)


def shift_index(schedule: Schedule, at: dt.datetime) -> int:
    """The shift that holds `at`: handoff_at(n) <= at < handoff_at(n + 1)."""
    first = handoff_at(schedule, 0)
    n = int((at - first).total_seconds() // schedule.shift_s)
    while handoff_at(schedule, n) > at:
        n -= 1
    while handoff_at(schedule, n + 1) <= at:
        n += 1
    return n


@dataclass
class OnCall(Record):
    schedule: str
    principal: str
    since: dt.datetime
    until: dt.datetime
    override: bool


def on_call(schedule: Schedule, at: dt.datetime) -> OnCall:
    """Who holds the schedule at `at`: the latest override covering it, else the rotation's member."""
    covering = [o for o in schedule.overrides if o.starts_at <= at < o.ends_at]
    if covering:
        o = max(covering, key=lambda o: o.id)
        return OnCall(schedule.name, o.principal, o.starts_at, o.ends_at, True)
    n = shift_index(schedule, at)
    member = schedule.members[n % len(schedule.members)]
    return OnCall(schedule.name, str(member), handoff_at(schedule, n), handoff_at(schedule, n + 1), False)


def oncall_now(
    *, session: Session, schedule: str | None = None, at: dt.datetime | None = None
) -> list[OnCall]:
    """Who is on call now on one schedule, or on every schedule."""
    moment = at or clock.now()
    rows = (
        [get_schedule_or_raise(session=session, name=schedule)]
        if schedule
        else list_schedules(session=session)
    )
    return [on_call(row, moment) for row in rows]


def shifts(schedule: Schedule, since: dt.datetime, until: dt.datetime) -> list[OnCall]:
    """The shifts between since and until, overrides cut in, each person's consecutive time as one shift."""
    if until <= since:
        raise InvalidInput("the period must end after it starts")
    edges = {since, until}
    n = shift_index(schedule, since)
    while (edge := handoff_at(schedule, n)) < until:
        edges.add(max(edge, since))
        n += 1
    for o in schedule.overrides:
        edges.update(e for e in (o.starts_at, o.ends_at) if since < e < until)
    cuts = sorted(edges)
    out: list[OnCall] = []
    for begin, end in itertools.pairwise(cuts):
        who = on_call(schedule, begin)
        if out and out[-1].principal == who.principal and out[-1].override == who.override:
            out[-1].until = end
        else:
            out.append(OnCall(schedule.name, who.principal, begin, end, who.override))
    return out


def to_ical(
    *,
    session: Session,
    schedule: str,
    since: dt.datetime | None = None,
    days: int = 28,
    member: str | None = None,
) -> bytes:
    """The schedule's shifts for `days` days as an iCalendar feed (optionally one member's)."""
    if not 1 <= days <= 366:
        raise InvalidInput(f"days must be from 1 to 366, not {days}")
    row = get_schedule_or_raise(session=session, name=schedule)
    start = since or clock.now()
    cal = icalendar.Calendar()
    cal.add("prodid", "-//mloncall//on-call schedule//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"mloncall on-call: {row.name}")
    for shift in shifts(row, start, start + dt.timedelta(days=days)):
        if member is not None and shift.principal != member:
            continue
        event = icalendar.Event()
        event.add("uid", f"{row.name}-{int(shift.since.timestamp())}-{shift.principal}@mloncall")
        event.add("dtstamp", clock.now())
        event.add("dtstart", shift.since)
        event.add("dtend", shift.until)
        kind = " (override)" if shift.override else ""
        event.add("summary", f"On call: {shift.principal} ({row.name}){kind}")
        cal.add_component(event)
    data: bytes = cal.to_ical()
    return data

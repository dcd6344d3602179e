"""Silences: matchers over an alert's labels that mute its notifications for a while. A silenced alert still
changes state and keeps its history; only the telling is suppressed."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.alerts.evidence import clip
from mloncall.alerts.models import Alert, Silence
from mloncall.alerts.states import SilenceStatus, silence_state
from mloncall.core import clock
from mloncall.core.errors import InvalidInput
from mloncall.stores.db import get_or_raise

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.S)
MATCH_OPS = ("=", "!=", "=~", "!~")


@dataclass(frozen=True)
class Matcher:
    """`name=value`, `name!=value`, `name=~regex` or `name!~regex` (the regex must match the whole value)."""

    name: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        match = _MATCHER.match(text or "")
        if match is None:
            raise InvalidInput(
                f"bad matcher {text!r}: use NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX (e.g. model=iris)"
            )
        name, op, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        return cls.of(name, op, value)

    @classmethod
    def of(cls, name: str, op: str, value: str) -> Matcher:
        if op not in MATCH_OPS:
            raise InvalidInput(f"bad matcher operator {op!r}: use one of {', '.join(MATCH_OPS)}")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name or ""):
            raise InvalidInput(f"bad matcher label name {name!r}")
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise InvalidInput(f"bad matcher regex {value!r} for {name}: {exc}") from None
        return cls(name=name, op=op, value=value)

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "op": self.op, "value": self.value}

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def match_labels(alert: Alert) -> dict[str, str]:
    """The labels silences match against: the alert's own plus rule, model, severity, runbook and source."""
    labels = {k: str(v) for k, v in (alert.labels or {}).items()}
    labels.setdefault("rule", alert.rule)
    labels.setdefault("alertname", alert.rule)
    labels.setdefault("severity", alert.severity)
    labels.setdefault("source", alert.source)
    if alert.model is not None:
        labels.setdefault("model", alert.model)
    if alert.runbook is not None:
        labels.setdefault("runbook", alert.runbook)
    return labels


def matchers_of(silence: Silence) -> list[Matcher]:
    return [Matcher.of(m["name"], m["op"], m["value"]) for m in silence.matchers]


def silence_matches(silence: Silence, labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers_of(silence))


def silence_status(silence: Silence, at: dt.datetime | None = None) -> SilenceStatus:
    """`active`, `pending` (starts later) or `expired`."""
    return silence_state(silence.starts_at, silence.ends_at, at or clock.now())


def _parse_matchers(matchers: Sequence[Matcher | str]) -> list[Matcher]:
    parsed = [m if isinstance(m, Matcher) else Matcher.parse(m) for m in matchers]
    if not parsed:
        raise InvalidInput("a silence needs at least one matcher, e.g. model=iris-classifier")
    if all(m.matches({}) for m in parsed):
        raise InvalidInput(
            "these matchers also match an alert without those labels, so the silence would mute every alert: "
            "add a matcher that needs a label value (e.g. model=iris-classifier)"
        )
    return parsed


#: The longest silence: a longer one is a mistake (and one of thousands of years overflowed the end time).
MAX_SILENCE = dt.timedelta(days=365)


def create_silence(
    *,
    session: Session,
    matchers: Sequence[Matcher | str],
    duration: dt.timedelta,
    comment: str,
    actor: str,
    starts_at: dt.datetime | None = None,
) -> Silence:
    """Mute notifications of alerts matching every matcher for `duration` (from now or from starts_at)."""
    parsed = _parse_matchers(matchers)
    if duration <= dt.timedelta(0):
        raise InvalidInput(f"a silence must last longer than 0, not {duration}")
    if duration > MAX_SILENCE:
        raise InvalidInput(f"a silence lasts at most {MAX_SILENCE.days} days, not {duration}")
    if not comment or not comment.strip():
        raise InvalidInput("a comment is required: say why these alerts are silenced")
    now = clock.now()
    start = starts_at or now
    if start - now > MAX_SILENCE:
        raise InvalidInput(f"a silence starts within {MAX_SILENCE.days} days, not at {start.isoformat()}")
    silence = Silence(
        matchers=[m.to_dict() for m in parsed],
        starts_at=start,
        ends_at=start + duration,
        comment=clip(comment.strip()),
        created_by=clip(actor, 128),
        created_at=now,
    )
    session.add(silence)
    session.flush()
    return silence


def get_silence_or_raise(*, session: Session, silence_id: int) -> Silence:
    """The silence with this id; NotFound otherwise."""
    return get_or_raise(session, Silence, silence_id, what="silence")


def list_silences(*, session: Session, include_expired: bool = False) -> Sequence[Silence]:
    """Silences, newest first; without include_expired only those active or starting later."""
    stmt = sa.select(Silence)
    if not include_expired:
        stmt = stmt.where(Silence.ends_at > clock.now())
    return session.scalars(stmt.order_by(Silence.id.desc())).all()


def expire_silence(*, session: Session, silence_id: int, actor: str) -> Silence:
    """End a silence now (idempotent: an expired silence stays as it was)."""
    silence = get_silence_or_raise(session=session, silence_id=silence_id)
    now = clock.now()
    if silence.ends_at > now:
        silence.ends_at = max(now, silence.starts_at)
        silence.expired_by = clip(actor, 128)
        session.flush()
    return silence


def active_silences(*, session: Session, at: dt.datetime | None = None) -> Sequence[Silence]:
    """The silences in force at `at` (default now), oldest first."""
    at = at or clock.now()
    return session.scalars(
        sa.select(Silence).where(Silence.starts_at <= at, Silence.ends_at > at).order_by(Silence.id)
    ).all()


def silenced_by(
    *,
    session: Session,
    alert: Alert,
    at: dt.datetime | None = None,
    silences: Sequence[Silence] | None = None,
) -> Silence | None:
    """The active silence muting this alert now, or None (pass `silences` from `active_silences` for a list)."""
    candidates = silences if silences is not None else active_silences(session=session, at=at)
    labels = match_labels(alert)
    return next((s for s in candidates if silence_matches(s, labels)), None)


def matching_silence(
    *, session: Session, labels: dict[str, str], at: dt.datetime | None = None
) -> Silence | None:
    """The first active silence whose matchers all match labels, or None."""
    return next((s for s in active_silences(session=session, at=at) if silence_matches(s, labels)), None)

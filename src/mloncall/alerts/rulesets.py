"""The rule set in force: the built-in defaults until a file is loaded, then the newest loaded file, with its
grouping and hold-time policy. A refused file never becomes a rule set."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.alerts import rules as rules_mod
from mloncall.alerts.catalog import MonitorCatalog
from mloncall.alerts.models import RuleSet
from mloncall.alerts.rules import RuleFile
from mloncall.core import clock
from mloncall.core.durations import format_duration, parse_duration


@dataclass(frozen=True)
class ActiveRules:
    """The rule set in force: the newest loaded file, or the built-in defaults (version 0) before any."""

    rules: RuleFile
    version: int
    sha256: str
    origin: str
    loaded_at: dt.datetime | None
    loaded_by: str | None

    @property
    def group_by(self) -> list[str]:
        return list(self.rules.group_by)

    @property
    def hold_time(self) -> str:
        return format_duration(self.rules.hold_time)


@dataclass(frozen=True)
class Policy:
    """How alerts group and how long a resolved alert may re-open."""

    group_by: tuple[str, ...] = rules_mod.DEFAULT_GROUP_BY
    hold_time: dt.timedelta = rules_mod.DEFAULT_HOLD_TIME

    @classmethod
    def of(cls, rule_file: RuleFile) -> Policy:
        return cls(group_by=rule_file.group_by, hold_time=rule_file.hold_time)


_BUILT_IN = f"{rules_mod.DEFAULT_RULES_FILE} (built in)"


def _latest_rule_set(session: Session) -> RuleSet | None:
    return session.scalars(sa.select(RuleSet).order_by(RuleSet.version.desc()).limit(1)).one_or_none()


def default_rules(catalog: MonitorCatalog | None = None) -> RuleFile:
    """The rules that ship with mloncall, validated."""
    text = rules_mod.default_rules_text()
    parsed = rules_mod.parse_rules(text, origin=_BUILT_IN, catalog=catalog)
    return RuleFile(
        rules=parsed.rules,
        group_by=parsed.group_by,
        hold_time=parsed.hold_time,
        sha256=rules_mod.sha256_of(text),
    )


def active_rules(*, session: Session, catalog: MonitorCatalog | None = None) -> ActiveRules:
    """The rule set in force."""
    row = _latest_rule_set(session)
    if row is None:
        defaults = default_rules(catalog)
        return ActiveRules(
            rules=defaults,
            version=0,
            sha256=defaults.sha256,
            origin=_BUILT_IN,
            loaded_at=None,
            loaded_by=None,
        )
    return ActiveRules(
        rules=RuleFile.from_dict(row.spec, sha256=row.sha256),
        version=row.version,
        sha256=row.sha256,
        origin=row.origin,
        loaded_at=row.loaded_at,
        loaded_by=row.loaded_by,
    )


def load_rules(
    *,
    session: Session,
    text: str,
    origin: str,
    actor: str,
    catalog: MonitorCatalog | None = None,
) -> tuple[ActiveRules, bool]:
    """Validate a rules file and make it the active set; False if it is the active set already.

    A file with any error is refused whole (InvalidInput with every line and reason) and the active set stays.
    """
    parsed = rules_mod.parse_rules(text, origin=origin, catalog=catalog)
    digest = rules_mod.sha256_of(text)
    latest = _latest_rule_set(session)
    if latest is not None and latest.sha256 == digest:
        return active_rules(session=session, catalog=catalog), False
    row = RuleSet(
        version=(latest.version if latest is not None else 0) + 1,
        sha256=digest,
        origin=origin[:512],
        source=text,
        spec=parsed.to_dict(),
        loaded_at=clock.now(),
        loaded_by=actor,
    )
    session.add(row)
    session.flush()
    return active_rules(session=session, catalog=catalog), True


def list_rule_sets(*, session: Session) -> Sequence[RuleSet]:
    """Every loaded rule set, newest first."""
    return session.scalars(sa.select(RuleSet).order_by(RuleSet.version.desc())).all()


def policy_in_force(*, session: Session) -> Policy:
    """The grouping and hold time of the active rule set."""
    row = _latest_rule_set(session)
    if row is None:
        return Policy()
    spec = row.spec
    return Policy(
        group_by=tuple(spec.get("group_by") or rules_mod.DEFAULT_GROUP_BY),
        hold_time=parse_duration(spec.get("hold_time", "10m")),
    )

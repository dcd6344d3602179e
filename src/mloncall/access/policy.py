"""The authorization decision, made by casbin over the policy lines of the metadata database.

The model is RBAC with domains and deny-override: a role's permissions hold in every scope, a role binding
holds in one scope (`*` is every scope, `model:iris` one model), and an explicit deny wins over any allow.
Each decision is one `Enforcer.enforce_ex`, which returns the line that decided it: `explain` reads that.

Casbin evaluates every `p` line against the request, and its domain role manager copies the global links
into each domain it meets, so one enforcer over a large installation's whole policy is slow. So each
principal gets its own enforcer, loaded through the adapter's filter with only the lines that can concern
it: the `g` lines reachable from its subject (its teams, their roles, the roles those include) and the `p`
lines of the subjects reached. The enforcer is kept until the policy version changes (bumped in the
transaction of every policy change) or until the first of its lines expires.
"""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import casbin
import sqlalchemy as sa
from casbin.persist.adapter_filtered import FilteredAdapter
from casbin.util import key_match
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from mloncall.access.models import PolicyLine, PolicyVersion
from mloncall.access.permissions import GLOBAL
from mloncall.core import clock

MODEL = """
[request_definition]
r = sub, dom, act

[policy_definition]
p = sub, dom, act, eft

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = r.act == p.act && g(r.sub, p.sub, r.dom) && keyMatch(r.dom, p.dom)
"""
#: The scope casbin is asked in for a model none of a subject's lines names (`~` is in no model name).
OTHER_MODEL = "model:~"
#: How deep membership and role inclusion may nest (user -> team -> role -> role ...).
MAX_DEPTH = 8


# --- the policy version ----------------------------------------------------------------------------------


def policy_version(session: Session) -> int:
    """The policy's version: a process holding an older one reloads before it decides."""
    return session.scalar(sa.select(PolicyVersion.version).where(PolicyVersion.id == 1)) or 0


def bump_version(session: Session) -> None:
    """Mark the policy changed, in the caller's transaction."""
    updated = session.execute(
        sa.update(PolicyVersion).where(PolicyVersion.id == 1).values(version=PolicyVersion.version + 1)
    )
    if getattr(updated, "rowcount", 0) == 0:
        session.add(PolicyVersion(id=1, version=1))
    session.flush()


# --- the adapter -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectFilter:
    """Load only the lines that can concern this subject."""

    subject: str


class DbAdapter(FilteredAdapter):
    """casbin's adapter over `PolicyLine`: load (all, or one subject's), save, add and remove lines.

    Lines that have expired are never loaded. After a load, `valid_until` is the first expiry among the
    lines loaded (None: none expires).
    """

    def __init__(self, session: Session, *, actor: str = "") -> None:
        self.session = session
        self.actor = actor
        self.filtered = False
        self.valid_until: dt.datetime | None = None
        self.lines: list[PolicyLine] = []

    def is_filtered(self) -> bool:
        return self.filtered

    def _live(self) -> Any:
        now = clock.now()
        return sa.or_(PolicyLine.expires_at.is_(None), PolicyLine.expires_at > now)

    def _take(self, model: Any, lines: Iterable[PolicyLine]) -> None:
        for line in lines:
            self.lines.append(line)
            if line.expires_at is not None and (
                self.valid_until is None or line.expires_at < self.valid_until
            ):
                self.valid_until = line.expires_at
            section = line.ptype[0]
            if section in model.model and line.ptype in model.model[section]:
                model.model[section][line.ptype].policy.append(line.values)

    def load_policy(self, model: Any) -> None:
        self.filtered = False
        stmt = sa.select(PolicyLine).where(self._live()).order_by(PolicyLine.id)
        self._take(model, self.session.scalars(stmt))

    def load_filtered_policy(self, model: Any, filter: SubjectFilter) -> None:
        self.filtered = True
        reached = {filter.subject}
        frontier = {filter.subject}
        for _ in range(MAX_DEPTH):
            links = self.session.scalars(
                sa.select(PolicyLine)
                .where(PolicyLine.ptype == "g", PolicyLine.v0.in_(frontier), self._live())
                .order_by(PolicyLine.id)
            ).all()
            self._take(model, links)
            frontier = {line.v1 for line in links} - reached
            reached |= frontier
            if not frontier:
                break
        rules = self.session.scalars(
            sa.select(PolicyLine)
            .where(PolicyLine.ptype == "p", PolicyLine.v0.in_(reached), self._live())
            .order_by(PolicyLine.id)
        )
        self._take(model, rules)

    def save_policy(self, model: Any) -> bool:
        self.session.execute(sa.delete(PolicyLine).where(PolicyLine.request_id.is_(None)))
        for section in ("p", "g"):
            for ptype, assertion in model.model.get(section, {}).items():
                for rule in assertion.policy:
                    self.add_policy(section, ptype, rule)
        return True

    def add_policy(self, sec: str, ptype: str, rule: list[str]) -> None:
        values = [*rule, "", "", "", ""][:4]
        self.session.add(
            PolicyLine(
                ptype=ptype, v0=values[0], v1=values[1], v2=values[2], v3=values[3],
                created_at=clock.now(), created_by=self.actor,
            )
        )  # fmt: skip
        bump_version(self.session)

    def remove_policy(self, sec: str, ptype: str, rule: list[str]) -> bool:
        values = [*rule, "", "", "", ""][:4]
        stmt = sa.delete(PolicyLine).where(
            PolicyLine.ptype == ptype, *(getattr(PolicyLine, f"v{i}") == v for i, v in enumerate(values))
        )
        removed = getattr(self.session.execute(stmt), "rowcount", 0) > 0
        if removed:
            bump_version(self.session)
        return removed

    def remove_filtered_policy(self, sec: str, ptype: str, field_index: int, *field_values: str) -> bool:
        conditions = [
            getattr(PolicyLine, f"v{field_index + i}") == v for i, v in enumerate(field_values) if v != ""
        ]
        removed = getattr(self.session.execute(sa.delete(PolicyLine).where(PolicyLine.ptype == ptype, *conditions)), "rowcount", 0) > 0  # fmt: skip
        if removed:
            bump_version(self.session)
        return removed


def new_enforcer() -> casbin.Enforcer:
    """An empty enforcer of the project's model, with `*` bindings holding in every scope."""
    model = casbin.model.Model()
    model.load_model_from_text(MODEL)
    enforcer = casbin.Enforcer(model)
    enforcer.add_named_domain_matching_func("g", key_match)
    return enforcer


# --- one principal's decisions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """casbin's answer: allowed or not, and the policy line that decided (empty: no line allowed it)."""

    allowed: bool
    rule: tuple[str, ...]


@dataclass
class SubjectPolicy:
    """The enforcer holding one subject's lines, and what it was loaded from."""

    subject: str
    enforcer: casbin.Enforcer
    version: int
    valid_until: dt.datetime | None
    lines: list[tuple[str, ...]]
    #: Scopes named by this subject's lines: any other model is decided like every other.
    scopes: frozenset[str]
    #: The lines of break-glass grants: their request and expiry.
    grants: dict[tuple[str, ...], tuple[int, dt.datetime | None]] = field(default_factory=dict)
    memo: dict[tuple[str, str], Verdict] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fresh(self, version: int, now: dt.datetime) -> bool:
        return self.version == version and (self.valid_until is None or now < self.valid_until)

    def decide(self, permission: str, scope: str) -> Verdict:
        """casbin's verdict on permission in scope for this subject (memoised per scope class)."""
        # A model no line of this subject names is decided like every other such model: casbin is asked
        # once, for a stand-in no model can be named, so it builds one domain role manager, not one per model.
        named = scope in self.scopes or scope == GLOBAL
        key = (scope if named else OTHER_MODEL, permission)
        verdict = self.memo.get(key)
        if verdict is None:
            with self.lock:
                allowed, rule = self.enforcer.enforce_ex(self.subject, key[0], permission)
            verdict = self.memo[key] = Verdict(bool(allowed), tuple(rule))
        return verdict

    def roles(self, scope: str) -> list[str]:
        """The teams and roles this subject holds in scope, directly or through others."""
        with self.lock:
            return list(self.enforcer.get_implicit_roles_for_user(self.subject, scope))


def load_subject(session: Session, subject: str, version: int | None = None) -> SubjectPolicy:
    """A subject's enforcer, loaded now from the database."""
    enforcer = new_enforcer()
    adapter = DbAdapter(session)
    enforcer.set_adapter(adapter)
    enforcer.load_filtered_policy(SubjectFilter(subject))
    scopes = {line.v2 if line.ptype == "g" else line.v1 for line in adapter.lines}
    return SubjectPolicy(
        subject=subject,
        enforcer=enforcer,
        version=policy_version(session) if version is None else version,
        valid_until=adapter.valid_until,
        lines=[(line.ptype, *line.values) for line in adapter.lines],
        scopes=frozenset(scopes - {GLOBAL}),
        grants={
            (line.ptype, *line.values): (line.request_id, line.expires_at)
            for line in adapter.lines
            if line.request_id is not None
        },
    )


class Authorizer:
    """Each subject's enforcer, per database, reloaded when the policy changed or a line expired."""

    def __init__(self) -> None:
        self._by_engine: weakref.WeakKeyDictionary[Engine, dict[str, SubjectPolicy]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def policy(self, session: Session, subject: str, version: int | None = None) -> SubjectPolicy:
        """The subject's current enforcer: one read of the version (unless the caller read it in the same
        request, with the token), a load only when it is stale."""
        engine = session.get_bind().engine
        version = policy_version(session) if version is None else version
        with self._lock:
            cache = self._by_engine.setdefault(engine, {})
            held = cache.get(subject)
        if held is not None and held.fresh(version, clock.now()):
            return held
        loaded = load_subject(session, subject, version)
        with self._lock:
            cache[subject] = loaded
        return loaded


#: The process's one authorizer.
AUTHORIZER = Authorizer()

"""Routing of each served model: read it, move the stable version, start, reweigh and clear a canary.

Every change bumps the row's generation; serving workers poll the table and apply a change within a second.
Functions take keyword arguments and a session, flush, and never commit: the caller owns the unit of work.
A model without a routing row is served from its `production` alias.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.core import clock
from mloncall.core.errors import Conflict, InvalidInput, NotFound
from mloncall.core.records import Record
from mloncall.registry import service as registry
from mloncall.serving.models import DEFAULT_MAX_ROWS, FEATURE_POLICIES, OUT_OF_RANGE_POLICIES, Routing

_STICKY_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_ROWS_LIMIT = 100_000


@dataclass(frozen=True)
class RoutingView(Record):
    """The routing in force for a model, whether from its routing row or from its production alias."""

    model: str
    stable_version: int
    canary_version: int | None
    canary_weight: float
    sticky_key: str | None
    out_of_range_policy: str
    max_rows: int
    generation: int
    source: str
    feature_policies: dict[str, str]
    updated_at: dt.datetime | None
    updated_by: str | None


def view_of(row: Routing) -> RoutingView:
    """The routing row as a plain value."""
    return RoutingView(
        model=row.model_name,
        stable_version=row.stable_version,
        canary_version=row.canary_version,
        canary_weight=row.canary_weight,
        sticky_key=row.sticky_key,
        out_of_range_policy=row.out_of_range_policy,
        max_rows=row.max_rows,
        generation=row.generation,
        source="routing",
        feature_policies=dict(row.feature_policies or {}),
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def get(*, session: Session, name: str) -> Routing | None:
    """The routing row of a model, or None."""
    return session.scalars(sa.select(Routing).where(Routing.model_name == name)).one_or_none()


def get_or_raise(*, session: Session, name: str) -> Routing:
    """The routing row of a model; NotFound says whether the model or its routing is missing."""
    row = get(session=session, name=name)
    if row is None:
        registry.get_model_or_raise(session=session, name=name)
        raise NotFound(f"model {name!r} has no routing")
    return row


def list_all(*, session: Session) -> Sequence[Routing]:
    """Every routing row, by model name."""
    return session.scalars(sa.select(Routing).order_by(Routing.model_name)).all()


def effective(*, session: Session, name: str) -> RoutingView:
    """The routing in force: the row if there is one, else the production alias as stable with defaults."""
    row = get(session=session, name=name)
    if row is not None:
        return view_of(row)
    alias = registry.get_alias(session=session, name=name, alias="production")
    if alias is None:
        raise NotFound(f"model {name!r} is not served: it has no routing and no 'production' alias")
    return RoutingView(
        model=name,
        stable_version=alias.model_version.version,
        canary_version=None,
        canary_weight=0.0,
        sticky_key=None,
        out_of_range_policy="flag",
        max_rows=DEFAULT_MAX_ROWS,
        generation=0,
        source="production alias",
        feature_policies={},
        updated_at=None,
        updated_by=None,
    )


def set_stable(*, session: Session, name: str, version: int, actor: str) -> Routing:
    """Serve `version` as the stable version; a canary of that same version is cleared (it was promoted)."""
    registry.get_version_or_raise(session=session, name=name, version=version)
    row = get(session=session, name=name)
    if row is None:
        row = Routing(
            model_name=name, stable_version=version, generation=0, updated_at=clock.now(), updated_by=actor
        )
        row.canary_version = None
        row.canary_weight = 0.0
        row.out_of_range_policy = "flag"
        row.max_rows = DEFAULT_MAX_ROWS
        row.feature_policies = {}
        session.add(row)
    row.stable_version = version
    if row.canary_version == version:
        row.canary_version = None
        row.canary_weight = 0.0
    return _touch(session, row, actor)


def set_canary(*, session: Session, name: str, version: int, weight: float, actor: str) -> Routing:
    """Send `weight` (0..1) of the traffic to `version`, keeping the stable version loaded beside it."""
    weight = _check_weight(weight)
    registry.get_version_or_raise(session=session, name=name, version=version)
    row = _row_for_change(session, name, actor)
    if version == row.stable_version:
        raise InvalidInput(
            f"{name}:{version} is already the stable version; a canary must be another version"
        )
    row.canary_version = version
    row.canary_weight = weight
    return _touch(session, row, actor)


def set_weight(*, session: Session, name: str, weight: float, actor: str) -> Routing:
    """Change the canary's share of traffic; 0 is an abort that keeps the canary loaded."""
    weight = _check_weight(weight)
    row = get_or_raise(session=session, name=name)
    if row.canary_version is None:
        raise Conflict(f"model {name!r} has no canary, so it has no canary weight to set")
    row.canary_weight = weight
    return _touch(session, row, actor)


def clear_canary(*, session: Session, name: str, actor: str) -> Routing:
    """Stop routing to the canary: all traffic to the stable version."""
    row = get_or_raise(session=session, name=name)
    row.canary_version = None
    row.canary_weight = 0.0
    return _touch(session, row, actor)


_UNSET: Any = object()


def set_options(
    *,
    session: Session,
    name: str,
    actor: str,
    sticky_key: str | None = _UNSET,
    out_of_range_policy: str | None = None,
    max_rows: int | None = None,
) -> Routing:
    """Change the sticky key (None removes it), the out-of-range policy ('flag'|'reject') or the row limit."""
    row = _row_for_change(session, name, actor)
    if sticky_key is not _UNSET:
        if sticky_key is not None and not _STICKY_KEY.match(sticky_key):
            raise InvalidInput(f"invalid sticky key {sticky_key!r}: use letters, digits, '_', '.', '-'")
        row.sticky_key = sticky_key
    if out_of_range_policy is not None:
        if out_of_range_policy not in OUT_OF_RANGE_POLICIES:
            allowed = ", ".join(OUT_OF_RANGE_POLICIES)
            raise InvalidInput(f"invalid out-of-range policy {out_of_range_policy!r}: use one of {allowed}")
        row.out_of_range_policy = out_of_range_policy
    if max_rows is not None:
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or not 0 < max_rows <= MAX_ROWS_LIMIT:
            raise InvalidInput(
                f"invalid max_rows {max_rows!r}: use a whole number from 1 to {MAX_ROWS_LIMIT}"
            )
        row.max_rows = max_rows
    return _touch(session, row, actor)


def set_feature_policies(
    *, session: Session, name: str, policies: dict[str, str | None], actor: str
) -> Routing:
    """Set (or, with None, remove) the policy of features of the stable version: `reject`, `flag`, `impute`.

    The serving workers read it with the routing, so a running server applies it within a refresh.
    """
    row = _row_for_change(session, name, actor)
    mv = registry.get_version_or_raise(session=session, name=name, version=row.stable_version)
    known = [f.get("name") for f in (mv.signature or {}).get("features", [])]
    merged = dict(row.feature_policies or {})
    for feature, policy in policies.items():
        if feature not in known:
            raise InvalidInput(
                f"{name}:{row.stable_version} has no feature {feature!r}: its features are {', '.join(map(str, known))}"
            )
        if policy is None:
            merged.pop(feature, None)
        elif policy not in FEATURE_POLICIES:
            raise InvalidInput(
                f"invalid policy {policy!r} for {feature}: use one of {', '.join(FEATURE_POLICIES)}"
            )
        else:
            merged[feature] = policy
    row.feature_policies = merged
    return _touch(session, row, actor)


def _row_for_change(session: Session, name: str, actor: str) -> Routing:
    """The routing row, created from the production alias when the model had none yet."""
    row = get(session=session, name=name)
    if row is not None:
        return row
    alias = registry.get_alias(session=session, name=name, alias="production")
    if alias is None:
        raise Conflict(
            f"model {name!r} has no stable version: set one or point 'production' at a version first"
        )
    return set_stable(session=session, name=name, version=alias.model_version.version, actor=actor)


def _check_weight(weight: float) -> float:
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or math.isnan(weight)
        or not 0 <= weight <= 1
    ):
        raise InvalidInput(f"invalid canary weight {weight!r}: use a number from 0 to 1 (0.25 is 25%)")
    return float(weight)


def _touch(session: Session, row: Routing, actor: str) -> Routing:
    row.generation = (row.generation or 0) + 1
    row.updated_at = clock.now()
    row.updated_by = actor
    session.flush()
    return row

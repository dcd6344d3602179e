"""The routing service: stable, canary, weight, options; generation bumps; production alias fallback."""

from __future__ import annotations

import pytest

from mloncall.core.errors import Conflict, InvalidInput, NotFound
from mloncall.registry.models import ModelVersion
from mloncall.serving import service as routing
from mloncall.stores.context import Context
from tests.serving.conftest import register_iris


def test_effective_routing_falls_back_to_production(sctx: Context, iris_v1: ModelVersion) -> None:
    with sctx.db.session() as s:
        view = routing.effective(session=s, name="iris")
        assert (view.stable_version, view.canary_version, view.source) == (1, None, "production alias")
        assert routing.get(session=s, name="iris") is None
        assert view.to_dict()["out_of_range_policy"] == "flag"


def test_model_without_production_or_routing_is_not_served(sctx: Context) -> None:
    register_iris(sctx, name="other")
    with sctx.db.session() as s:
        with pytest.raises(NotFound, match="no routing and no 'production'"):
            routing.effective(session=s, name="other")
        with pytest.raises(Conflict, match="no stable version"):
            routing.set_canary(session=s, name="other", version=1, weight=0.1, actor="t")


def test_every_change_bumps_generation(sctx: Context, iris_v2: ModelVersion) -> None:
    with sctx.db.session() as s:
        row = routing.set_canary(session=s, name="iris", version=2, weight=0.1, actor="alice")
        g1 = row.generation
        assert (row.stable_version, row.canary_version, row.canary_weight) == (1, 2, 0.1)
        row = routing.set_weight(session=s, name="iris", weight=0.5, actor="alice")
        assert row.generation == g1 + 1 and row.canary_weight == 0.5
        row = routing.set_options(session=s, name="iris", actor="bob", sticky_key="x-user", max_rows=10)
        assert row.generation == g1 + 2 and row.updated_by == "bob"
        row = routing.set_weight(session=s, name="iris", weight=0, actor="alice")
        assert row.canary_version == 2 and row.canary_weight == 0.0  # abort keeps the canary loaded
        row = routing.clear_canary(session=s, name="iris", actor="alice")
        assert row.canary_version is None and row.generation == g1 + 4
    with sctx.db.session() as s:
        view = routing.effective(session=s, name="iris")
        assert view.source == "routing" and view.sticky_key == "x-user" and view.max_rows == 10


def test_promoting_the_canary_clears_it(sctx: Context, iris_v2: ModelVersion) -> None:
    with sctx.db.session() as s:
        routing.set_canary(session=s, name="iris", version=2, weight=0.5, actor="t")
        row = routing.set_stable(session=s, name="iris", version=2, actor="t")
        assert (row.stable_version, row.canary_version, row.canary_weight) == (2, None, 0.0)


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_bad_weights_are_refused(sctx: Context, iris_v2: ModelVersion, weight: object) -> None:
    with sctx.db.session() as s, pytest.raises(InvalidInput, match="canary weight"):
        routing.set_canary(session=s, name="iris", version=2, weight=weight, actor="t")  # type: ignore[arg-type]


def test_bad_changes_are_refused(sctx: Context, iris_v2: ModelVersion) -> None:
    with sctx.db.session() as s:
        with pytest.raises(NotFound, match="no version 9"):
            routing.set_canary(session=s, name="iris", version=9, weight=0.1, actor="t")
        with pytest.raises(NotFound, match="does not exist"):
            routing.set_stable(session=s, name="nope", version=1, actor="t")
        with pytest.raises(InvalidInput, match="already the stable"):
            routing.set_canary(session=s, name="iris", version=1, weight=0.1, actor="t")
        with pytest.raises(Conflict, match="no canary"):
            routing.set_weight(session=s, name="iris", weight=0.2, actor="t")
        with pytest.raises(InvalidInput, match="out-of-range policy"):
            routing.set_options(session=s, name="iris", actor="t", out_of_range_policy="drop")
        with pytest.raises(InvalidInput, match="max_rows"):
            routing.set_options(session=s, name="iris", actor="t", max_rows=0)
        with pytest.raises(InvalidInput, match="sticky key"):
            routing.set_options(session=s, name="iris", actor="t", sticky_key="a b")


def test_services_do_not_commit(sctx: Context, iris_v2: ModelVersion) -> None:
    session_cm = sctx.db.session()
    s = session_cm.__enter__()
    routing.set_canary(session=s, name="iris", version=2, weight=0.3, actor="t")
    s.rollback()
    session_cm.__exit__(None, None, None)
    with sctx.db.session() as s2:
        assert routing.get(session=s2, name="iris") is None

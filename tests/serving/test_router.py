"""The router: weighted and sticky choice, refresh from the routing table, failed loads, a broken database."""

from __future__ import annotations

from typing import Any

import pytest

from mloncall.registry.models import ModelVersion
from mloncall.serving import service as routing
from mloncall.serving.metrics import ServingMetrics
from mloncall.serving.router import CANARY, STABLE, ModelRoute, Router, bucket, choose
from mloncall.stores.context import Context
from tests.serving.conftest import alter_onnx, fast_config


class FakePredictor:
    def __init__(self, version: int) -> None:
        self.version = version


def route(weight: float, sticky: str | None = None) -> ModelRoute:
    return ModelRoute(
        model="m", generation=1, stable=FakePredictor(1), canary=FakePredictor(2), canary_weight=weight,  # type: ignore[arg-type]
        sticky_key=sticky, sticky_header=None, out_of_range_policy="flag", max_rows=10, configured_stable=1,
        configured_canary=2, configured_weight=weight, source="routing",
    )  # fmt: skip


@pytest.mark.parametrize("weight", [0.05, 0.25, 0.5, 0.9])
def test_weighted_choice_follows_the_weight(weight: float) -> None:
    r = route(weight)
    n = 20_000
    canary = sum(choose(r, None)[1] == CANARY for _ in range(n))
    sd = (weight * (1 - weight) / n) ** 0.5
    assert abs(canary / n - weight) < 5 * sd


def test_zero_and_full_weight_are_exact() -> None:
    assert {choose(route(0.0), None)[1] for _ in range(500)} == {STABLE}
    assert {choose(route(1.0), None)[1] for _ in range(500)} == {CANARY}


def test_sticky_buckets_are_stable_uniform_and_monotonic_in_weight() -> None:
    keys = [f"user-{i}" for i in range(5000)]
    first = [choose(route(0.3), k)[1] for k in keys]
    assert first == [choose(route(0.3), k)[1] for k in keys]
    assert abs(first.count(CANARY) / len(keys) - 0.3) < 0.03
    # Raising the weight only moves callers from stable to canary, never back.
    wider = [choose(route(0.6), k)[1] for k in keys]
    assert all(w == CANARY for f, w in zip(first, wider, strict=True) if f == CANARY)
    assert bucket("m", "user-1") == bucket("m", "user-1") != bucket("other", "user-1")


def make_router(ctx: Context, **config: Any) -> Router:
    return Router(db=ctx.db, store=ctx.store, config=fast_config(**config), metrics=ServingMetrics())


def test_refresh_applies_changes_and_reuses_loaded_predictors(sctx: Context, iris_v2: ModelVersion) -> None:
    router = make_router(sctx)
    assert router.refresh() and not router.refresh()  # nothing changed the second time
    r1 = router.routes["iris"]
    assert (r1.stable.version if r1.stable else None, r1.canary, r1.source) == (1, None, "production alias")
    with sctx.db.session() as s:
        routing.set_canary(session=s, name="iris", version=2, weight=0.2, actor="t")
    assert router.refresh()
    r2 = router.routes["iris"]
    assert r2.stable is r1.stable and r2.canary is not None and r2.canary.version == 2
    assert r2.canary_weight == 0.2 and r2.shadow_ok and r2.shadow_columns is None
    assert r2.weights() == {"1": 0.8, "2": 0.2}
    with sctx.db.session() as s:
        routing.set_weight(session=s, name="iris", weight=0.0, actor="t")
    assert router.refresh()
    r3 = router.routes["iris"]
    assert r3.canary is r2.canary and r3.canary_weight == 0.0  # abort: still loaded, no traffic


def test_failed_canary_is_never_served_and_retried_later(sctx: Context, iris_v2: ModelVersion) -> None:
    alter_onnx(sctx, iris_v2)
    router = make_router(sctx, retry_failed_seconds=3600)
    with sctx.db.session() as s:
        routing.set_canary(session=s, name="iris", version=2, weight=1.0, actor="t")
    router.refresh()
    r = router.routes["iris"]
    assert r.canary is None and r.canary_weight == 0.0 and r.configured_weight == 1.0
    assert "canary version 2 cannot be served" in r.problems[0] and "altered" in r.problems[0]
    assert router.failure("iris", 2) is not None and not router._retry_due()
    router.config = fast_config(retry_failed_seconds=0.0)
    assert router._retry_due()


def test_database_outage_keeps_the_last_routing(
    sctx: Context, iris_v1: ModelVersion, monkeypatch: Any
) -> None:
    router = make_router(sctx)
    router.refresh()
    before = router.routes

    def broken() -> None:
        raise RuntimeError("database is gone")

    monkeypatch.setattr(router, "_query", broken)
    assert not router.refresh()
    assert (
        router.routes is before and router.last_error is not None and "database is gone" in router.last_error
    )


def test_background_thread_polls(sctx: Context, iris_v2: ModelVersion) -> None:
    import time

    router = make_router(sctx, refresh_seconds=0.05)
    router.refresh()
    router.start()
    try:
        with sctx.db.session() as s:
            routing.set_stable(session=s, name="iris", version=2, actor="t")
        deadline = time.monotonic() + 10
        while router.routes["iris"].stable.version != 2:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        router.stop()

"""The monitoring runbook's decision table: one test per row, and the history that recommended `vNone`."""

from __future__ import annotations

import datetime as dt

import pytest

from mloncall.core.outcome import Check, Outcome
from mloncall.rollout import service as rollouts
from mloncall.runbooks.decision import Facts, decide
from mloncall.runbooks.investigate import assess, previous_version
from mloncall.stores.context import Context
from tests.helpers import train_iris

ROWS = [
    ("quality failing", Facts(data_quality_failing=True, drift=True, accuracy_drop=True), "bad input data", "fix upstream data"),
    ("errors after a deploy, healthy previous", Facts(service_failing=True, recent_deploy=True, previous_ok=True),
     "service degradation after a deploy", "rollback"),
    ("errors after a deploy, no previous", Facts(service_failing=True, recent_deploy=True),
     "service degradation after a deploy", "scale or investigate the server"),
    ("a few features drift, accuracy drops", Facts(drift=True, accuracy_drop=True, drifted_share=0.25),
     "drift and degradation", "fix upstream data"),
    ("most features drift, accuracy drops", Facts(drift=True, accuracy_drop=True, drifted_share=0.75),
     "drift and degradation", "retrain"),
    ("drop after a deploy, healthy previous", Facts(accuracy_drop=True, recent_deploy=True, previous_ok=True),
     "degradation without drift", "rollback"),
    ("drop after a deploy, no healthy previous", Facts(accuracy_drop=True, recent_deploy=True),
     "degradation without drift", "retrain"),
    ("drop without a deploy", Facts(accuracy_drop=True, previous_ok=True), "degradation without drift", "retrain"),
    ("drift, accuracy holds", Facts(drift=True), "drift without degradation", "check upstream data"),
    ("drift, no labels", Facts(drift=True, labels_arriving=False), "drift without degradation", "check upstream data"),
    ("errors without a deploy", Facts(service_failing=True, previous_ok=True), "service degradation",
     "scale or investigate the server"),
    ("traffic dropped", Facts(traffic_dropped=True), "traffic dropped", "check upstream data"),
    ("nothing wrong", Facts(), "likely false alarm", "silence as false alarm"),
    ("nothing wrong, no labels", Facts(labels_arriving=False), "likely false alarm", "silence as false alarm"),
]  # fmt: skip


@pytest.mark.parametrize(("row", "facts", "assessment", "action"), ROWS, ids=[r[0] for r in ROWS])
def test_each_row_of_the_table(row: str, facts: Facts, assessment: str, action: str) -> None:
    got = decide(facts)
    assert (got.assessment, got.action) == (assessment, action), row
    assert got.why


def test_rollback_is_offered_only_with_a_previous_version_and_the_reason_is_shown() -> None:
    without = decide(
        Facts(accuracy_drop=True, recent_deploy=True, previous_why="there is no previous version")
    )
    assert without.action == "retrain" and "there is no previous version" in without.why
    assert "no labels are arriving" in decide(Facts(drift=True, labels_arriving=False)).why


def test_one_version_ever_deployed_is_never_a_rollback(ctx: Context) -> None:
    """The history of the issue: an accuracy drop without drift, one version ever deployed (from none)."""
    train_iris(ctx)
    with ctx.db.session() as s:
        r = rollouts.deploy(
            session=s,
            store=ctx.store,
            ref="iris-classifier:1",
            spec=rollouts.DeploySpec(strategy="direct"),
            actor="t",
        )
        deploy = {
            "rollout": r.id,
            "from_version": r.from_version,
            "to_version": 1,
            "at": r.finished_at.isoformat(),
        }
    now = dt.datetime.now(dt.UTC)
    previous = previous_version(
        ctx=ctx, model="iris-classifier", deploy=deploy, production=1, span=dt.timedelta(hours=1), until=now
    )
    assert previous == {
        "version": None,
        "ok": False,
        "why": "there is no previous version: v1 is the only one ever in production",
    }
    ok = [Check("out_of_range", Outcome.SUCCESSFUL)]
    got = assess(
        drift=Outcome.SUCCESSFUL,
        accuracy=Outcome.FAILED,
        quality=ok,
        service=[],
        recent_deploy=True,
        previous_ok=previous["ok"],
        previous_why=previous["why"],
    )
    assert got == ("degradation without drift", "retrain")


def test_a_previous_version_that_does_not_verify_is_no_rollback_target(ctx: Context) -> None:
    train_iris(ctx)
    train_iris(ctx, seed=3)
    with ctx.db.session() as s:
        from mloncall.registry import service as registry

        v1 = registry.get_version_or_raise(session=s, name="iris-classifier", version=1)
        onnx = next(f for f in v1.files if f.name == "model.onnx")
        key = onnx.key
    ctx.store.put_bytes(key, b"not the model")
    deploy = {"rollout": 2, "from_version": 1, "to_version": 2, "at": dt.datetime.now(dt.UTC).isoformat()}
    previous = previous_version(
        ctx=ctx,
        model="iris-classifier",
        deploy=deploy,
        production=2,
        span=dt.timedelta(hours=1),
        until=dt.datetime.now(dt.UTC),
    )
    assert (
        previous["ok"] is False and "does not verify" in previous["why"] and "model.onnx" in previous["why"]
    )

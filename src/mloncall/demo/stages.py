"""Stages 1 to 3 of `mloncall demo`, each a real runbook action against a live server: v1 in production,
runbook 2's retrain and canary with its acceptance, and a bad canary caught and aborted."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from mloncall.data import iris
from mloncall.demo.scene import ACTOR, MODEL, Pace, Scene
from mloncall.demo.traffic import LocalServer, Traffic
from mloncall.rollout import service as rollouts
from mloncall.rollout.models import Rollout
from mloncall.rollout.scheduler import acceptance_when_ready, evaluate_once
from mloncall.stores.context import Context
from mloncall.training import service as training


def start_production(scene: Scene) -> tuple[LocalServer, Traffic]:
    """1. v1 in production, a live server, traffic with feedback labels."""
    ctx = scene.ctx
    i = scene.begin("1. train iris-classifier v1, deploy it, start the server and client traffic")
    v1 = training.train(
        ctx=ctx, name=MODEL, seed=scene.seed, created_by=ACTOR, description="first production model"
    )
    _deploy(ctx, f"{MODEL}:1", scene.pace, strategy="direct")
    env = {**os.environ, "MLONCALL_HOME": str(ctx.settings.home)}
    env.pop("MLONCALL_DB_URL", None)
    env.pop("MLONCALL_ARTIFACTS", None)
    server = LocalServer(env=env).start()
    traffic = Traffic(server.base, seed=scene.seed).start()
    scene.holder["traffic"] = traffic
    scene.story.end(i, "done", f"v1 accuracy {v1.metrics['accuracy']:.3f}; server on {server.base}")
    scene.lines.append(
        f"v1 trained (accuracy {v1.metrics['accuracy']:.3f}) and deployed directly; server at {server.base}"
    )
    return server, traffic


def retrain_and_canary(scene: Scene) -> None:
    """2. Runbook 2: retrain on new samples, gate, canary through every step, acceptance."""
    ctx, story, pace = scene.ctx, scene.story, scene.pace
    i = scene.begin("2. runbook 2: new samples arrive → retrain → gate → canary rollout → acceptance")
    csv = scene.workdir / "new-samples.csv"
    iris.iris_like_samples(120, seed=scene.seed + 1).to_csv(csv, index=False)
    v2 = training.retrain(ctx=ctx, name=MODEL, data=csv, created_by=ACTOR)
    gate = v2.gate or {}
    story.note = f"gate {gate.get('verdict', '?')}: {gate.get('reason', '')}"
    rid, state, _reason = _deploy(ctx, f"{MODEL}:{v2.model_version.version}", pace)
    state = _drive(ctx, rid, timeout=pace.step_duration * (len(pace.steps) + 4) + 30, refresh=scene.refresh)
    acceptance: dict[str, Any] = {}
    if state == "promoted":
        acceptance = acceptance_when_ready(
            ctx, rid, timeout=pace.acceptance_timeout, on_wait=lambda _m: scene.refresh()
        )
    story.note = ""
    detail = f"gate {gate.get('verdict')}, rollout {state}, acceptance {acceptance.get('outcome', '-')}"
    story.end(i, "done" if acceptance.get("outcome") == "successful" else "failed", detail)
    scene.lines.append(
        f"v2 retrained on {v2.dataset_version.row_count} rows; gate {gate.get('verdict')} "
        f"({gate.get('reason')}); canary {' → '.join(f'{s}%' for s in pace.steps)} {state}"
    )
    scene.holder["acceptance"] = acceptance
    scene.lines.append(
        "runbook-1 acceptance: "
        + ", ".join(f"{c['name']} {c['outcome']}" for c in acceptance.get("checks", []))
    )


def bad_canary(scene: Scene, traffic: Traffic) -> None:
    """3. A bad v3: corrupted labels, canary, caught by analysis, aborted; traffic never stops."""
    ctx = scene.ctx
    i = scene.begin("3. a bad v3 (trained on corrupted labels) goes out as a canary")
    bad = iris.iris_frame()
    bad["species"] = bad["species"].map(
        {"setosa": "virginica", "versicolor": "setosa", "virginica": "versicolor"}
    )
    bad_csv = scene.workdir / "corrupted-labels.csv"
    bad.to_csv(bad_csv, index=False)
    v3 = training.train(ctx=ctx, name=MODEL, data=bad_csv, dataset_name="iris-corrupted", seed=scene.seed,
                        created_by=ACTOR, description="trained on corrupted labels (demo)")  # fmt: skip
    failures_before = len(traffic.failures)
    started = time.monotonic()
    rid3, state3, reason3 = _deploy(ctx, f"{MODEL}:{v3.model_version.version}", scene.pace)
    state3 = _drive(ctx, rid3, timeout=scene.pace.step_duration * 4 + 30, refresh=scene.refresh)
    caught_after = time.monotonic() - started
    with ctx.db.session() as s:
        r3 = s.get(Rollout, rid3)
        assert r3 is not None
        reason3, aborted_at = r3.reason, time.monotonic()
    # How long until no answer came from v3 any more (routing applied by every worker).
    time.sleep(2.0)
    last_v3 = traffic.last_time_of(v3.model_version.version)
    switch = max(0.0, (last_v3 or aborted_at) - aborted_at)
    dropped = len(traffic.failures) - failures_before
    scene.story.end(i, "caught" if state3 == "aborted" else "failed",
                    f"{state3} after {caught_after:.1f} s: {reason3[:110]}")  # fmt: skip
    scene.lines.append(
        f"v3 canary {state3} {caught_after:.1f} s after it started; last v3 answer {switch:.2f} s after the "
        f"abort; failed requests during it: {dropped}"
    )
    scene.lines.append(f"abort reason: {reason3}")
    scene.holder["bad_canary"] = {
        "state": state3,
        "reason": reason3,
        "switch_seconds": switch,
        "dropped": dropped,
    }


def _drive(ctx: Context, rollout_id: int, *, timeout: float, refresh: Callable[[], None]) -> str:
    """Evaluate the rollout until it leaves `running` (the server's scheduler may take a step first)."""
    deadline = time.monotonic() + timeout
    while True:
        evaluate_once(ctx, rollout_id, actor=ACTOR)
        with ctx.db.session() as s:
            r = s.get(Rollout, rollout_id)
            assert r is not None
            state = r.state
        refresh()
        if state != "running" or time.monotonic() > deadline:
            return state
        time.sleep(0.25)


def _deploy(ctx: Context, ref: str, pace: Pace, strategy: str = "canary") -> tuple[int, str, str]:
    spec = rollouts.DeploySpec(
        strategy=strategy,
        steps=pace.steps,
        step_duration_s=pace.step_duration,
        min_requests=pace.min_requests,
    )
    with ctx.db.session() as s:
        r = rollouts.deploy(session=s, store=ctx.store, ref=ref, spec=spec, actor=ACTOR)
        return r.id, r.state, r.reason

"""Stages 1 to 3 of `mloncall demo` against a live server: v1 in production, then runbook 2 (`retraining`,
its deployment a linked `deployment` run with its canary and acceptance), then runbook 1 (`deployment`) of
a bad v3 whose canary is caught and aborted, its rollback verified."""

from __future__ import annotations

import os
import time
from typing import Any

from mloncall.data import iris
from mloncall.demo.scene import ACTOR, MODEL, Pace, Scene
from mloncall.demo.traffic import LocalServer, Traffic
from mloncall.registry import service as registry
from mloncall.rollout import service as rollouts
from mloncall.rollout.scheduler import acceptance_when_ready
from mloncall.runbooks import engine, export
from mloncall.runbooks import service as runs
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


def run_runbook(
    scene: Scene,
    runbook: str,
    params: dict[str, Any],
    *,
    confirmer: engine.Confirmer | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run a runbook with every action confirmed by the demo (or `confirmer`); its record (steps, acceptance)."""
    run_id = engine.start(
        scene.ctx,
        runbook=runbook,
        params=params,
        confirmer=confirmer or engine.Unattended(ACTOR, yes=True),
        on_change=lambda _rid: scene.refresh(),
        **kwargs,
    )
    with scene.ctx.db.session() as s:
        record = export.run_dict(s, runs.get_run_or_raise(session=s, run_id=run_id), events=False)
    scene.holder.setdefault("runs", []).append(record)
    scene.lines.append(
        f"runbook {runbook} run #{run_id}: {record['state']} {record['outcome'] or ''} ({record['reason']})"
    )
    return record


def resume_runbook(scene: Scene, run_id: int, *, confirmer: engine.Confirmer) -> dict[str, Any]:
    """Resume a waiting run with `confirmer`; its record, as `run_runbook` gives it."""
    engine.resume(scene.ctx, run_id, confirmer=confirmer, on_change=lambda _rid: scene.refresh())
    with scene.ctx.db.session() as s:
        record = export.run_dict(s, runs.get_run_or_raise(session=s, run_id=run_id), events=False)
    scene.holder.setdefault("runs", []).append(record)
    scene.lines.append(
        f"runbook {record['runbook']} run #{run_id} resumed: {record['state']} {record['outcome'] or ''} "
        f"({record['reason']})"
    )
    return record


def _rollout_params(pace: Pace) -> dict[str, Any]:
    seconds = f"{pace.step_duration:g}s"
    return {
        "steps": pace.steps,
        "step_duration": seconds,
        "min_requests": pace.min_requests,
        "health_window": seconds,
    }


def retrain_and_canary(scene: Scene) -> None:
    """2. Runbook 2: retrain on new samples, gate, canary through every step, acceptance."""
    ctx, story, pace = scene.ctx, scene.story, scene.pace
    i = scene.begin("2. runbook 2: new samples arrive → retrain → gate → canary rollout → acceptance")
    csv = scene.workdir / "new-samples.csv"
    iris.iris_like_samples(120, seed=scene.seed + 1).to_csv(csv, index=False)
    record = run_runbook(scene, "retraining", {"data": str(csv), **_rollout_params(pace)}, positional=[MODEL])
    with ctx.db.session() as s:
        r = rollouts.latest(session=s, name=MODEL)
        assert r is not None
        rid, state, version = r.id, r.state, r.to_version
        v2 = registry.get_version_or_raise(session=s, name=MODEL, version=version)
        gate = dict(v2.gate or {})
    story.note = f"gate {gate.get('verdict', '?')}: {gate.get('reason', '')}"
    acceptance: dict[str, Any] = {}
    if state == "promoted":
        acceptance = acceptance_when_ready(
            ctx, rid, timeout=pace.acceptance_timeout, on_wait=lambda _m: scene.refresh()
        )
    story.note = ""
    detail = (
        f"run #{record['id']} {record['outcome']}; gate {gate.get('verdict')}, rollout {state}, "
        f"acceptance {acceptance.get('outcome', '-')}"
    )
    story.end(i, "done" if acceptance.get("outcome") == "successful" else "failed", detail)
    scene.lines.append(
        f"v{version} retrained on {csv.name}; gate {gate.get('verdict')} "
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
    bad = iris.corrupted_labels(iris.iris_frame())
    bad_csv = scene.workdir / "corrupted-labels.csv"
    bad.to_csv(bad_csv, index=False)
    v3 = training.train(ctx=ctx, name=MODEL, data=bad_csv, dataset_name="iris-corrupted", seed=scene.seed,
                        created_by=ACTOR, description="trained on corrupted labels (demo)")  # fmt: skip
    failures_before = len(traffic.failures)
    started = time.monotonic()
    record = run_runbook(
        scene, "deployment", _rollout_params(scene.pace), positional=[f"{MODEL}:{v3.model_version.version}"]
    )
    caught_after = time.monotonic() - started
    with ctx.db.session() as s:
        r3 = rollouts.latest(session=s, name=MODEL)
        assert r3 is not None and r3.to_version == v3.model_version.version
        state3, reason3, aborted_at = r3.state, r3.reason, time.monotonic()
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
    verified = next(st for st in record["steps"] if st["name"] == "rollback-verified")
    scene.lines.append(f"rollback {verified['state']}: {verified['reason']}")
    scene.holder["bad_canary"] = {
        "state": state3,
        "reason": reason3,
        "switch_seconds": switch,
        "dropped": dropped,
    }


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

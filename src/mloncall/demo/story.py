"""The oncall story of `mloncall demo`: its stages in order, with the server and traffic stopped at the end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mloncall.demo.access import access_stage
from mloncall.demo.drift import drift_stage
from mloncall.demo.incident import incident_stage
from mloncall.demo.pipeline import pipeline_stage
from mloncall.demo.scaling import scaling_stage
from mloncall.demo.scene import MODEL, Pace, Scene, Story
from mloncall.demo.stages import bad_canary, retrain_and_canary, start_production
from mloncall.stores.context import Context


def play(
    *,
    ctx: Context,
    story: Story,
    pace: Pace,
    seed: int,
    workdir: Path,
    holder: dict[str, Any],
    refresh: Callable[[], None],
) -> dict[str, Any]:
    """Run every stage; returns the lines and paths of the summary."""
    scene = Scene(ctx=ctx, story=story, pace=pace, seed=seed, workdir=workdir, holder=holder, refresh=refresh)
    server, traffic = start_production(scene)
    try:
        pipeline_stage(scene)
        retrain_and_canary(scene)
        bad_canary(scene, traffic)
        drift_stage(scene, traffic)
        incident_stage(scene)
        access_stage(scene, server.base)
        scaling_stage(scene)
        refresh()
    finally:
        traffic.stop()
        server.stop()
    scene.lines.append(f"client traffic: {traffic.sent} requests, {len(traffic.failures)} failed")
    scene.paths["prediction log"] = ctx.store.url(f"predictions/model={MODEL}")
    scene.paths["rollout history"] = f"mloncall rollout history {MODEL}"
    return {"lines": scene.lines, "paths": scene.paths, "acceptance": holder.get("acceptance")}

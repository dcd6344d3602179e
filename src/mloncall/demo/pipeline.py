"""Stage 1b of the demo, runbook 4: the Iris ingestion pipeline breaks before the retraining. Its upstream
renamed a column in tonight's batch; the Dagster run fails at validate with a schema mismatch (and blocks
retraining on the dataset); the `pipeline-failure` runbook diagnoses it, the engineer maps the column back
in the declaration, the run resumes from the failed stage once the source is proven unchanged, and a
`retrain` dry run reads the new version."""

from __future__ import annotations

import time
from typing import Any

import yaml

from mloncall.data import iris
from mloncall.demo.scene import ACTOR, Scene
from mloncall.demo.stages import run_runbook
from mloncall.pipelines import service as pipelines
from mloncall.pipelines import spec

PIPELINE = "iris-ingest"
RENAMED = {"petal_wdth": "petal_width"}


class MapTheColumn:
    """The engineer: asked to re-run, first maps the renamed column back in the validate stage."""

    actor = ACTOR

    def __init__(self, scene: Scene) -> None:
        self.scene = scene

    def ask(self, question: str) -> bool:
        settings = self.scene.ctx.settings
        data = spec.get(settings, PIPELINE).dump()
        next(s for s in data["stages"] if s["name"] == "validate")["rename"] = dict(RENAMED)
        repaired = self.scene.workdir / f"{PIPELINE}.yaml"
        repaired.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        spec.add(settings, repaired)
        return True

    def note(self, prompt: str) -> str:
        return ""


def pipeline_stage(scene: Scene) -> None:
    """1b. The ingestion pipeline breaks on a renamed column and is repaired before the retraining."""
    ctx = scene.ctx
    started = time.monotonic()
    i = scene.begin("1b. runbook 4: the ingestion pipeline breaks (renamed column) → diagnosed → repaired")
    spec.add(ctx.settings, spec.EXAMPLES / f"{PIPELINE}.yaml")
    source = ctx.settings.home / "sources" / "iris"
    source.mkdir(parents=True, exist_ok=True)
    batch = iris.iris_like_samples(60, seed=scene.seed + 7).rename(columns={v: k for k, v in RENAMED.items()})
    batch.to_csv(source / "batch-nightly.csv", index=False)
    failed = pipelines.run_read(ctx, pipelines.run(ctx, PIPELINE, actor="nightly-cron"))
    record = run_runbook(scene, "pipeline-failure", {"pipeline": PIPELINE}, confirmer=MapTheColumn(scene))
    steps = {s["name"]: s for s in record["steps"]}
    dry: list[dict[str, Any]] = list((steps["monitor"]["evidence"].get("dry_runs") or {}).values())
    reads = dry[0].get("reads", "-") if dry else "-"
    ok = failed.state == "failed" and record["outcome"] == "successful"
    scene.story.end(i, "done" if ok else "failed", f"run #{failed.id} {failed.failure_class} at "
                    f"{failed.failed_stage}; runbook #{record['id']} {record['outcome']} "
                    f"in {time.monotonic() - started:.1f} s")  # fmt: skip
    scene.lines.append(
        f"pipeline {PIPELINE} run #{failed.id} failed at {failed.failed_stage} ({failed.failure_class}): "
        f"{failed.error.split('; map it')[0]}; re-run {steps['rerun']['evidence'].get('how', '-')}: "
        f"{steps['rerun']['reason']}; retrain dry run reads {reads}"
    )
    scene.paths["pipeline status"] = f"mloncall pipeline status {PIPELINE}"

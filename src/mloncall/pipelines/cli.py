"""`mloncall pipeline ...`: declared data pipelines run on the orchestrator, their runs stage by stage, and
the re-run from the failed stage once its upstream inputs are proven unchanged."""

from __future__ import annotations

from pathlib import Path

import typer

from mloncall.cli.support import audited_change, id_argument, installation
from mloncall.core import console
from mloncall.core.errors import CheckFailed, InvalidInput
from mloncall.pipelines.schemas import RunRead

app = typer.Typer(
    help="Data pipelines: extract, validate, transform and load into a new dataset version (runbook 4).",
    no_args_is_help=True,
)

JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")
NAME = typer.Argument(..., help="The pipeline's name (see `mloncall pipeline list`).")


@app.command("list")
def list_pipelines(json_out: bool = JSON) -> None:
    """Every declared pipeline (the home's `pipelines/*.yaml` and the shipped examples), its latest run."""
    from mloncall.pipelines import render, service

    with installation() as ctx:
        items = service.summaries(ctx)
    if json_out:
        console.print_json([i.model_dump(mode="json") for i in items])
        return
    render.print_pipelines(items)


@app.command()
def show(name: str = NAME, json_out: bool = JSON) -> None:
    """A pipeline's declaration: its source, schema and stages."""
    import yaml

    from mloncall.pipelines import spec

    with installation() as ctx:
        pipeline = spec.get(ctx.settings, name)
    if json_out:
        console.print_json(pipeline.dump())
        return
    console.out.print(yaml.safe_dump(pipeline.dump(), sort_keys=False), highlight=False)


@app.command()
def add(path: Path = typer.Argument(..., help="A YAML declaration to keep under the home.")) -> None:
    """Validate a declaration and keep it as `<home>/pipelines/NAME.yaml` (replacing one of its name)."""
    from mloncall.pipelines import spec

    with audited_change("pipelines.add", str(path)) as (_session, ctx, detail):
        pipeline = spec.add(ctx.settings, path)
        detail.update(pipeline=pipeline.name, spec_hash=pipeline.digest())
    console.out.print(f"pipeline {pipeline.name} declared: stages {pipeline.stage_names}")


def _finish(run: RunRead, json_out: bool) -> None:
    from mloncall.pipelines import render

    if json_out:
        console.print_json(run.model_dump(mode="json"))
    else:
        render.print_run(run)
    if run.state != "succeeded":
        raise CheckFailed(f"pipeline run #{run.id} of {run.pipeline} {run.state} at stage {run.failed_stage}")


@app.command()
def run(name: str = NAME, json_out: bool = JSON) -> None:
    """Run every stage on the orchestrator; exits 1 if a stage fails, with the failure's class and the fix."""
    from mloncall.pipelines import service

    with audited_change("pipelines.run", name) as (_session, ctx, detail):
        with console.progress(f"running {name}", enabled=not json_out):
            run_id = service.run(ctx, name, actor=console.actor())
        result = service.run_read(ctx, run_id)
        detail.update(run=run_id, state=result.state)
    _finish(result, json_out)


@app.command()
def rerun(
    name: str = NAME,
    from_failed: bool = typer.Option(
        False, "--from-failed", help="Start at the failed stage, after proving the skipped inputs unchanged."
    ),
    run_id: int | None = typer.Option(None, "--run", min=1, help="The failed run (default: the latest)."),
    json_out: bool = JSON,
) -> None:
    """Re-run a failed or interrupted run from its failed stage, its skipped inputs proven unchanged.

    Refused (exit 4), naming what changed, when a skipped stage's input (a source file, its declaration,
    its kept output) differs from the failed run's; a full `pipeline run` is then the way.
    """
    from mloncall.pipelines import service

    if not from_failed:
        raise InvalidInput(f"say --from-failed to resume, or run it whole: mloncall pipeline run {name}")
    with audited_change("pipelines.rerun", name) as (_session, ctx, detail):
        with console.progress(f"re-running {name}", enabled=not json_out):
            new_id = service.rerun_from_failed(ctx, name, actor=console.actor(), run_id=run_id)
        result = service.run_read(ctx, new_id)
        detail.update(run=new_id, parent=result.parent_id, state=result.state)
    _finish(result, json_out)


@app.command()
def status(name: str = NAME, json_out: bool = JSON) -> None:
    """The latest run, the source's health, and who uses which version of the dataset.

    A stale or failed source blocks the retraining of the models that train on its dataset; the table
    shows which models train on, and which monitors compare against, which version.
    """
    from mloncall.pipelines import render, service

    with installation() as ctx:
        found = service.status(ctx, name)
    if json_out:
        console.print_json(found.model_dump(mode="json"))
        return
    render.print_status(found)


@app.command()
def logs(
    run: int = id_argument("The pipeline run id (see `mloncall pipeline status NAME`)."),
    stage: str | None = typer.Option(None, "--stage", help="Only this stage's log."),
    json_out: bool = JSON,
) -> None:
    """Each stage's log excerpt: its attempts, what it read (with hashes), what it wrote or why it failed."""
    from mloncall.pipelines import service

    with installation() as ctx:
        found = service.run_read(ctx, run)
    chosen = [s for s in found.stages if stage is None or s.name == stage]
    if stage is not None and not chosen:
        raise InvalidInput(
            f"run #{run} has no stage {stage!r}: its stages are {[s.name for s in found.stages]}"
        )
    if json_out:
        console.print_json(
            [{"stage": s.name, "state": s.state, "log": s.log, "error": s.error} for s in chosen]
        )
        return
    for s in chosen:
        console.out.print(f"[bold]== {s.name}[/] ({s.state})", highlight=False)
        console.out.print(s.log or "(no log: the stage did not run)", highlight=False, soft_wrap=True)
        if s.error:
            console.out.print(f"error: {s.error}", highlight=False, soft_wrap=True)

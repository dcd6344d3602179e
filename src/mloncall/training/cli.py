"""`mloncall train` and `mloncall retrain` (runbook 2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mloncall.cli.support import installation
from mloncall.core import console
from mloncall.core.errors import CheckFailed
from mloncall.core.names import MAX_ID
from mloncall.registry.render import print_version
from mloncall.stores.context import Context
from mloncall.training.defaults import DEFAULT_RECALL_MARGIN, DEFAULT_REFERENCE_MARGIN, DEFAULT_TARGET

if TYPE_CHECKING:
    from mloncall.training.service import TrainingRun


app = typer.Typer()


@app.command()
def train(
    name: str = typer.Argument(..., help="Model name, e.g. iris-classifier."),
    data: Path | None = typer.Option(None, "--data", help="CSV or Parquet file; default: the Iris data set."),
    target: str = typer.Option(DEFAULT_TARGET, help="The label column."),
    algorithm: str = typer.Option(
        "logistic_regression", help="logistic_regression or random_forest.", case_sensitive=False
    ),
    seed: int = typer.Option(42, min=0, max=MAX_ID, help="Random seed (split and model)."),
    test_size: float = typer.Option(0.3, help="Share of rows held out for evaluation."),
    dataset: str | None = typer.Option(
        None, "--dataset-name", help="Register the data under this dataset name."
    ),
    description: str = typer.Option("", help="Free text stored with the version."),
    json_out: bool = typer.Option(False, "--json", help="Print the new version as JSON."),
) -> None:
    """Train a classifier, validate its data, and register it as the model's next version."""
    from mloncall.training import service

    _train_and_report(
        service.train,
        f"training {name}",
        json_out,
        name=name,
        data=data,
        dataset_name=dataset,
        target=target,
        algorithm=algorithm.lower(),
        seed=seed,
        test_size=test_size,
        description=description,
    )


@app.command()
def retrain(
    name: str = typer.Argument(..., help="Model whose production version is the champion."),
    data: Path | None = typer.Option(
        None, "--data", help="New rows (CSV or Parquet) with the champion's columns."
    ),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        help="New rows from a registered dataset version (NAME or NAME:VERSION), e.g. a pipeline's.",
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Read and check the new rows and what would block the retraining; train nothing.",
    ),
    seed: int | None = typer.Option(None, help="Random seed; default: the champion's."),
    recall_margin: float = typer.Option(
        DEFAULT_RECALL_MARGIN, help="Largest allowed drop of any class's recall vs production."
    ),
    reference_margin: float = typer.Option(
        DEFAULT_REFERENCE_MARGIN,
        help="Largest allowed accuracy gap vs production on production's own held-out rows (catches bad labels).",
    ),
    range_margin: float = typer.Option(
        0.25, help="New values may exceed the training range by this share of it before they are rejected."
    ),
    description: str = typer.Option("", help="Free text stored with the version."),
    json_out: bool = typer.Option(False, "--json", help="Print the new version and the gate as JSON."),
) -> None:
    """Validate new data, retrain on it plus the champion's data, and gate the challenger against production.

    The challenger is registered either way, with its verdict; the command exits 1 if the gate fails. A stale
    or failed pipeline feeding the champion's dataset blocks it (exit 4).
    """
    from mloncall.training import service

    if dry_run:
        _dry_run(name, data=data, dataset=dataset, range_margin=range_margin, json_out=json_out)
        return

    run = _train_and_report(
        service.retrain,
        f"retraining {name}",
        json_out,
        name=name,
        data=data,
        dataset=dataset,
        seed=seed,
        recall_margin=recall_margin,
        reference_margin=reference_margin,
        range_margin=range_margin,
        description=description,
    )
    if run.gate and run.gate["verdict"] != "pass":
        raise CheckFailed(f"gate failed for {name}:{run.model_version.version}: {run.gate['reason']}")


def _dry_run(
    name: str, *, data: Path | None, dataset: str | None, range_margin: float, json_out: bool
) -> None:
    from mloncall.training.dryrun import retrain_dry_run

    with installation() as ctx:
        found = retrain_dry_run(ctx=ctx, name=name, data=data, dataset=dataset, range_margin=range_margin)
    if json_out:
        console.print_json(found)
        return
    console.out.print(
        f"dry run: retraining {found['champion']} (trained on {found['trains_on']}) would read "
        f"{found['rows']} valid rows from {found['reads']}; nothing trained"
    )


def _train_and_report(
    job: Callable[..., TrainingRun], title: str, json_out: bool, **options: Any
) -> TrainingRun:
    """Run a training job (`train` or `retrain` of the service, given its options) in the initialised
    installation with a progress line, then show the version it registered."""
    with installation(create=True) as ctx:
        with console.progress(title, enabled=not json_out) as step:
            run = job(ctx=ctx, created_by=console.actor(), progress=step, **options)
        _report(ctx, run, json_out)
    return run


def _report(ctx: Context, run: TrainingRun, json_out: bool) -> None:
    mv = run.model_version
    with ctx.db.session() as session:
        from mloncall.registry import service as registry

        mv = registry.get_version_or_raise(session=session, name=mv.model.name, version=mv.version)
        print_version(
            session=session,
            store=ctx.store,
            model_version=mv,
            json_out=json_out,
            extra={"seconds": run.seconds},
        )

"""Training and retraining (runbook 2): read and register the data, fit, and register the version.

`train` fits a classifier on a validated, registered dataset and registers it; `retrain` validates new
rows against the champion's schema, trains on the union, scores challenger and champion on the same rows
that neither has seen, and records the gate verdict (`training.gate`) with the version. The classifiers, the split and the
metrics are `training.estimators`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import mloncall
from mloncall.core import clock
from mloncall.core.errors import Conflict, InvalidInput, NotFound
from mloncall.core.names import check_name
from mloncall.data import files as data_files
from mloncall.data import iris
from mloncall.data import service as data_service
from mloncall.data import validation as data_validation
from mloncall.data.models import DatasetVersion
from mloncall.pipelines.downstream import retraining_block
from mloncall.registry import service as registry
from mloncall.registry.models import ModelVersion
from mloncall.stores.context import Context
from mloncall.training.defaults import DEFAULT_RECALL_MARGIN, DEFAULT_REFERENCE_MARGIN
from mloncall.training.estimators import (
    ROW_COLUMN,
    build_estimator,
    estimator_params,
    evaluate,
    signature_of,
    split,
)
from mloncall.training.gate import judge_challenger

HOLDOUT_FILE = "holdout.parquet"
LOG_FILE = "training.log"
Progress = Callable[[str], None]


@dataclass
class TrainingRun:
    """What one training produced."""

    model_version: ModelVersion
    dataset_version: DatasetVersion
    metrics: dict[str, Any]
    seconds: float
    log: str
    gate: dict[str, Any] | None = None


@dataclass
class _Log:
    """One training job: where it writes, who asked, when it started, and its log (archived with the
    version for reproducibility)."""

    ctx: Context
    created_by: str
    progress: Progress | None = None
    lines: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def __call__(self, message: str) -> None:
        self.lines.append(f"{clock.now().isoformat(timespec='milliseconds')} {message}")
        if self.progress is not None:
            self.progress(message)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _code_version() -> dict[str, Any]:
    commit = None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(mloncall.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        commit = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"mloncall": mloncall.__version__, "git_commit": commit}


def _libraries() -> dict[str, str]:
    libs = {"python": platform.python_version()}
    for lib in ("scikit-learn", "numpy", "pandas", "onnx", "onnxruntime", "skl2onnx", "skops"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            libs[lib] = metadata.version(lib)
    return libs


@dataclass(frozen=True)
class _Recipe:
    """How a version is trained; a retrained challenger reuses its champion's."""

    algorithm: str
    seed: int
    test_size: float


@dataclass(frozen=True)
class _Candidate:
    """A fitted estimator with the rows it was fitted and judged on and its metrics, ready to register."""

    recipe: _Recipe
    estimator: Any
    train: pd.DataFrame
    hold: pd.DataFrame
    dataset_version: DatasetVersion
    dataset_name: str
    metrics: dict[str, Any]


def _fit(log: _Log, recipe: _Recipe, *, train: pd.DataFrame, schema: dict[str, Any]) -> Any:
    algorithm, seed = recipe.algorithm, recipe.seed
    features = [f["name"] for f in schema["features"]]
    target = schema["target"]["name"]
    if train[target].nunique() < 2:
        raise InvalidInput(f"cannot train: the training rows hold a single class ({train[target].iloc[0]!r})")
    estimator = build_estimator(algorithm, seed)
    start = time.perf_counter()
    estimator.fit(train[features].to_numpy(np.float64), train[target].to_numpy(str))
    log(f"fit {algorithm} on {len(train)} rows in {time.perf_counter() - start:.3f}s (seed {seed})")
    return estimator


def _holdout_bytes(hold: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    hold.to_parquet(buf, index=False)
    return buf.getvalue()


def _register(
    log: _Log, candidate: _Candidate, *, name: str, description: str, gate: dict[str, Any] | None
) -> TrainingRun:
    estimator, train, hold = candidate.estimator, candidate.train, candidate.hold
    dataset_version, metrics, recipe = candidate.dataset_version, candidate.metrics, candidate.recipe
    schema = dataset_version.schema
    features = [f["name"] for f in schema["features"]]
    log(
        f"holdout accuracy {metrics['accuracy']:.4f} on {metrics['n']} rows; recall "
        + ", ".join(f"{c}={m['recall']:.3f}" for c, m in metrics["per_class"].items())
    )
    lineage = {
        "dataset": {
            "name": candidate.dataset_name,
            "version": dataset_version.version,
            "content_hash": dataset_version.content_hash,
            "row_count": dataset_version.row_count,
        },
        "train_rows": len(train),
        "holdout_rows": len(hold),
        "seed": recipe.seed,
        "code": _code_version(),
    }
    libraries = _libraries()
    lineage["libraries"] = libraries
    log(f"libraries: {', '.join(f'{k} {v}' for k, v in libraries.items())}")
    new = registry.NewVersion(
        name=name,
        algorithm=recipe.algorithm,
        feature_names=features,
        class_labels=list(schema["target"]["classes"]),
        signature=signature_of(train, schema),
        metrics=metrics,
        params={**dataclasses.asdict(recipe), **estimator_params(estimator)},
        lineage=lineage,
        created_by=log.created_by,
        description=description,
        gate=gate,
        dataset_version_id=dataset_version.id,
    )
    log("ONNX conversion checked against scikit-learn on the holdout rows; registering")
    new.extra_files = {HOLDOUT_FILE: _holdout_bytes(hold), LOG_FILE: log.text().encode()}
    X_val = hold[features].to_numpy(np.float64) if len(hold) else train[features].to_numpy(np.float64)
    ctx = log.ctx
    mv = registry.register_version(db=ctx.db, store=ctx.store, estimator=estimator, X_val=X_val, new=new)
    return TrainingRun(
        model_version=mv,
        dataset_version=dataset_version,
        metrics=metrics,
        seconds=time.perf_counter() - log.started,
        log=log.text(),
        gate=gate,
    )


def train(
    *,
    ctx: Context,
    name: str,
    data: Path | None = None,
    dataset: str | None = None,
    dataset_name: str | None = None,
    target: str = iris.TARGET,
    algorithm: str = "logistic_regression",
    seed: int = 42,
    test_size: float = 0.3,
    created_by: str,
    description: str = "",
    progress: Progress | None = None,
) -> TrainingRun:
    """Train a classifier on a CSV/Parquet file, a registered dataset (`name[:version]`) or, given neither,
    the bundled Iris data, and register it as the model's next version."""
    log = _Log(ctx, created_by, progress)
    check_name(name, "model name")
    build_estimator(algorithm, seed)
    if not 0 < test_size < 1:
        raise InvalidInput(f"test size must be between 0 and 1, got {test_size}")
    recipe = _Recipe(algorithm, seed, test_size)
    raw, source, dataset_name = _training_data(
        ctx=ctx, name=name, data=data, dataset=dataset, dataset_name=dataset_name
    )
    log(f"read {len(raw)} rows from {source}")
    dv, frame = data_service.register_rows(
        db=ctx.db,
        store=ctx.store,
        name=dataset_name,
        raw=raw,
        target=target,
        origin=str(data or "iris"),
        source=source,
        created_by=created_by,
    )
    schema = dv.schema
    log(
        f"validated {len(frame)} rows: {len(schema['features'])} features, classes {schema['target']['classes']}"
    )
    log(f"dataset {dataset_name}:{dv.version} content hash {dv.content_hash}")
    frame = frame.assign(**{ROW_COLUMN: np.arange(len(frame))})
    train_rows, hold = split(frame, target, test_size, seed)
    log(f"split {len(train_rows)} train / {len(hold)} holdout rows (stratified, seed {seed})")
    estimator = _fit(log, recipe, train=train_rows, schema=schema)
    features = [f["name"] for f in schema["features"]]
    eval_rows = hold if len(hold) else train_rows
    metrics = evaluate(
        eval_rows[target].to_numpy(str),
        estimator.predict(eval_rows[features].to_numpy(np.float64)),
        list(schema["target"]["classes"]),
    )
    candidate = _Candidate(recipe, estimator, train_rows, hold, dv, dataset_name, metrics)
    return _register(log, candidate, name=name, description=description, gate=None)


def _training_data(
    *, ctx: Context, name: str, data: Path | None, dataset: str | None, dataset_name: str | None
) -> tuple[pd.DataFrame, str, str]:
    """The raw rows to train on, where they came from, and the dataset name to register them under."""
    if dataset is not None:
        if data is not None:
            raise InvalidInput("give either a data file or a registered dataset, not both")
        with ctx.db.session() as session:
            registered = data_service.resolve(session=session, ref=dataset)
            _ = registered.dataset.name
        raw = data_service.read(store=ctx.store, dataset_version=registered)
        return raw, f"dataset {data_service.ref_of(registered)}", dataset_name or registered.dataset.name
    if data is None:
        return iris.iris_frame(), "scikit-learn bundled Iris", dataset_name or "iris"
    return data_files.read_table(data), str(data), dataset_name or name


def retrain(
    *,
    ctx: Context,
    name: str,
    data: Path | None = None,
    dataset: str | None = None,
    seed: int | None = None,
    recall_margin: float = DEFAULT_RECALL_MARGIN,
    reference_margin: float = DEFAULT_REFERENCE_MARGIN,
    range_margin: float | None = 0.25,
    created_by: str,
    description: str = "",
    source_label: str | None = None,
    progress: Progress | None = None,
) -> TrainingRun:
    """Retrain on the champion's data plus new rows (a file, or a registered dataset version `NAME:VERSION`)
    and register the challenger with its gate verdict. Refused (Conflict) while a pipeline feeding the
    champion's dataset is stale or failed."""
    raw, label = new_rows(ctx, data=data, dataset=dataset)
    label = source_label or label
    for which, margin in (("recall", recall_margin), ("reference", reference_margin)):
        if not 0 <= margin <= 1:
            raise InvalidInput(f"{which} margin must be between 0 and 1, got {margin}")
    log = _Log(ctx, created_by, progress)
    champion, base_dv = _champion(ctx=ctx, name=name)
    refuse_if_blocked(ctx, model=name, dataset=base_dv.dataset.name)
    champion_ref = f"{name}:{champion.version}"
    recipe = _Recipe(
        champion.algorithm,
        int(champion.params.get("seed", 42)) if seed is None else seed,
        float(champion.params.get("test_size", 0.3)),
    )
    log(f"champion {champion_ref} ({recipe.algorithm}), trained on {base_dv.dataset.name}:{base_dv.version}")
    union, base_rows, dv = _grown_dataset(
        log, champion=champion, base_dv=base_dv, raw=raw, label=label, range_margin=range_margin
    )
    schema = base_dv.schema
    train_rows, hold, champion_rows = _challenge_split(
        log, recipe, champion=champion, union=union, base_rows=base_rows, target=schema["target"]["name"]
    )
    estimator = _fit(log, recipe, train=train_rows, schema=schema)
    challenger_metrics, gate = judge_challenger(
        ctx=ctx,
        champion=champion,
        estimator=estimator,
        hold=hold,
        champion_rows=champion_rows,
        schema=schema,
        recall_margin=recall_margin,
        reference_margin=reference_margin,
    )
    log(f"gate {gate['verdict'].upper()}: {gate['reason']}")
    candidate = _Candidate(recipe, estimator, train_rows, hold, dv, base_dv.dataset.name, challenger_metrics)
    description = description or f"retrained from {champion_ref} with {label}"
    return _register(log, candidate, name=name, description=description, gate=gate)


def new_rows(ctx: Context, *, data: Path | None, dataset: str | None) -> tuple[pd.DataFrame, str]:
    """The new rows to retrain with, from a file or a registered dataset version, and where they came from."""
    if (data is None) == (dataset is None):
        raise InvalidInput(
            "give the new rows as either a data file or a registered dataset, not both or neither"
        )
    if data is not None:
        return data_files.read_table(data), str(data)
    with ctx.db.session() as session:
        dv = data_service.resolve(session=session, ref=str(dataset))
        ref = data_service.ref_of(dv)
    return data_service.read(store=ctx.store, dataset_version=dv), f"dataset {ref}"


def refuse_if_blocked(ctx: Context, *, model: str, dataset: str) -> None:
    """Conflict when a pipeline feeding the model's training dataset is stale or failed (its retraining is
    blocked until the pipeline is repaired)."""
    reasons = retraining_block(ctx, dataset=dataset)
    if reasons:
        raise Conflict(
            f"retraining {model} is blocked: {'; '.join(reasons)}. Repair the pipeline first "
            "(`mloncall runbook run pipeline-failure --param pipeline=NAME`)",
            details={"blocked": reasons},
        )


def champion_of(*, ctx: Context, name: str) -> tuple[ModelVersion, DatasetVersion]:
    """The model's production version and the dataset version it trained on (both loaded)."""
    return _champion(ctx=ctx, name=name)


def _champion(*, ctx: Context, name: str) -> tuple[ModelVersion, DatasetVersion]:
    """The model's production version and the dataset version it was trained on, loaded for later use."""
    with ctx.db.session() as session:
        registry.get_model_or_raise(session=session, name=name)
        try:
            champion = registry.resolve(session=session, ref=f"{name}@production")
        except NotFound:
            raise NotFound(
                f"model {name!r} has no production version to compare with: set the alias first "
                f"(mloncall models alias set {name} production VERSION)"
            ) from None
        if champion.dataset_version_id is None:
            raise InvalidInput(
                f"{name}:{champion.version} has no recorded training dataset, so it cannot be retrained"
            )
        base_dv = session.get(DatasetVersion, champion.dataset_version_id)
        assert base_dv is not None
        # Loaded now: both are used after this unit of work ends.
        _ = (base_dv.dataset.name, champion.files, champion.model.name)
    return champion, base_dv


def _grown_dataset(
    log: _Log,
    *,
    champion: ModelVersion,
    base_dv: DatasetVersion,
    raw: pd.DataFrame,
    label: str,
    range_margin: float | None,
) -> tuple[pd.DataFrame, int, DatasetVersion]:
    """The champion's rows plus the new ones (validated against its schema), registered as the dataset's next
    version; returns the union, how many of its rows are the champion's, and the new version."""
    champion_ref = f"{champion.model.name}:{champion.version}"
    schema = base_dv.schema
    log(f"read {len(raw)} new rows from {label}")
    check_schema = {**schema, "features": champion.signature.get("features", schema["features"])}
    new_rows = data_validation.validate(raw, schema=check_schema, source=label, range_margin=range_margin)
    log(f"validated {len(new_rows)} new rows against {champion_ref}'s schema (range margin {range_margin})")
    ctx = log.ctx
    base = data_service.read(store=ctx.store, dataset_version=base_dv)
    union = pd.concat([base, new_rows[list(base.columns)]], ignore_index=True)
    union_schema = data_validation.infer_schema(union, target=schema["target"]["name"])
    union_schema["target"]["classes"] = list(schema["target"]["classes"])
    dv = data_service.register(
        db=ctx.db,
        store=ctx.store,
        name=base_dv.dataset.name,
        df=union,
        schema=union_schema,
        source=f"{base_dv.dataset.name}:{base_dv.version} + {label}",
        created_by=log.created_by,
        parents=[base_dv.id],
    )
    log(
        f"dataset {base_dv.dataset.name}:{dv.version} = {len(base)} + {len(new_rows)} rows, hash {dv.content_hash}"
    )
    return union, len(base), dv


def _challenge_split(
    log: _Log, recipe: _Recipe, *, champion: ModelVersion, union: pd.DataFrame, base_rows: int, target: str
) -> tuple[pd.DataFrame, pd.DataFrame, set[int]]:
    """Training and evaluation rows, and the row numbers of the champion's own holdout among them.

    Neither model may have seen the evaluation rows: the champion's own holdout plus a holdout of the new rows.
    """
    champion_ref = f"{champion.model.name}:{champion.version}"
    champion_hold = pd.read_parquet(
        io.BytesIO(registry.read_file(store=log.ctx.store, model_version=champion, name=HOLDOUT_FILE))
    )
    union = union.assign(**{ROW_COLUMN: np.arange(len(union))})
    fresh = union.iloc[base_rows:]
    _, fresh_hold = split(fresh, target, recipe.test_size, recipe.seed)
    champion_rows = set(champion_hold[ROW_COLUMN].astype(int).tolist())
    is_hold = union[ROW_COLUMN].isin(champion_rows | set(fresh_hold[ROW_COLUMN].tolist()))
    log(f"evaluation rows: {len(champion_hold)} from {champion_ref}'s holdout + {len(fresh_hold)} new")
    return union[~is_hold], union[is_hold], champion_rows

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from mloncall.core.errors import NotFound
from mloncall.data import iris
from mloncall.data.models import DatasetVersion
from mloncall.data.validation import DataValidationError
from mloncall.registry import service as registry
from mloncall.registry.models import ModelVersion
from mloncall.stores.context import Context
from mloncall.training import gate
from mloncall.training import service as training
from tests.helpers import new_samples_csv, train_iris, write_csv


def _promote(ctx: Context, version: int, name: str = "iris-classifier") -> None:
    with ctx.db.session() as s:
        registry.set_alias(session=s, name=name, alias="production", version=version, actor="test")


def test_train_registers_metadata_signature_lineage_and_log(ctx: Context) -> None:
    run = train_iris(ctx)
    mv = run.model_version
    assert mv.version == 1 and mv.algorithm == "logistic_regression"
    assert run.metrics["accuracy"] > 0.9
    assert set(run.metrics["per_class"]) == {"setosa", "versicolor", "virginica"}
    assert sum(map(sum, run.metrics["confusion_matrix"]["matrix"])) == run.metrics["n"] == 45
    sig = mv.signature
    assert [f["name"] for f in sig["features"]] == iris.FEATURES
    assert sig["classes"] == ["setosa", "versicolor", "virginica"]
    assert all(f["min"] <= f["quantiles"]["0.5"] <= f["max"] for f in sig["features"])
    assert mv.lineage["dataset"]["row_count"] == 150
    assert mv.lineage["seed"] == 42 and "scikit-learn" in mv.lineage["libraries"]
    log = registry.read_file(store=ctx.store, model_version=mv, name="training.log").decode()
    assert "holdout accuracy" in log and "split 105 train / 45 holdout" in log


def test_same_data_and_seed_reproduce_metrics_and_dataset_hash(ctx: Context) -> None:
    a = train_iris(ctx)
    b = train_iris(ctx)
    assert a.metrics == b.metrics
    assert a.dataset_version.content_hash == b.dataset_version.content_hash
    assert a.dataset_version.version == b.dataset_version.version  # deduplicated, not registered twice
    assert b.model_version.version == 2


def test_random_forest_option(ctx: Context) -> None:
    run = train_iris(ctx, algorithm="random_forest")
    assert run.model_version.algorithm == "random_forest" and run.metrics["accuracy"] > 0.85


def test_train_from_csv_with_custom_target(ctx: Context, tmp_path: Path) -> None:
    frame = iris.iris_frame().rename(columns={"species": "kind"})
    run = training.train(
        ctx=ctx, name="flowers", data=write_csv(tmp_path / "f.csv", frame), target="kind", created_by="t"
    )
    assert run.model_version.signature["target"] == "kind"
    assert run.dataset_version.row_count == 150


def test_retrain_gate_passes_on_good_new_data(ctx: Context, tmp_path: Path) -> None:
    train_iris(ctx)
    _promote(ctx, 1)
    run = training.retrain(ctx=ctx, name="iris-classifier", data=new_samples_csv(tmp_path), created_by="t")
    gate = run.gate
    assert gate is not None and gate["verdict"] == "pass", gate
    assert gate["challenger"]["accuracy"] >= gate["champion"]["accuracy"]
    assert gate["champion"]["ref"] == "iris-classifier:1"
    assert gate["eval_rows"] == run.metrics["n"] > 45
    mv = run.model_version
    assert mv.version == 2 and mv.gate == gate
    assert mv.lineage["dataset"]["row_count"] == 210
    with ctx.db.session() as s:
        dv = s.get(DatasetVersion, mv.dataset_version_id)
        assert dv is not None and dv.parents == [run.dataset_version.parents[0]] and dv.version == 2


def test_retrain_is_reproducible(ctx: Context, tmp_path: Path) -> None:
    train_iris(ctx)
    _promote(ctx, 1)
    csv = new_samples_csv(tmp_path)
    a = training.retrain(ctx=ctx, name="iris-classifier", data=csv, created_by="t")
    b = training.retrain(ctx=ctx, name="iris-classifier", data=csv, created_by="t")
    assert a.metrics == b.metrics and a.gate == b.gate
    assert a.dataset_version.content_hash == b.dataset_version.content_hash


def test_retrain_gate_fails_on_corrupted_labels(ctx: Context, tmp_path: Path) -> None:
    train_iris(ctx)
    _promote(ctx, 1)
    bad = iris.corrupted_labels(iris.iris_like_samples(300, seed=3))
    run = training.retrain(
        ctx=ctx, name="iris-classifier", data=write_csv(tmp_path / "bad.csv", bad), created_by="t"
    )
    assert run.gate is not None and run.gate["verdict"] == "fail"
    # The new labels poison their own holdout too; production's own held-out rows reveal them.
    ref = run.gate["reference"]
    assert ref["n"] == 45 and ref["challenger"] < ref["champion"] - ref["margin"]
    assert "own 45 held-out rows" in run.gate["reason"]


def test_retrain_needs_a_production_version(ctx: Context, tmp_path: Path) -> None:
    train_iris(ctx)
    with pytest.raises(NotFound, match="no production version"):
        training.retrain(ctx=ctx, name="iris-classifier", data=new_samples_csv(tmp_path), created_by="t")


def test_retrain_rejects_bad_data_and_registers_nothing(ctx: Context, tmp_path: Path) -> None:
    train_iris(ctx)
    _promote(ctx, 1)
    frame = iris.iris_like_samples(20, seed=1).astype({"sepal_width": object})
    frame.loc[3, "sepal_width"] = "abc"
    with pytest.raises(DataValidationError, match="sepal_width"):
        training.retrain(
            ctx=ctx, name="iris-classifier", data=write_csv(tmp_path / "x.csv", frame), created_by="t"
        )
    with ctx.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ModelVersion)) == 1
        assert s.scalar(sa.select(sa.func.count()).select_from(DatasetVersion)) == 1


def test_gate_verdict_recall_margin() -> None:
    champion = {"accuracy": 0.9, "n": 10, "per_class": {"a": {"recall": 1.0}, "b": {"recall": 0.8}}}
    challenger = {"accuracy": 0.9, "n": 10, "per_class": {"a": {"recall": 0.9}, "b": {"recall": 0.9}}}
    strict = gate.gate_verdict(
        challenger=challenger, champion=champion, champion_ref="m:1", recall_margin=0.05
    )
    assert strict["verdict"] == "fail" and "recall of 'a' drops by 0.100" in strict["reason"]
    lenient = gate.gate_verdict(
        challenger=challenger, champion=champion, champion_ref="m:1", recall_margin=0.2
    )
    assert lenient["verdict"] == "pass"


def test_single_class_training_data_is_refused(ctx: Context, tmp_path: Path) -> None:
    frame = iris.iris_frame()
    frame = frame[frame.species == "setosa"]
    with pytest.raises(Exception, match="single class"):
        training.train(
            ctx=ctx, name="one", data=write_csv(tmp_path / "one.csv", pd.DataFrame(frame)), created_by="t"
        )

"""The registered transforms: each does what it says on a small frame, a row it cannot transform is named,
and a declaration it cannot take (an unknown column, unit, strategy or argument) fails the stage as a
transformation error that blames no row; then through a real Dagster run declared in YAML, mis-declared,
repaired and re-run from the failed stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mloncall.cli.main import run as cli
from mloncall.data import service as data_service
from mloncall.data.iris import FEATURES
from mloncall.pipelines import service, spec, stages, transforms
from mloncall.pipelines.failures import FailureClass, StageFailure, fix_for
from mloncall.pipelines.spec import Stage
from mloncall.stores.context import Context
from tests.pipelines.conftest import PIPELINE, batch, drop


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "width": [1.5, 2.0, None, 4.0],
            "height": ["3", "0.5", "2", "8"],
            "label": ["a", "b", "a", "c"],
        }
    )


def _stage(*steps: dict[str, Any]) -> Stage:
    return Stage.model_validate({"name": "features", "kind": "transform", "steps": list(steps)})


def test_convert_units_converts_the_named_columns_and_leaves_the_rest() -> None:
    frame = _frame()
    out = transforms.convert_units(frame, columns=["width", "height"], source="cm", to="mm")
    assert out["width"].iloc[[0, 1, 3]].tolist() == pytest.approx([15.0, 20.0, 40.0])
    assert pd.isna(out["width"].iloc[2])  # an empty cell stays empty
    assert out["height"].tolist() == pytest.approx([30.0, 5.0, 20.0, 80.0])  # numbers written as text too
    assert out["label"].tolist() == ["a", "b", "a", "c"]
    assert frame["width"].iloc[0] == 1.5  # a new frame: the input is untouched
    inches = transforms.convert_units(frame, columns="width", source="in", to="cm")
    assert inches["width"].iloc[0] == pytest.approx(3.81)


def test_deduplicate_keeps_the_first_of_each_repeat() -> None:
    frame = pd.DataFrame({"x": [1, 2, 1, 3, 2], "y": ["p", "q", "r", "s", "q"]})
    whole = transforms.deduplicate(frame)
    assert whole.to_dict("list") == {"x": [1, 2, 1, 3], "y": ["p", "q", "r", "s"]}
    on_x = transforms.deduplicate(frame, columns=["x"])
    assert on_x.to_dict("list") == {"x": [1, 2, 3], "y": ["p", "q", "s"]}
    assert on_x.index.tolist() == [0, 1, 2]


def test_impute_fills_empty_cells_with_the_median_or_the_mean() -> None:
    frame = pd.DataFrame({"x": [1.0, None, 3.0, 10.0], "y": [None, 2.0, 2.0, 5.0]})
    median = transforms.impute(frame, columns=["x", "y"])
    assert median["x"].tolist() == [1.0, 3.0, 3.0, 10.0] and median["y"].tolist() == [2.0, 2.0, 2.0, 5.0]
    mean = transforms.impute(frame, columns="x", strategy="mean")
    assert mean["x"].tolist() == pytest.approx([1.0, 14 / 3, 3.0, 10.0])
    assert pd.isna(mean["y"].iloc[0])  # a column not named is left as it is


def test_derive_ratio_adds_the_feature() -> None:
    frame = pd.DataFrame({"top": [1.0, 3.0, 5.0], "bottom": [2.0, 4.0, 0.5]})
    out = transforms.derive_ratio(frame, name="ratio", numerator="top", denominator="bottom")
    assert out["ratio"].tolist() == pytest.approx([0.5, 0.75, 10.0])
    assert list(out.columns) == ["top", "bottom", "ratio"]


@pytest.mark.parametrize(
    ("frame", "step", "rows", "said"),
    [
        (
            pd.DataFrame({"top": [1.0, 2.0, 3.0], "bottom": [1.0, 0.0, 0.0]}),
            {"fn": "derive_ratio", "name": "r", "numerator": "top", "denominator": "bottom"},
            [2, 3],
            "divide by zero",
        ),
        (
            pd.DataFrame({"len": ["1.5", "long", "2"]}),
            {"fn": "convert_units", "columns": ["len"], "source": "cm", "to": "mm"},
            [2],
            "not numbers",
        ),
        (
            pd.DataFrame({"len": [1.0, None, "n/a"]}),
            {"fn": "impute", "columns": "len"},
            [3],
            "not numbers",
        ),
    ],
)
def test_a_row_a_transform_cannot_take_is_named(
    frame: pd.DataFrame, step: dict[str, Any], rows: list[int], said: str
) -> None:
    with pytest.raises(StageFailure) as caught:
        stages.transform(frame, _stage(step))
    failure = caught.value
    assert failure.failure == FailureClass.TRANSFORMATION_ERROR and said in failure.message
    assert [r["row"] for r in failure.details["rows"]] == rows and failure.details["offending"] == len(rows)


@pytest.mark.parametrize(
    ("step", "said"),
    [
        (
            {"fn": "convert_units", "columns": ["width", "depth"], "source": "cm", "to": "mm"},
            "column(s) depth not in the data",
        ),
        (
            {"fn": "convert_units", "columns": ["width"], "source": "cm", "to": "furlong"},
            "unknown unit 'furlong'; known: mm, cm, m, in",
        ),
        ({"fn": "convert_units", "columns": ["width"], "source": "cm"}, "missing a required argument: 'to'"),
        ({"fn": "deduplicate", "columns": ["lable"]}, "column(s) lable not in the data"),
        ({"fn": "impute", "columns": ["width"], "strategy": "mode"}, "strategy must be median or mean"),
        ({"fn": "impute", "columns": ["width"], "stratgy": "mean"}, "unexpected keyword argument 'stratgy'"),
        (
            {"fn": "derive_ratio", "name": "r", "numerator": "width", "denominator": "heigth"},
            "column(s) heigth not in the data",
        ),
    ],
)
def test_a_declaration_a_transform_cannot_take_is_a_transformation_error_blaming_no_row(
    step: dict[str, Any], said: str
) -> None:
    with pytest.raises(StageFailure) as caught:
        stages.transform(_frame(), _stage({"fn": "deduplicate"}, step))
    failure = caught.value
    assert failure.failure == FailureClass.TRANSFORMATION_ERROR
    assert failure.message.startswith(f"transform {step['fn']} failed: ") and said in failure.message
    assert failure.details == {"fn": step["fn"], "rows": [], "offending": 0}
    assert "correct the step's arguments" in fix_for(failure.failure, pipeline="p", stage="features")


YAML = """\
name: iris-ingest
dataset: iris
schema:
  features:
    - {name: sepal_length, min: 0.0, max: 10.0}
    - {name: sepal_width, min: 0.0, max: 10.0}
    - {name: petal_length, min: 0.0, max: 10.0}
    - {name: petal_width, min: 0.0, max: 10.0}
  target: {name: species}
stages:
  - {name: extract, kind: extract, source: {files: "sources/iris/*.csv"}}
  - {name: validate, kind: validate}
  - name: features
    kind: transform
    steps:
      - {fn: deduplicate, columns: [sepal_length, sepal_width, petal_length, petal_width]}
      - {fn: convert_units, columns: [petal_length, petal_width], source: cm, to: mm}
      - {fn: derive_ratio, name: petal_ratio, numerator: petal_length, denominator: DENOMINATOR}
  - {name: load, kind: load}
"""


def _declare(ctx: Context, denominator: str) -> None:
    path = ctx.settings.home / "features.yaml"
    path.write_text(YAML.replace("DENOMINATOR", denominator))
    spec.add(ctx.settings, Path(path))


def test_transforms_declared_in_yaml_run_on_dagster_misdeclared_then_repaired(
    pctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLONCALL_HOME", str(pctx.settings.home))
    base = batch(30, seed=6)
    assert not base.duplicated(FEATURES).any()
    repeated = base.iloc[[4, 9]].assign(species=["virginica", "setosa"])  # same measurements, later
    drop(pctx, pd.concat([base, repeated], ignore_index=True))

    _declare(pctx, "petal_wdth")
    capsys.readouterr()
    assert cli(["pipeline", "run", PIPELINE]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert "transformation_error" in out.out and "column(s) petal_wdth not in the data" in out.out
    assert "fix to try" in out.out and "correct the step's arguments" in out.out
    assert cli(["pipeline", "logs", "1", "--stage", "features", "--json"]) == 0
    (logged,) = json.loads(capsys.readouterr().out)
    assert logged["state"] == "failed" and "petal_wdth" in logged["error"]
    failed = service.run_read(pctx, 1).stages[2]
    assert failed.failure_class == "transformation_error" and failed.details["rows"] == []

    _declare(pctx, "petal_width")
    assert cli(["pipeline", "rerun", PIPELINE, "--from-failed", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert [s["state"] for s in run["stages"]] == ["reused", "reused", "succeeded", "succeeded"]
    assert [s["rows_in"] for s in run["stages"][2:]] == [32, 30]
    assert run["stages"][2]["log"].count("-> ") == 3  # each step logged its rows in and out
    with pctx.db.session() as s:
        dv = data_service.get_version_by_id_or_raise(session=s, dataset_version_id=run["dataset_version_id"])
        loaded = data_service.read(store=pctx.store, dataset_version=dv)
    assert len(loaded) == 30 and loaded["species"].tolist() == base["species"].tolist()  # the first kept
    assert loaded["petal_length"].tolist() == pytest.approx((base["petal_length"] * 10).tolist())
    assert loaded["petal_ratio"].tolist() == pytest.approx(
        (base["petal_length"] / base["petal_width"]).tolist()
    )

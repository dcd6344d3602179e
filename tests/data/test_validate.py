"""Validation: every bad cell and column reported at once with column, row and reason; clean typed output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mloncall.core.errors import InvalidInput
from mloncall.data import files, iris, validation
from mloncall.data.validation import DataValidationError, Failure
from tests.data.samples import GOOD_ROWS, csv_text

Write = Callable[[str, "str | bytes"], Path]


def failures_of(path: Path, schema: dict[str, Any], **kwargs: Any) -> DataValidationError:
    """The validation error of a file that must fail."""
    with pytest.raises(DataValidationError) as info:
        validation.validate(files.read_table(path), schema=schema, source=str(path), **kwargs)
    return info.value


def refused(frame: pd.DataFrame, schema: dict[str, Any]) -> DataValidationError:
    """The validation error of a frame that must fail."""
    with pytest.raises(DataValidationError) as info:
        validation.validate(frame, schema=schema)
    return info.value


def only(err: DataValidationError) -> Failure:
    assert len(err.failures) == 1, [str(f) for f in err.failures]
    return err.failures[0]


def test_a_good_file_comes_back_typed_and_in_schema_order(write: Write, iris_schema: dict[str, Any]) -> None:
    shuffled = "species,petal_width,sepal_length,sepal_width,petal_length"
    path = write("ok.csv", csv_text("setosa,0.2,5.1,3.5,1.4", "virginica,2.5,6.3,3.3,6.0", header=shuffled))
    clean = validation.validate(files.read_table(path), schema=iris_schema)
    assert list(clean.columns) == [*iris.FEATURES, iris.TARGET]
    assert all(clean[f].dtype == np.float64 for f in iris.FEATURES)
    assert pd.api.types.is_string_dtype(clean[iris.TARGET].dtype)
    assert clean.iloc[1].tolist() == [6.3, 3.3, 6.0, 2.5, "virginica"]


def test_missing_column(write: Write, iris_schema: dict[str, Any]) -> None:
    header = "sepal_length,sepal_width,petal_length,species"
    path = write("missing.csv", csv_text("5.1,3.5,1.4,setosa", header=header))
    f = only(failures_of(path, iris_schema))
    assert (f.column, f.row, f.reason) == ("petal_width", None, "column 'petal_width' is missing")


def test_extra_column(write: Write, iris_schema: dict[str, Any]) -> None:
    path = write(
        "extra.csv", csv_text(GOOD_ROWS[0] + ",blue", header=f"{','.join(iris.FEATURES)},species,colour")
    )
    f = only(failures_of(path, iris_schema))
    assert (f.column, f.row, f.reason) == ("colour", None, "column 'colour' is not expected")


def test_renamed_column_suggests_the_expected_name(write: Write, iris_schema: dict[str, Any]) -> None:
    header = "sepal_len,sepal_width,petal_length,petal_width,species"
    path = write("renamed.csv", csv_text(*GOOD_ROWS, header=header))
    err = failures_of(path, iris_schema)
    assert [(f.column, f.row) for f in err.failures] == [("sepal_length", None), ("sepal_len", None)]
    assert err.failures[0].reason == "column 'sepal_length' is missing"
    assert err.failures[1].reason == "column 'sepal_len' is not expected (did you mean 'sepal_length'?)"
    assert "did you mean 'sepal_length'?" in err.message


def test_semicolon_separated_file_gets_a_hint(write: Write, iris_schema: dict[str, Any]) -> None:
    path = write(
        "semi.csv", "sepal_length;sepal_width;petal_length;petal_width;species\n5.1;3.5;1.4;0.2;setosa\n"
    )
    err = failures_of(path, iris_schema)
    assert "is the file separated by ';'" in err.failures[-1].reason


def test_text_in_a_numeric_column(write: Write, iris_schema: dict[str, Any]) -> None:
    path = write("text.csv", csv_text(GOOD_ROWS[0], GOOD_ROWS[1], "6.3,abc,6.0,2.5,virginica"))
    f = only(failures_of(path, iris_schema))
    assert (f.column, f.row, f.reason, f.value) == ("sepal_width", 3, "'abc' is not a number", "abc")
    assert str(f) == "row 3 column 'sepal_width': 'abc' is not a number"


def test_nan_and_inf_are_failures_not_numbers(write: Write, iris_schema: dict[str, Any]) -> None:
    rows = [
        "nan,3.5,1.4,0.2,setosa",
        "5.1,inf,1.4,0.2,setosa",
        "5.1,3.5,-inf,0.2,setosa",
        "5.1,3.5,1.4,NaN,setosa",
    ]
    err = failures_of(write("nan.csv", csv_text(*rows)), iris_schema)
    got = [(f.row, f.column, f.reason) for f in err.failures]
    assert got == [
        (1, "sepal_length", "'nan' is not a finite number"),
        (2, "sepal_width", "'inf' is not a finite number"),
        (3, "petal_length", "'-inf' is not a finite number"),
        (4, "petal_width", "'NaN' is not a finite number"),
    ]


def test_nan_and_inf_in_a_typed_frame(iris_schema: dict[str, Any]) -> None:
    frame = iris.iris_frame().head(3).copy()
    frame.loc[0, "sepal_length"] = np.nan
    frame.loc[2, "petal_width"] = np.inf
    err = refused(frame, iris_schema)
    assert [(f.row, f.column, f.reason) for f in err.failures] == [
        (1, "sepal_length", "value is missing or NaN"),
        (3, "petal_width", "'inf' is not a finite number"),
    ]


def test_null_cell(write: Write, iris_schema: dict[str, Any]) -> None:
    path = write("null.csv", csv_text(GOOD_ROWS[0], "7.0,3.2,,1.4,versicolor"))
    f = only(failures_of(path, iris_schema))
    assert (f.column, f.row, f.reason, f.value) == ("petal_length", 2, "value is missing (empty cell)", None)


def test_missing_label(write: Write, iris_schema: dict[str, Any]) -> None:
    f = only(failures_of(write("nolabel.csv", csv_text(GOOD_ROWS[0], "7.0,3.2,4.7,1.4,")), iris_schema))
    assert (f.column, f.row, f.reason) == ("species", 2, "value is missing (empty cell)")


def test_out_of_range_value(write: Write, iris_schema: dict[str, Any]) -> None:
    # Iris sepal_length spans [4.3, 7.9]: with the 25% margin anything outside [3.4, 8.8] is refused
    path = write("range.csv", csv_text(*GOOD_ROWS, "88.0,3.0,1.4,0.2,setosa", "8.8,3.0,1.4,0.2,setosa"))
    f = only(failures_of(path, iris_schema))
    assert (f.column, f.row, f.value) == ("sepal_length", 5, "88.0")
    assert f.reason == "88 is outside the expected range [3.4, 8.8]"
    clean = validation.validate(files.read_table(path), schema=iris_schema, range_margin=None)
    assert clean["sepal_length"].max() == 88.0  # ranges are a policy the caller may switch off


def test_a_wider_margin_accepts_more(write: Write, iris_schema: dict[str, Any]) -> None:
    path = write("range.csv", csv_text("9.5,3.0,1.4,0.2,setosa"))
    failures_of(path, iris_schema, range_margin=0.25)
    assert len(validation.validate(files.read_table(path), schema=iris_schema, range_margin=1.0)) == 1


def test_unknown_label(write: Write, iris_schema: dict[str, Any]) -> None:
    path = write("label.csv", csv_text(*GOOD_ROWS, "5.0,3.0,1.5,0.2,unicorn"))
    f = only(failures_of(path, iris_schema))
    assert (f.column, f.row, f.value) == ("species", 5, "unicorn")
    assert f.reason == "'unicorn' is not a known class (expected one of: setosa, versicolor, virginica)"


def test_empty_frame(iris_schema: dict[str, Any]) -> None:
    err = refused(iris.iris_frame().iloc[:0], iris_schema)
    f = only(err)
    assert (f.column, f.row, f.reason) == (None, None, "there are no data rows")


def test_every_failure_is_reported_at_once_in_row_then_column_order(
    write: Write, iris_schema: dict[str, Any]
) -> None:
    header = "sepal_length,sepal_width,petal_length,petal_wdth,species,notes"
    rows = [
        "5.1,3.5,1.4,0.2,setosa,a",
        "x,3.5,,0.2,unicorn,b",
        "5.1,inf,1.4,0.2,setosa,c",
        "99,3.5,1.4,0.2,,d",
    ]
    path = write("many.csv", csv_text(*rows, header=header))
    err = failures_of(path, iris_schema)
    assert [str(f) for f in err.failures] == [
        "column 'petal_width' is missing",
        "column 'petal_wdth' is not expected (did you mean 'petal_width'?)",
        "column 'notes' is not expected",
        "row 2 column 'sepal_length': 'x' is not a number",
        "row 2 column 'petal_length': value is missing (empty cell)",
        "row 2 column 'species': 'unicorn' is not a known class (expected one of: "
        "setosa, versicolor, virginica)",
        "row 3 column 'sepal_width': 'inf' is not a finite number",
        "row 4 column 'sepal_length': 99 is outside the expected range [3.4, 8.8]",
        "row 4 column 'species': value is missing (empty cell)",
    ]
    assert err.total == 9
    assert err.message.startswith(f"{path}: 9 problems: column 'petal_width' is missing; ")
    assert err.message.endswith("; and 4 more")
    assert err.details == [f.to_dict() for f in err.failures]
    assert err.to_dict()["code"] == "invalid_input"


def test_failures_are_capped_but_all_counted(iris_schema: dict[str, Any]) -> None:
    frame = iris.iris_like_samples(3000, seed=1).astype({"sepal_width": object})
    frame["sepal_width"] = "wide"
    err = refused(frame, iris_schema)
    assert err.total == 3000
    assert len(err.failures) == validation.MAX_FAILURES
    assert [f.row for f in err.failures[:3]] == [1, 2, 3]
    assert "3000 problems" in err.message and "and 2995 more" in err.message


def test_validation_does_not_change_the_input(iris_schema: dict[str, Any]) -> None:
    frame = iris.iris_frame().astype(str)
    before = frame.copy()
    validation.validate(frame, schema=iris_schema)
    pd.testing.assert_frame_equal(frame, before)


def test_rows_are_numbered_by_position_whatever_the_index(iris_schema: dict[str, Any]) -> None:
    frame = iris.iris_frame().head(3).set_axis([10, 20, 30])
    frame.loc[30, "sepal_length"] = -50.0
    err = refused(frame, iris_schema)
    assert only(err).row == 3


def test_an_invalid_schema_is_refused() -> None:
    with pytest.raises(InvalidInput, match="invalid dataset schema"):
        validation.validate(iris.iris_frame(), schema={"features": []})
    with pytest.raises(InvalidInput, match="used twice"):
        validation.validate(iris.iris_frame(), schema={"features": [{"name": "a"}, {"name": "a"}]})


def test_infer_schema_of_iris(iris_schema: dict[str, Any]) -> None:
    assert [f["name"] for f in iris_schema["features"]] == iris.FEATURES
    assert iris_schema["features"][0] == {"name": "sepal_length", "dtype": "float64", "min": 4.3, "max": 7.9}
    assert iris_schema["target"] == {"name": "species", "classes": ["setosa", "versicolor", "virginica"]}


def test_infer_schema_from_a_csv_of_text(write: Write) -> None:
    schema = validation.infer_schema(
        files.read_table(write("ok.csv", csv_text(*GOOD_ROWS))), target="species"
    )
    assert schema["features"][3] == {"name": "petal_width", "dtype": "float64", "min": 0.2, "max": 2.5}
    assert schema["target"]["classes"] == ["setosa", "versicolor", "virginica"]


def test_infer_schema_needs_the_target_column() -> None:
    with pytest.raises(
        InvalidInput, match=r"target column 'specie' is not in the data \(did you mean 'species'\?\)"
    ):
        validation.infer_schema(iris.iris_frame(), target="specie")
    with pytest.raises(InvalidInput, match="its columns are: sepal_length, sepal_width"):
        validation.infer_schema(iris.iris_frame(), target="label")


def test_infer_schema_refuses_a_non_numeric_feature(write: Write) -> None:
    path = write(
        "colour.csv", csv_text("5.1,red,setosa", "4.9,blue,setosa", header="sepal_length,colour,species")
    )
    with pytest.raises(DataValidationError) as info:
        validation.infer_schema(files.read_table(path), target="species")
    assert [(f.row, f.column, f.reason) for f in info.value.failures] == [
        (1, "colour", "'red' is not a number"),
        (2, "colour", "'blue' is not a number"),
    ]


def test_infer_schema_needs_a_feature() -> None:
    with pytest.raises(InvalidInput, match="no feature columns"):
        validation.infer_schema(iris.iris_frame()[["species"]], target="species")

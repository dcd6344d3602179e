"""Schema diff against the last good run: renames found by name and values, type changes named."""

from __future__ import annotations

from pathlib import Path

import pytest

from mloncall.data.files import read_table
from mloncall.data.iris import iris_frame
from mloncall.pipelines.schemadiff import SchemaMismatch, diff_columns, profile_columns


@pytest.fixture(scope="module")
def last_good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    path = tmp_path_factory.mktemp("good") / "iris.csv"
    iris_frame().to_csv(path, index=False)
    return profile_columns(read_table(path))


def _csv(tmp_path: Path, frame: object) -> Path:
    path = tmp_path / "incoming.csv"
    frame.to_csv(path, index=False)  # type: ignore[attr-defined]
    return path


def test_the_same_columns_make_no_diff(tmp_path: Path, last_good: dict[str, dict[str, object]]) -> None:
    diff = diff_columns(read_table(_csv(tmp_path, iris_frame().sample(frac=1.0, random_state=3))), last_good)
    assert diff.ok and diff.messages() == []
    assert "last good run" in diff.render()


def test_a_csv_with_a_renamed_column_names_the_rename(
    tmp_path: Path, last_good: dict[str, dict[str, object]]
) -> None:
    frame = iris_frame().rename(columns={"petal_width": "PetalWidth"})
    diff = diff_columns(read_table(_csv(tmp_path, frame)), last_good)
    assert [(r.old, r.new) for r in diff.renamed] == [("petal_width", "PetalWidth")]
    assert diff.added == [] and diff.removed == []
    with pytest.raises(SchemaMismatch, match="'petal_width' was renamed to 'PetalWidth'") as caught:
        diff.raise_if_changed("incoming.csv")
    assert caught.value.details["renamed"][0]["new"] == "PetalWidth"
    assert "| renamed | petal_width → PetalWidth |" in diff.render()


def test_a_column_renamed_to_a_dissimilar_name_and_a_new_one(
    tmp_path: Path, last_good: dict[str, dict[str, object]]
) -> None:
    frame = iris_frame().drop(columns=["sepal_width"])
    frame["batch"] = "b1"
    diff = diff_columns(read_table(_csv(tmp_path, frame)), last_good)
    assert diff.removed == ["sepal_width"] and diff.added == ["batch"] and diff.renamed == []
    assert "column 'sepal_width' is missing" in "; ".join(diff.messages())
    assert "column 'batch' is new" in "; ".join(diff.messages())


def test_a_changed_type_is_named_with_examples(
    tmp_path: Path, last_good: dict[str, dict[str, object]]
) -> None:
    frame = iris_frame().astype({"sepal_length": object})
    frame.loc[[3, 9], "sepal_length"] = ["five", "n/a"]
    diff = diff_columns(read_table(_csv(tmp_path, frame)), last_good)
    assert [(t.column, t.old, t.new) for t in diff.type_changes] == [("sepal_length", "number", "text")]
    assert "column 'sepal_length' changed type from number to text, e.g. 'five', 'n/a'" in diff.messages()


def test_two_renames_at_once_each_find_their_column(last_good: dict[str, dict[str, object]]) -> None:
    frame = iris_frame().rename(columns={"sepal_length": "sepal_len", "petal_length": "petal_len"})
    diff = diff_columns(frame, last_good)
    assert sorted((r.old, r.new) for r in diff.renamed) == [
        ("petal_length", "petal_len"),
        ("sepal_length", "sepal_len"),
    ]

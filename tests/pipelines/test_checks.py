"""The fast row checks find exactly what pandera's lazy validation finds, cell by cell."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mloncall.core.errors import InvalidInput
from mloncall.pipelines.checks import CheckedSchema, pandera_triples, validate_frame

SCHEMA = {
    "features": [{"name": "a", "min": 0, "max": 10}, {"name": "b", "min": 0, "max": 4}, {"name": "gone"}],
    "target": {"name": "t", "classes": ["s", "v"]},
    "checks": {
        "u": {"unique": True},
        "code": {"pattern": r"ab\d", "not_null": True},
        "a": {"max": 11},
        "color": {"allowed": ["red", "blue"]},
        "n": {"min": 0, "not_null": True, "unique": True},
    },
}


def _mixed() -> pd.DataFrame:
    """NaN, ±inf, text and booleans among numbers, out of range, empty cells, repeats, bad labels, an extra
    column and a missing one."""
    return pd.DataFrame(
        {
            "a": [1.0, np.nan, np.inf, 50.0, 2.0, -np.inf, 3.0, 11.5],
            "b": ["1", "x", None, "2.5", "inf", "nan", " 3 ", "-9"],
            "t": ["s", "v", None, "zz", "s", 5, "s", "v"],
            "u": [1, 2, 2, 3, np.nan, np.nan, 7, 8],
            "code": ["ab1", "cd", None, "ab3", "ab4x", 5, "ab9", "xab1"],
            "color": ["red", None, "green", "blue", "red", "red", 1, "blue"],
            "n": [1, 2, 3, 3, -1, 5, 6, 7],
            "extra": 1,
        }
    )


def test_every_kind_of_bad_cell_is_found_as_pandera_finds_it() -> None:
    frame = _mixed()
    result = validate_frame(frame, SCHEMA)
    assert result.triples() == pandera_triples(frame, SCHEMA)
    found = result.triples()
    for expected in [
        (None, "gone", "column_in_dataframe"),
        (None, "extra", "column_in_schema"),
        (1, "a", "not_nullable"),
        (2, "a", "finite"),
        (3, "a", "in_range"),
        (7, "a", "range"),
        (1, "b", "number"),
        (5, "b", "number"),
        (4, "b", "finite"),
        (7, "b", "in_range"),
        (2, "t", "not_nullable"),
        (5, "t", "known_class"),
        (1, "u", "field_uniqueness"),
        (2, "code", "not_nullable"),
        (7, "code", "pattern"),
        (2, "color", "allowed"),
        (4, "n", "range"),
        (3, "n", "field_uniqueness"),
    ]:
        assert expected in found
    assert (6, "b", "number") not in found  # " 3 " is a number with spaces around it
    assert (4, "u", "field_uniqueness") not in found  # empty cells are not repeats
    assert result.valid.tolist() == [True] + [False] * 7
    assert result.bad_rows == int((~result.valid).sum())
    assert result.counts["column_in_schema"] == 1


def test_rows_that_pass_are_marked_valid_and_the_values_are_kept() -> None:
    schema = {"features": [{"name": "x", "min": 0, "max": 1}], "target": {"name": "y", "classes": ["p", "q"]}}
    frame = pd.DataFrame({"x": [0.5, 7.0, 0.2, np.nan], "y": ["p", "q", "r", "q"]}, index=[10, 11, 12, 13])
    result = validate_frame(frame, schema)
    assert result.valid.tolist() == [True, False, False, False]
    cells = [
        [int(r.row), str(r.column), str(r.check), None if pd.isna(r.value) else r.value]
        for r in result.failures.itertuples()
    ]
    assert cells == [
        [1, "x", "in_range", "7"],
        [2, "y", "known_class", "r"],
        [3, "x", "not_nullable", None],
    ]
    assert result.triples() == pandera_triples(frame, schema)
    assert result.ok is False and result.share_bad == 0.75


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_frames_agree_with_pandera(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 500
    a = rng.normal(5, 3, n)
    a[rng.random(n) < 0.05] = np.nan
    a[rng.random(n) < 0.03] = np.inf
    labels = rng.choice(np.array(["s", "v", "w", None], dtype=object), n, p=[0.45, 0.45, 0.05, 0.05])
    ids = rng.integers(0, n * 2, n)
    frame = pd.DataFrame({"a": a, "t": pd.array(labels, dtype="str"), "id": ids})
    schema = {
        "features": [{"name": "a", "min": 0, "max": 10}],
        "target": {"name": "t", "classes": ["s", "v"]},
        "checks": {"id": {"unique": True, "max": n * 1.5}},
        "range_margin": 0.1,
    }
    result = validate_frame(frame, schema)
    assert result.bad_cells > 0
    assert result.triples() == pandera_triples(frame, schema)


def test_a_clean_frame_and_an_empty_one_have_no_failures() -> None:
    schema = {"features": [{"name": "x"}], "target": {"name": "y"}}
    assert validate_frame(pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]}), schema).ok
    empty = validate_frame(
        pd.DataFrame({"x": pd.Series([], dtype=float), "y": pd.Series([], dtype=str)}), schema
    )
    assert empty.ok and empty.rows == 0 and empty.share_bad == 0.0


def test_declared_checks_are_themselves_checked() -> None:
    base = {"features": [{"name": "x"}]}
    with pytest.raises(InvalidInput, match=r"min 5\.0 is above max 1\.0"):
        CheckedSchema.parse({**base, "checks": {"x": {"min": 5, "max": 1}}})
    with pytest.raises(InvalidInput, match="not a regular expression"):
        CheckedSchema.parse({**base, "checks": {"x": {"pattern": "("}}})
    with pytest.raises(InvalidInput, match=r"checks\.x\.typo"):
        CheckedSchema.parse({**base, "checks": {"x": {"typo": True}}})

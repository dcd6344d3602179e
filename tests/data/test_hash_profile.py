"""Content hashes (canonical, reproducible), reference profiles (checked against numpy), the Iris data."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mloncall.core.errors import InvalidInput
from mloncall.data import files, iris, validation
from mloncall.data import profile as profiling
from tests.data.samples import GOOD_ROWS, csv_text

Write = Callable[[str, "str | bytes"], Path]

SMALL_SCHEMA: dict[str, Any] = {"features": [{"name": "x"}, {"name": "y"}], "target": {"name": "label"}}


SMALL_SCHEMA_IRIS: dict[str, Any] = {
    "features": [{"name": f} for f in iris.FEATURES],
    "target": {"name": iris.TARGET},
}


def small_frame() -> pd.DataFrame:
    return pd.DataFrame({"x": [1.5, -2.0, 0.0], "y": [10.0, 20.0, 30.0], "label": ["a", "bé", "a"]})


def by_hand(frame: pd.DataFrame) -> str:
    """The documented encoding, written out independently of the implementation."""
    out = bytearray(b"mloncall-dataset-v1\n")
    out += struct.pack("<Q", len(frame))
    for name in ("x", "y"):
        out += struct.pack("<Q", len(name)) + name.encode() + b"f"
        out += b"".join(struct.pack("<d", float(v)) for v in frame[name])
    out += struct.pack("<Q", len("label")) + b"label" + b"s"
    labels = [str(v).encode("utf-8") for v in frame["label"]]
    out += b"".join(struct.pack("<Q", len(b)) for b in labels) + b"".join(labels)
    return hashlib.sha256(bytes(out)).hexdigest()


def test_content_hash_follows_the_documented_encoding() -> None:
    frame = small_frame()
    assert profiling.content_hash(frame, schema=SMALL_SCHEMA) == by_hand(frame)


def test_content_hash_is_reproducible_and_sensitive_to_content_and_order(iris_schema: dict[str, Any]) -> None:
    a = validation.validate(iris.iris_frame(), schema=iris_schema)
    b = validation.validate(iris.iris_frame(), schema=iris_schema)
    h = profiling.content_hash(a, schema=iris_schema)
    assert len(h) == 64 and h == profiling.content_hash(b, schema=iris_schema)
    changed = a.copy()
    changed.loc[7, "petal_width"] += 0.1
    assert profiling.content_hash(changed, schema=iris_schema) != h
    relabelled = a.copy()
    relabelled.loc[0, "species"] = "versicolor"
    assert profiling.content_hash(relabelled, schema=iris_schema) != h
    reordered = a.iloc[::-1].reset_index(drop=True)
    assert profiling.content_hash(reordered, schema=iris_schema) != h


def test_content_hash_does_not_depend_on_how_the_data_arrived(write: Write, tmp_path: Path) -> None:
    schema = validation.infer_schema(files.read_table(write("a.csv", csv_text(*GOOD_ROWS))), target="species")
    from_csv = validation.validate(files.read_table(write("a.csv", csv_text(*GOOD_ROWS))), schema=schema)
    spaced = [
        " 5.1, 3.5,1.4 ,0.2,setosa",
        "7.0,3.20,4.7,1.4,versicolor",
        "6.3,3.3,6e0,2.5,virginica",
        GOOD_ROWS[3],
    ]
    from_spaced = validation.validate(files.read_table(write("b.csv", csv_text(*spaced))), schema=schema)
    from_csv.to_parquet(tmp_path / "a.parquet", index=False)
    from_parquet = validation.validate(files.read_table(tmp_path / "a.parquet"), schema=schema)
    hashes = {profiling.content_hash(f, schema=schema) for f in (from_csv, from_spaced, from_parquet)}
    assert len(hashes) == 1


def test_negative_zero_hashes_like_zero() -> None:
    frame = small_frame()
    negative = frame.assign(x=[1.5, -2.0, -0.0])
    assert profiling.content_hash(negative, schema=SMALL_SCHEMA) == profiling.content_hash(
        frame, schema=SMALL_SCHEMA
    )


def test_label_boundaries_are_part_of_the_hash() -> None:
    one = pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, 2.0], "label": ["ab", "c"]})
    two = one.assign(label=["a", "bc"])
    assert profiling.content_hash(one, schema=SMALL_SCHEMA) != profiling.content_hash(
        two, schema=SMALL_SCHEMA
    )


def test_content_hash_of_many_rows_in_chunks_matches_the_encoding() -> None:
    rng = np.random.default_rng(3)
    n = 300_000  # more than one hashing chunk
    frame = pd.DataFrame(
        {"x": rng.normal(size=n), "y": rng.normal(size=n), "label": rng.choice(["a", "bé", "ccc"], size=n)}
    )
    expected = bytearray(b"mloncall-dataset-v1\n") + struct.pack("<Q", n)
    for name in ("x", "y"):
        expected += struct.pack("<Q", 1) + name.encode() + b"f" + frame[name].to_numpy("<f8").tobytes()
    encoded = [s.encode() for s in frame["label"]]
    expected += struct.pack("<Q", 5) + b"label" + b"s"
    expected += np.array([len(b) for b in encoded], dtype="<u8").tobytes() + b"".join(encoded)
    assert profiling.content_hash(frame, schema=SMALL_SCHEMA) == hashlib.sha256(bytes(expected)).hexdigest()


def test_content_hash_needs_the_schema_columns() -> None:
    with pytest.raises(InvalidInput, match="no column"):
        profiling.content_hash(small_frame().drop(columns="y"), schema=SMALL_SCHEMA)


def test_profile_matches_numpy_on_fixed_data() -> None:
    x = np.arange(1.0, 21.0)  # 1..20
    y = np.array([0.5] * 10 + [4.5] * 10)
    frame = pd.DataFrame({"x": x, "y": y, "label": ["a"] * 15 + ["b"] * 5})
    schema = {**SMALL_SCHEMA, "target": {"name": "label", "classes": ["a", "b", "c"]}}
    p = profiling.profile(frame, schema=schema)
    assert p["row_count"] == 20
    assert p["quantile_levels"][:3] == [0.0, 0.01, 0.02] and p["quantile_levels"][-1] == 1.0
    assert len(p["quantile_levels"]) == 101
    fx = p["features"]["x"]
    assert fx["count"] == 20
    assert fx["mean"] == pytest.approx(10.5)
    assert fx["std"] == pytest.approx(np.std(x, ddof=1))
    assert (fx["min"], fx["max"]) == (1.0, 20.0)
    assert fx["quantiles"] == pytest.approx(np.quantile(x, np.linspace(0, 1, 101)).tolist())
    assert fx["quantiles"][50] == pytest.approx(10.5)
    assert fx["histogram"]["edges"] == pytest.approx(np.linspace(1.0, 20.0, 11).tolist())
    assert fx["histogram"]["counts"] == [2] * 10
    fy = p["features"]["y"]
    assert fy["histogram"]["counts"] == [10, 0, 0, 0, 0, 0, 0, 0, 0, 10]
    assert fy["quantiles"][0] == 0.5 and fy["quantiles"][-1] == 4.5
    assert p["class_balance"] == {
        "counts": {"a": 15, "b": 5, "c": 0},
        "shares": {"a": 0.75, "b": 0.25, "c": 0.0},
    }


def test_profile_is_plain_json() -> None:
    import json

    p = profiling.profile(
        iris.iris_frame(), schema=validation.infer_schema(iris.iris_frame(), target="species")
    )
    text = json.dumps(p, allow_nan=False)
    assert json.loads(text) == p
    assert type(p["features"]["sepal_length"]["mean"]) is float
    assert type(p["features"]["sepal_length"]["histogram"]["counts"][0]) is int


def test_profile_of_a_single_row_has_zero_spread() -> None:
    p = profiling.profile(small_frame().head(1), schema=SMALL_SCHEMA)
    assert p["features"]["x"]["std"] == 0.0
    assert p["features"]["x"]["histogram"]["counts"] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]


def test_profile_refuses_unvalidated_data() -> None:
    with pytest.raises(InvalidInput, match="non-finite"):
        profiling.profile(small_frame().assign(x=[1.0, np.nan, 2.0]), schema=SMALL_SCHEMA)
    with pytest.raises(InvalidInput, match="no rows"):
        profiling.profile(small_frame().iloc[:0], schema=SMALL_SCHEMA)


def test_iris_frame_is_the_bundled_iris() -> None:
    frame = iris.iris_frame()
    assert frame.shape == (150, 5)
    assert list(frame.columns) == [*iris.FEATURES, iris.TARGET]
    assert all(frame[f].dtype == np.float64 for f in iris.FEATURES)
    assert frame[iris.TARGET].value_counts().to_dict() == {"setosa": 50, "versicolor": 50, "virginica": 50}
    assert frame.iloc[0].tolist() == [5.1, 3.5, 1.4, 0.2, "setosa"]


def test_iris_like_samples_are_deterministic_balanced_and_iris_like() -> None:
    a = iris.iris_like_samples(3001, seed=11)
    pd.testing.assert_frame_equal(a, iris.iris_like_samples(3001, seed=11))
    assert not a.equals(iris.iris_like_samples(3001, seed=12))
    assert list(a.columns) == [*iris.FEATURES, iris.TARGET]
    assert sorted(a[iris.TARGET].value_counts().tolist()) == [1000, 1000, 1001]
    assert (a[iris.FEATURES].to_numpy() >= 0.1).all()
    means = a.groupby(iris.TARGET)[iris.FEATURES].mean()
    truth = iris.iris_frame().groupby(iris.TARGET)[iris.FEATURES].mean()
    assert np.abs(means.to_numpy() - truth.to_numpy()).max() < 0.1
    assert profiling.content_hash(a, schema=SMALL_SCHEMA_IRIS) == profiling.content_hash(
        iris.iris_like_samples(3001, seed=11), schema=SMALL_SCHEMA_IRIS
    )


def test_iris_like_samples_shift_moves_only_the_named_feature() -> None:
    base = iris.iris_like_samples(500, seed=5)
    shifted = iris.iris_like_samples(500, seed=5, shift={"petal_length": 2.0})
    assert np.allclose(shifted["petal_length"] - base["petal_length"], 2.0)
    pd.testing.assert_frame_equal(shifted.drop(columns="petal_length"), base.drop(columns="petal_length"))


def test_iris_like_samples_refuses_bad_arguments() -> None:
    with pytest.raises(InvalidInput, match="positive integer"):
        iris.iris_like_samples(0, seed=1)
    with pytest.raises(InvalidInput, match="unknown feature"):
        iris.iris_like_samples(10, seed=1, shift={"petal_lenght": 1.0})

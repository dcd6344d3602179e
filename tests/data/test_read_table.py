"""Reading data files: CSV and Parquet, and every way a file can be unreadable."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from mloncall.core.errors import InvalidInput
from mloncall.data import files, iris
from tests.data.samples import GOOD_ROWS, HEADER, csv_text

Write = Callable[[str, "str | bytes"], Path]


def test_csv_is_read_with_every_cell_as_text(write: Write) -> None:
    path = write("ok.csv", csv_text(*GOOD_ROWS, "5.0,,1.4,NA,setosa"))
    df = files.read_table(path)
    assert list(df.columns) == HEADER.split(",")
    assert len(df) == 5
    assert df["sepal_length"].iloc[0] == "5.1"  # text: validation decides what is a number
    assert pd.isna(df["sepal_width"].iloc[4])  # an empty cell is missing
    assert df["petal_width"].iloc[4] == "NA"  # only empty cells are missing; 'NA' stays visible


def test_parquet_is_detected_by_magic_bytes_whatever_the_suffix(tmp_path: Path) -> None:
    frame = iris.iris_frame()
    path = tmp_path / "actually-parquet.csv"
    frame.to_parquet(path, index=False)
    df = files.read_table(path)
    assert len(df) == 150
    assert df["sepal_length"].dtype == "float64"
    pd.testing.assert_frame_equal(df, frame)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(InvalidInput, match=r"nope\.csv does not exist"):
        files.read_table(path)


def test_directory_is_not_a_data_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="is not a regular file"):
        files.read_table(tmp_path)


def test_empty_csv(write: Write) -> None:
    path = write("empty.csv", "")
    with pytest.raises(InvalidInput, match=r"empty\.csv is empty"):
        files.read_table(path)


def test_csv_of_blank_lines_has_no_header(write: Write) -> None:
    path = write("blank.csv", "\n\n\n")
    with pytest.raises(InvalidInput, match=r"blank\.csv has no header row"):
        files.read_table(path)


def test_header_only_csv(write: Write) -> None:
    path = write("header.csv", HEADER + "\n")
    with pytest.raises(InvalidInput, match=r"header\.csv has no data rows \(only the header: sepal_length, "):
        files.read_table(path)


def test_binary_garbage(write: Write) -> None:
    path = write("garbage.csv", random.Random(0).randbytes(4096) + b"\x00\x01\x02")
    with pytest.raises(InvalidInput, match=r"garbage\.csv is not a CSV text file: it contains binary data"):
        files.read_table(path)


def test_non_utf8_text(write: Write) -> None:
    path = write(
        "latin1.csv", csv_text(*GOOD_ROWS).encode() + "5.1,3.5,1.4,0.2,s\xe9tosa\n".encode("latin-1")
    )
    with pytest.raises(InvalidInput, match=r"latin1\.csv is not UTF-8 text"):
        files.read_table(path)


def test_a_row_with_too_many_fields_names_the_line(write: Write) -> None:
    path = write("long.csv", csv_text(GOOD_ROWS[0], "5.1,3.5,1.4,0.2,setosa,EXTRA"))
    with pytest.raises(
        InvalidInput,
        match=r"long\.csv is not a well-formed CSV file: line 3 has 6 fields but the header has 5",
    ):
        files.read_table(path)


def test_a_first_row_longer_than_the_header_is_not_silently_an_index(write: Write) -> None:
    path = write("shifted.csv", csv_text("1,5.1,3.5,1.4,0.2,setosa", "2,7.0,3.2,4.7,1.4,versicolor"))
    with pytest.raises(InvalidInput, match=r"shifted\.csv .*data row 1 has more fields than the header"):
        files.read_table(path)


def test_duplicate_header_names(write: Write) -> None:
    path = write("dupes.csv", csv_text("1,2,3", header="a,b,a"))
    with pytest.raises(
        InvalidInput, match=r"dupes\.csv: column\(s\) 'a' appear more than once in the header"
    ):
        files.read_table(path)


def test_truncated_parquet(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    iris.iris_frame().to_parquet(good, index=False)
    raw = good.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(
        InvalidInput, match=r"cut\.parquet is not a readable Parquet file \(corrupt or truncated\?\)"
    ):
        files.read_table(cut)


def test_parquet_with_a_damaged_middle(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    iris.iris_frame().to_parquet(good, index=False)
    raw = bytearray(good.read_bytes())
    raw[len(raw) - 40 : len(raw) - 8] = b"\xff" * 32  # the footer metadata, keeping the trailing magic
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(raw))
    with pytest.raises(InvalidInput, match=r"bad\.parquet is not a readable Parquet file"):
        files.read_table(bad)


def test_parquet_suffix_without_parquet_content(write: Write) -> None:
    path = write("text.parquet", csv_text(*GOOD_ROWS))
    with pytest.raises(InvalidInput, match=r"text\.parquet is not a readable Parquet file"):
        files.read_table(path)


def test_parquet_with_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "none.parquet"
    iris.iris_frame().iloc[:0].to_parquet(path, index=False)
    with pytest.raises(InvalidInput, match=r"none\.parquet has no data rows"):
        files.read_table(path)


def test_parquet_with_a_stored_index_keeps_it_visible(tmp_path: Path) -> None:
    path = tmp_path / "indexed.parquet"
    iris.iris_frame().set_index("species").to_parquet(path)
    df = files.read_table(path)
    assert "species" in df.columns and len(df) == 150


def test_a_bare_carriage_return_or_a_broken_quote_in_the_header_is_a_clear_error(write: Write) -> None:
    # found by schemathesis: a bare CR inside the first line made the csv module raise, answered 500
    bare_cr = write("cr.csv", b"a\xc2\x84\rb,c\n1,2\n")
    with pytest.raises(InvalidInput, match="not a well-formed CSV file"):
        files.read_table(bare_cr)
    quoted = write("quote.csv", 'a,"b\n1,2\n')
    with pytest.raises(InvalidInput, match="CSV"):
        files.read_table(quoted)

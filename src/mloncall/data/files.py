"""Reading data files: a CSV (every cell as text) or a Parquet file as a frame, or InvalidInput naming the file
and what is wrong with it (missing, empty, binary, not UTF-8, ragged rows, duplicated header names).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from pathlib import Path

import pandas as pd

from mloncall.core.errors import InvalidInput

_PARQUET_MAGIC = b"PAR1"
_PARQUET_SUFFIXES = {".parquet", ".pq", ".parq"}
_SNIFF_BYTES = 64 * 1024


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV (every cell as text) or Parquet file as a frame; InvalidInput names the file and the problem."""
    p = Path(path)
    if not p.exists():
        raise InvalidInput(f"data file {p} does not exist")
    if not p.is_file():
        raise InvalidInput(f"data file {p} is not a regular file")
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise InvalidInput(f"data file {p} cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise InvalidInput(f"data file {p} is empty")
    if head[:4] == _PARQUET_MAGIC or p.suffix.lower() in _PARQUET_SUFFIXES:
        df = _read_parquet(p)
    else:
        df = _read_csv(p, head, complete=size <= len(head))
    if len(df) == 0:
        columns = ", ".join(map(str, df.columns))
        raise InvalidInput(f"data file {p} has no data rows (only the header: {columns})")
    return df


def _read_parquet(p: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(p, engine="pyarrow")
    except Exception as exc:
        raise InvalidInput(
            f"data file {p} is not a readable Parquet file (corrupt or truncated?): {first_line(exc)}"
        ) from None
    if not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index()  # a stored index becomes a visible column rather than silently vanishing
    return df


def _read_csv(p: Path, head: bytes, *, complete: bool) -> pd.DataFrame:
    if b"\x00" in head:
        raise InvalidInput(f"data file {p} is not a CSV text file: it contains binary data (NUL bytes)")
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=complete)
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"data file {p} is not UTF-8 text (undecodable byte at offset {exc.start}); is it a CSV file?"
        ) from None
    try:
        # newline="": the csv module reads line endings itself, so a bare carriage return is a line's end
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as exc:
        raise InvalidInput(f"data file {p} is not a well-formed CSV file: {exc}") from None
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InvalidInput(
            f"data file {p}: column(s) {', '.join(map(repr, dupes))} appear more than once in the header"
        )
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise InvalidInput(f"data file {p} has no header row (it holds only blank lines)") from None
    except pd.errors.ParserError as exc:
        message = first_line(exc)
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
        if m:
            message = f"line {m[2]} has {m[3]} fields but the header has {m[1]}"
        raise InvalidInput(f"data file {p} is not a well-formed CSV file: {message}") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"data file {p} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    if not isinstance(df.index, pd.RangeIndex):
        # pandas turns surplus leading fields into an index when the first data row is longer than the header
        raise InvalidInput(
            f"data file {p} is not a well-formed CSV file: data row 1 has more fields than the header "
            f"({len(df.columns)} columns); is a header name missing or is there a trailing separator?"
        )
    return df


def first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text.removeprefix("Error tokenizing data. C error: ")

"""Open Inference Protocol v2 input tensors as rows in signature order: one `[n, n_features]` matrix or one
tensor per feature, JSON data (flat or nested) or raw bytes (the binary tensor extension).

Every rejection is a `RequestError` naming the input, the row and the feature (see `serving.validation`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mloncall.serving.validation import (
    MATRIX_INPUT,
    FeatureSchema,
    bad,
    check_finite,
    check_numbers,
    check_rows,
    constant,
    inside,
    kind_of,
    naming,
    quoted,
    to_float64,
)

_DTYPES: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}


def _row_of(where: str) -> Callable[[int], str]:
    """Names row i of one feature's input in an error message."""
    return lambda i: f"{where} row {i}"


class _Binary:
    """The raw tensor bytes after the JSON header (binary tensor extension), consumed input by input."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int, where: str, field: str) -> memoryview:
        if self.offset + size > len(self.data):
            raise bad(
                f"{where}: binary_data_size {size} runs past the end of the request body",
                "wrong_shape",
                field,
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk


def rows_from_oip(
    inputs: Any, schema: FeatureSchema, max_rows: int, binary: memoryview | None = None
) -> np.ndarray:
    """OIP `inputs` as float64 rows in signature order.

    Either one FP32/FP64 tensor of shape [n, n_features] named `input` (as the model's metadata says), or
    one tensor per feature, named after it, of shape [n] or [n, 1]. Data is row-major, flat or nested, or raw
    little-endian bytes after the JSON header when the input has `parameters.binary_data_size`.
    """
    if type(inputs) is not list or not inputs:
        raise bad("'inputs' must be a non-empty list of tensors", "wrong_shape", "inputs")
    seen: set[str] = set()
    for i, t in enumerate(inputs):
        if type(t) is not dict:
            raise bad(f"inputs[{i}]: expected a tensor object, got {kind_of(t)}", "wrong_shape", "inputs")
        name = t.get("name")
        if type(name) is not str:
            raise bad(f"inputs[{i}]: 'name' must be a string", "wrong_shape", "inputs")
        if name in seen:
            raise bad(f"input {quoted(name)} is given twice: name each input once", "wrong_shape", name)
        seen.add(name)
    blob = _Binary(binary) if binary is not None else None
    if seen <= schema.index.keys():
        X = _per_feature(inputs, schema, max_rows, blob)
    elif seen == {MATRIX_INPUT}:
        X = _matrix(inputs[0], schema, max_rows, blob)
    else:
        unknown = next(t["name"] for t in inputs if t["name"] not in schema.index)
        raise bad(
            f"unknown input {quoted(unknown)}: send one tensor [n, {schema.width}] named '{MATRIX_INPUT}' or "
            f"one tensor per feature ({', '.join(schema.features)})",
            "unknown_feature",
            unknown,
        )
    if blob is not None and blob.offset != len(blob.data):
        raise bad("the request body holds more binary data than the inputs declare", "wrong_shape", "inputs")
    return X


def _header(t: dict[str, Any], where: str) -> tuple[list[int], np.dtype[Any]]:
    name = t["name"]
    datatype = t.get("datatype")
    dtype = _DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise bad(
            f"{where}: datatype {datatype!r} is not supported; send FP32 or FP64", "wrong_datatype", name
        )
    shape = t.get("shape")
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        raise bad(
            f"{where}: 'shape' must be a list of non-negative integers, got {shape!r}", "wrong_shape", name
        )
    return shape, dtype


def _values(t: dict[str, Any], count: int, dtype: np.dtype[Any], where: str, blob: _Binary | None) -> Any:
    """The tensor's values: a flat float64 array from bytes, else the JSON `data` list (flat or nested)."""
    name = t["name"]
    params = t.get("parameters")
    size = params.get("binary_data_size") if type(params) is dict else None
    if size is not None:
        if blob is None:
            raise bad(
                f"{where}: binary_data_size given but the request has no binary part", "wrong_shape", name
            )
        if type(size) is not int or size != count * dtype.itemsize:
            raise bad(
                f"{where}: binary_data_size {size!r} does not match the shape "
                f"({count} x {dtype.itemsize} bytes)",
                "wrong_shape",
                name,
            )
        return np.frombuffer(blob.take(size, where, name), dtype=dtype).astype(np.float64)
    if "data" not in t:
        raise bad(f"{where}: no 'data'", "wrong_shape", name)
    data = t["data"]
    if type(data) is not list:
        raise bad(f"{where}: 'data' must be a list, got {kind_of(data)}", "wrong_shape", name)
    return data


def _matrix(t: dict[str, Any], schema: FeatureSchema, max_rows: int, blob: _Binary | None) -> np.ndarray:
    name = t["name"]
    where = f"input {quoted(name)}"
    shape, dtype = _header(t, where)
    width = schema.width
    if len(shape) != 2 or shape[1] != width:
        raise bad(
            f"{where}: shape {shape} should be [n, {width}] ({', '.join(schema.features)})",
            "wrong_shape",
            name,
        )
    n = shape[0]
    check_rows(n, max_rows, where, name)
    features = schema.features
    data = _values(t, n * width, dtype, where, blob)
    if isinstance(data, np.ndarray):
        X = data.reshape(n, width)
    elif data and type(data[0]) is list:
        if len(data) != n:
            raise bad(f"{where}: 'data' has {len(data)} rows, the shape says {n}", "wrong_shape", name)
        names = tuple(f"'{f}'" for f in features)
        for r, row in enumerate(data):
            if type(row) is not list or len(row) != width:
                got = f"{len(row)} values" if type(row) is list else kind_of(row)
                raise bad(f"{where} row {r}: expected {width} values, got {got}", "wrong_shape", name)
            check_numbers(row, naming(f"{where} row {r}, feature ", names), features.__getitem__)
        X = to_float64(data, where, name)
        if all(map(inside, data)):
            return X
    else:
        if len(data) != n * width:
            raise bad(
                f"{where}: 'data' has {len(data)} values, shape {shape} needs {n * width}", "wrong_shape"
            )
        check_numbers(
            data,
            lambda i: f"{where} row {i // width}, feature '{features[i % width]}'",
            lambda i: features[i % width],
        )
        X = to_float64(data, where, name).reshape(n, width)
        if inside(data):
            return X
    check_finite(X, lambda r, c: f"{where} row {r}, feature '{features[c]}'", features)
    return X


def _per_feature(
    inputs: list[dict[str, Any]], schema: FeatureSchema, max_rows: int, blob: _Binary | None
) -> np.ndarray:
    n: int | None = None
    columns: dict[str, np.ndarray] = {}
    for t in inputs:  # names are unique and each a feature (rows_from_oip checked)
        name = t["name"]
        where = f"input {quoted(name)}"
        shape, dtype = _header(t, where)
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise bad(f"{where}: shape {shape} should be [n] or [n, 1]", "wrong_shape", name)
        if n is None:
            n = shape[0]
            check_rows(n, max_rows, where, name)
        elif shape[0] != n:
            raise bad(f"{where}: {shape[0]} rows, other inputs have {n}", "wrong_shape", name)
        data = _values(t, n, dtype, where, blob)
        if not isinstance(data, np.ndarray):
            if data and type(data[0]) is list:
                if any(type(v) is not list or len(v) != 1 for v in data):
                    raise bad(f"{where}: nested 'data' must hold one value per row", "wrong_shape", name)
                data = [v[0] for v in data]
            if len(data) != n:
                raise bad(
                    f"{where}: 'data' has {len(data)} values, shape {shape} needs {n}", "wrong_shape", name
                )
            check_numbers(data, _row_of(where), constant(name))
            data = to_float64(data, where, name)
        columns[name] = data
    missing = [f for f in schema.features if f not in columns]
    if missing:
        raise bad(f"missing input for feature '{missing[0]}'", "missing_feature", missing[0])
    X = np.column_stack([columns[f] for f in schema.features])
    check_finite(X, lambda r, c: f"input '{schema.features[c]}' row {r}", schema.features)
    return X

"""Profiling validated data: the canonical content hash a version is known by, and the reference profile
(moments, quantiles, histograms, class balance) that monitoring later compares live data with.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import numpy as np
import pandas as pd

from mloncall.core.errors import InvalidInput
from mloncall.data.schemas import DatasetSchema

QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)
HISTOGRAM_BINS = 10
HASH_FORMAT = b"mloncall-dataset-v1\n"

_HASH_CHUNK = 1 << 18


def content_hash(df: pd.DataFrame, *, schema: dict[str, Any]) -> str:
    """sha256 of a validated frame's content in a canonical encoding that does not depend on library versions.

    Encoding: a format tag, the row count, then per schema column its name (length-prefixed UTF-8) and kind;
    features as float64 little-endian (-0.0 folded into 0.0), the target as every label's UTF-8 byte length
    (uint64 little-endian) followed by all label bytes. Row order matters.
    """
    spec = DatasetSchema.parse(schema)
    _require_columns(df, spec)
    digest = hashlib.sha256(HASH_FORMAT)
    digest.update(struct.pack("<Q", len(df)))
    for name in spec.feature_names:
        _hash_name(digest, name, b"f")
        values = np.ascontiguousarray(df[name].to_numpy(dtype=np.float64) + 0.0, dtype="<f8")
        digest.update(values.tobytes())
    if spec.target is not None:
        _hash_name(digest, spec.target.name, b"s")
        _hash_labels(digest, df[spec.target.name])
    return digest.hexdigest()


def _hash_name(digest: Any, name: str, kind: bytes) -> None:
    encoded = name.encode("utf-8")
    digest.update(struct.pack("<Q", len(encoded)) + encoded + kind)


def _hash_labels(digest: Any, labels: pd.Series) -> None:
    codes, uniques = pd.factorize(labels, use_na_sentinel=True)
    if (codes < 0).any():
        raise InvalidInput("cannot hash labels with missing values: validate the data first")
    encoded = [str(u).encode("utf-8") for u in uniques]
    lengths = np.array([len(e) for e in encoded], dtype="<u8")
    digest.update(np.ascontiguousarray(lengths[codes]).tobytes())
    width = int(lengths.max()) if len(encoded) else 0
    if width == 0:
        return
    table = np.zeros((len(encoded), width), dtype=np.uint8)
    for i, e in enumerate(encoded):
        table[i, : len(e)] = np.frombuffer(e, dtype=np.uint8)
    keep = np.arange(width) < lengths[:, None]
    for start in range(0, len(codes), _HASH_CHUNK):  # bounded memory: a chunk of rows at a time
        chunk = codes[start : start + _HASH_CHUNK]
        digest.update(table[chunk][keep[chunk]].tobytes())


def _require_columns(df: pd.DataFrame, spec: DatasetSchema) -> None:
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise InvalidInput(f"the data has no column(s) {', '.join(map(repr, missing))}: validate it first")


def profile(df: pd.DataFrame, *, schema: dict[str, Any]) -> dict[str, Any]:
    """The reference profile of validated data: per-feature moments, 101 quantiles and a 10-bin histogram,
    class balance, row count (plain JSON values)."""
    spec = DatasetSchema.parse(schema)
    _require_columns(df, spec)
    n = len(df)
    if n == 0:
        raise InvalidInput("cannot profile a dataset with no rows")
    x = df[spec.feature_names].to_numpy(dtype=np.float64)
    if not np.isfinite(x).all():
        raise InvalidInput("cannot profile data with missing or non-finite values: validate it first")
    means = x.mean(axis=0)
    stds = x.std(axis=0, ddof=1) if n > 1 else np.zeros(x.shape[1])
    quantiles = np.quantile(x, QUANTILE_LEVELS, axis=0)
    features: dict[str, Any] = {}
    for j, name in enumerate(spec.feature_names):
        counts, edges = np.histogram(x[:, j], bins=HISTOGRAM_BINS)
        features[name] = {
            "count": n,
            "mean": float(means[j]),
            "std": float(stds[j]),
            "min": float(quantiles[0, j]),
            "max": float(quantiles[-1, j]),
            "quantiles": quantiles[:, j].tolist(),
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        }
    result: dict[str, Any] = {
        "row_count": n,
        "quantile_levels": [round(float(q), 2) for q in QUANTILE_LEVELS],
        "features": features,
    }
    if spec.target is not None:
        observed = df[spec.target.name].astype("str").value_counts()
        classes = sorted(set(spec.target.classes or []) | {str(c) for c in observed.index})
        counts_by_class = {c: int(observed.get(c, 0)) for c in classes}
        result["class_balance"] = {
            "counts": counts_by_class,
            "shares": {c: counts_by_class[c] / n for c in classes},
        }
    return result

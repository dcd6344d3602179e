"""Input validation against a version's signature, without pandas: OIP tensors and `/predict` instances.

Every rejection is a `RequestError` whose message names the row and the field, and whose `reason` feeds the
`mloncall_validation_failures_total` metric. Values outside the training range are not errors here: they are
returned as a mask, and the model's out-of-range policy decides between flagging and rejecting.

A per-feature policy (`reject`, `flag` or `impute`, runbook 6's workaround) overrides that policy for one
feature; `impute` replaces the feature's out-of-range value, or fills it when a request leaves it out, with
the training median, and flags the row `imputed:<feature>`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from operator import le
from typing import Any

import numpy as np

from mloncall.core.errors import IntegrityError

_NUMBER_TYPES = frozenset({float, int})
#: Up to this many rows, the training range is judged on Python floats: for the usual one-row request that
#: is several times cheaper than numpy's comparisons, each of which costs microseconds on a tiny array.
_SMALL = 8
OUT_OF_RANGE = "out_of_range"
IMPUTED = "imputed"
#: The largest magnitude a feature value may have. Far past any feature's scale, and far enough below the
#: 32-bit float limit (3.4e38) that a model's own arithmetic on it stays finite: a value at that limit
#: turned a linear model's probabilities into NaN, served with a label as if it were an answer.
MAX_MAGNITUDE = 1e30


class RequestError(Exception):
    """A request that cannot be answered: `status` and `{"error": message}`.

    `reason` is set when the request was refused (it labels `mloncall_validation_failures_total`), and
    `field` names what was wrong in it (a feature, an input, `instances`, or `body` for the body as a whole);
    together they are the refusal's row in the rejections log.
    """

    def __init__(
        self,
        status: int,
        message: str,
        reason: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = headers
        self.field = shown(field) if field is not None else None


def bad(message: str, reason: str = "bad_request", field: str | None = None) -> RequestError:
    return RequestError(400, message, reason, field=field)


#: The one tensor of shape [n, n_features], as the model's metadata names it.
MATRIX_INPUT = "input"
_SHOWN_MAX = 128


def shown(name: str) -> str:
    """A name a client sent, safe to put in a message or a log: control and format characters (a U+202E
    that reverses the text after it) escaped, and at most 128 characters."""
    if name.isprintable() and len(name) <= _SHOWN_MAX:
        return name
    text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in name[:_SHOWN_MAX])
    return text + ("…" if len(name) > _SHOWN_MAX else "")


def quoted(name: str) -> str:
    return f"'{shown(name)}'"


class FeatureSchema:
    """A version's signature compiled for validation: feature order, training ranges, classes."""

    __slots__ = (
        "_plans", "class_set", "classes", "features", "has_range", "highs", "index", "lows", "maxs",
        "medians", "mins", "width",
    )  # fmt: skip

    def __init__(
        self,
        features: Sequence[str],
        classes: Sequence[str],
        mins: Sequence[float],
        maxs: Sequence[float],
        medians: Sequence[float] | None = None,
    ) -> None:
        self.features = tuple(features)
        self.width = len(self.features)
        self.index = {f: i for i, f in enumerate(self.features)}
        self.classes = tuple(classes)
        self.class_set = frozenset(self.classes)
        self.mins = np.asarray(mins, dtype=np.float64)
        self.maxs = np.asarray(maxs, dtype=np.float64)
        self.has_range = bool(np.isfinite(self.mins).any() or np.isfinite(self.maxs).any())
        #: the training range as Python floats, for judging a few rows without numpy
        self.lows: list[float] = self.mins.tolist()
        self.highs: list[float] = self.maxs.tolist()
        self._plans: dict[tuple[str, tuple[tuple[str, str], ...]], Plan] = {}
        #: the training median of each feature (the middle of its range when the signature has none)
        self.medians = np.asarray(medians, dtype=np.float64) if medians is not None else self.midpoints()

    @classmethod
    def from_signature(cls, signature: dict[str, Any], *, where: str) -> FeatureSchema:
        """Compile a signature dict; IntegrityError names what is wrong with it."""
        feats = signature.get("features")
        classes = signature.get("classes")
        if not isinstance(feats, list) or not feats:
            raise IntegrityError(f"{where}: the signature lists no features")
        if not isinstance(classes, list) or not classes:
            raise IntegrityError(f"{where}: the signature lists no classes")
        names: list[str] = []
        mins: list[float] = []
        maxs: list[float] = []
        medians: list[float] = []
        for i, f in enumerate(feats):
            name = f.get("name") if isinstance(f, dict) else None
            if not isinstance(name, str) or not name:
                raise IntegrityError(f"{where}: signature feature {i} has no name")
            names.append(name)
            mins.append(_bound(f.get("min"), -math.inf))
            maxs.append(_bound(f.get("max"), math.inf))
            quantiles = f.get("quantiles")
            median = quantiles.get("0.5") if isinstance(quantiles, dict) else None
            medians.append(_bound(median, math.nan))
        if len(set(names)) != len(names):
            raise IntegrityError(f"{where}: the signature repeats a feature name")
        schema = cls(names, [str(c) for c in classes], mins, maxs)
        known = np.asarray(medians, dtype=np.float64)
        schema.medians = np.where(np.isfinite(known), known, schema.midpoints())
        return schema

    def midpoints(self) -> np.ndarray:
        """One plausible row (middle of each training range, 0 where unknown): the load-time probe."""
        with np.errstate(invalid="ignore"):  # -inf + inf where a bound is unknown: not chosen below
            mid = np.where(np.isfinite(self.mins) & np.isfinite(self.maxs), (self.mins + self.maxs) / 2, 0.0)
        return np.asarray(mid, dtype=np.float64)

    def plan(self, default: str, policies: dict[str, str]) -> Plan:
        """The per-feature policies compiled against this schema, made once per (default, policies)."""
        key = (default, tuple(policies.items()) if policies else ())
        found = self._plans.get(key)
        if found is None:
            if len(self._plans) > 64:  # policies change with the routing table: a few, never many
                self._plans.clear()
            found = self._plans[key] = Plan(self, default, policies)
        return found

    def compatible_with(self, other: FeatureSchema) -> np.ndarray | None:
        """Column positions reordering this schema's rows into `other`'s order; None if the sets differ."""
        if set(self.features) != set(other.features):
            return None
        return np.asarray([self.index[f] for f in other.features], dtype=np.intp)


class Plan:
    """Which features a route imputes and which it rejects out of range, as masks over the signature."""

    __slots__ = ("impute", "imputes", "reject")

    def __init__(self, schema: FeatureSchema, default: str, policies: dict[str, str]) -> None:
        self.impute = np.array([policies.get(f) == "impute" for f in schema.features], dtype=bool)
        self.reject = np.array([policies.get(f, default) == "reject" for f in schema.features], dtype=bool)
        self.imputes = bool(self.impute.any())


def _bound(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def kind_of(value: Any) -> str:
    """How a JSON value reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list (nested value)"
    if isinstance(value, dict):
        return "an object (nested value)"
    return type(value).__name__


def check_numbers(values: list[Any], where: Callable[[int], str], field: Callable[[int], str]) -> None:
    if set(map(type, values)) <= _NUMBER_TYPES:
        return
    for i, v in enumerate(values):
        if type(v) not in _NUMBER_TYPES:
            raise bad(f"{where(i)}: expected a number, got {kind_of(v)}", "wrong_type", field(i))


def constant(field: str) -> Callable[[int], str]:
    """The same field for every position (the values of one feature's input)."""
    return lambda _: field


def naming(prefix: str, names: Sequence[str]) -> Callable[[int], str]:
    """Names position i of a row in an error message."""
    return lambda i: f"{prefix}{names[i]}"


def to_float64(values: Any, where: str, field: str) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64)
    except (OverflowError, ValueError):
        raise bad(f"{where}: a value is too large for a 64-bit float", "not_finite", field) from None


def inside(values: list[Any]) -> bool:
    """Whether a non-empty flat list of numbers is within `MAX_MAGNITUDE` (JSON has no NaN or infinity);
    False sends the values to `check_finite`, which names the first bad one."""
    return min(values) >= -MAX_MAGNITUDE and max(values) <= MAX_MAGNITUDE


def check_finite(X: np.ndarray, where: Callable[[int, int], str], features: Sequence[str]) -> None:
    """Refuse NaN, infinity and values beyond `MAX_MAGNITUDE`, naming the row and feature."""
    ok = np.abs(X) <= MAX_MAGNITUDE  # False for NaN too
    if ok.all():
        return
    r, c = (int(i) for i in np.argwhere(~ok)[0])
    value = X[r, c]
    what = (
        "is not a finite number"
        if not np.isfinite(value)
        else f"is too large: values are at most {MAX_MAGNITUDE:g} in magnitude"
    )
    raise bad(f"{where(r, c)}: value {value} {what}", "not_finite", features[c])


def check_rows(n: int, max_rows: int, where: str, field: str) -> None:
    if n == 0:
        raise bad(f"{where}: no rows to score", "wrong_shape", field)
    if n > max_rows:
        raise bad(
            f"{where}: {n} rows, more than the limit of {max_rows} rows per request", "too_many_rows", field
        )


# --- /predict instances ----------------------------------------------------------------------------------


def rows_from_instances(
    instances: Any, schema: FeatureSchema, max_rows: int, impute: frozenset[str] = frozenset()
) -> np.ndarray:
    """`[{feature: value, ...}, ...]` as float64 rows in signature order.

    A feature in `impute` that a row leaves out (or sends as null) is NaN here: `apply_policies` fills it.
    """
    if type(instances) is not list:
        raise bad(
            f"'instances' must be a list of objects, got {kind_of(instances)}", "wrong_shape", "instances"
        )
    check_rows(len(instances), max_rows, "'instances'", "instances")
    features = schema.features
    width = schema.width
    rows: list[list[Any]] = []
    for i, inst in enumerate(instances):
        if type(inst) is not dict:
            raise bad(
                f"instances[{i}]: expected an object of feature values, got {kind_of(inst)}",
                "wrong_shape",
                "instances",
            )
        complete = True
        try:
            row = [inst[f] for f in features]
        except KeyError:
            missing = [f for f in features if f not in inst and f not in impute]
            if missing:
                raise bad(
                    f"instances[{i}]: missing feature '{missing[0]}'", "missing_feature", missing[0]
                ) from None
            row, complete = [inst.get(f) for f in features], False
        if impute:
            row = [math.nan if v is None and f in impute else v for f, v in zip(features, row, strict=True)]
        if (len(inst) != width) if complete else any(k not in schema.index for k in inst):
            unknown = sorted(k for k in inst if k not in schema.index)
            raise bad(
                f"instances[{i}]: unknown feature {quoted(unknown[0])} (expected {', '.join(features)})",
                "unknown_feature",
                unknown[0],
            )
        check_numbers(row, naming(f"instances[{i}].", features), features.__getitem__)
        rows.append(row)
    X = to_float64(rows, "'instances'", "instances")
    if not impute and all(map(inside, rows)):
        return X
    gaps = _imputable_gaps(X, schema, impute)
    check_finite(
        np.where(gaps, 0.0, X) if gaps is not None else X,
        lambda r, c: f"instances[{r}].{features[c]}",
        features,
    )
    return X


def _imputable_gaps(X: np.ndarray, schema: FeatureSchema, impute: frozenset[str]) -> np.ndarray | None:
    """Where X is NaN in a column the policy imputes (a value left out), or None."""
    if not impute:
        return None
    cols = np.zeros(schema.width, dtype=bool)
    cols[[schema.index[f] for f in impute if f in schema.index]] = True
    gaps = np.isnan(X) & cols
    return gaps if gaps.any() else None


# --- training range ------------------------------------------------------------------------------------


def out_of_range(X: np.ndarray, schema: FeatureSchema) -> np.ndarray | None:
    """A [n, n_features] mask of values outside the training range, or None when every value is inside."""
    if not schema.has_range:
        return None
    mask = (schema.mins > X) | (schema.maxs < X)
    return mask if mask.any() else None


def range_flags(mask: np.ndarray, schema: FeatureSchema) -> list[list[str]]:
    """Per row, `out_of_range:<feature>` for each feature outside its training range."""
    features = schema.features
    return [[f"{OUT_OF_RANGE}:{features[j]}" for j in np.flatnonzero(row)] for row in mask]


def range_error(
    X: np.ndarray, mask: np.ndarray, schema: FeatureSchema, row_name: Callable[[int], str]
) -> RequestError:
    """The rejection of the first out-of-range value: its row, feature, value and the training range."""
    r, c = (int(i) for i in np.argwhere(mask)[0])
    f = schema.features[c]
    return bad(
        f"{row_name(r)}, feature '{f}': value {X[r, c]:g} is outside the training range "
        f"[{schema.mins[c]:g}, {schema.maxs[c]:g}] and this model rejects out-of-range input",
        OUT_OF_RANGE,
        f,
    )


def apply_policies(
    X: np.ndarray,
    schema: FeatureSchema,
    *,
    default: str,
    policies: dict[str, str],
    row_name: Callable[[int], str],
) -> tuple[np.ndarray, np.ndarray | None, list[list[str]] | None]:
    """Fill left-out imputable values and judge the training range, feature by feature.

    Returns the rows to score (imputed values replaced by the training median), the mask of values still
    out of range and flagged, and each row's flags (`out_of_range:<f>`, `imputed:<f>`); a feature whose
    policy is `reject` (or the model's `default`) raises the rejection of its first out-of-range value.
    """
    plan = schema.plan(default, policies)
    if not plan.imputes:
        if not schema.has_range:
            return X, None, None
        if len(X) <= _SMALL:
            lows, highs = schema.lows, schema.highs
            if all(all(map(le, lows, row)) and all(map(le, row, highs)) for row in X.tolist()):
                return X, None, None
    impute, reject = plan.impute, plan.reject
    gaps = np.isnan(X) & impute
    mask = out_of_range(X, schema)
    if mask is None and not gaps.any():
        return X, None, None
    mask = np.zeros(X.shape, dtype=bool) if mask is None else mask
    if (mask & reject).any():
        raise range_error(X, mask & reject, schema, row_name)
    filled = gaps | (mask & impute)
    flagged = mask & ~impute
    if filled.any():
        X = np.where(filled, schema.medians, X)
    rows = range_flags(flagged, schema)
    features = schema.features
    for r, c in np.argwhere(filled):
        rows[r].append(f"{IMPUTED}:{features[c]}")
    return X, (flagged if flagged.any() else None), rows

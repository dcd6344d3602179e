"""What runbook 6 reads off the logs: per feature of the production version, how many requests were refused
for it and how many served rows lacked it, held a value outside its training range, or had it imputed; the
share of traffic affected; and accuracy on affected against unaffected rows where labels arrived. The rows of
synthetic requests (a load test's) are no traffic to judge: only the server errors count them.

It reads the prediction, rejections and feedback logs through `stores.predlog`'s reader only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from mloncall.core import clock
from mloncall.monitoring.stats import error_mask, float_column, server_errors
from mloncall.registry import service as registry
from mloncall.serving import service as routing
from mloncall.stores import predlog
from mloncall.stores.context import Context

MISSING, OUT_OF_RANGE = "missing_feature", "out_of_range"


@dataclass
class FeatureScan:
    """One feature's troubles in a window."""

    name: str
    min: float | None
    max: float | None
    median: float | None
    refused_missing: int = 0
    refused_out_of_range: int = 0
    served_missing: int = 0
    served_out_of_range: int = 0
    imputed: int = 0

    @property
    def troubles(self) -> int:
        return (
            self.refused_missing + self.refused_out_of_range + self.served_missing + self.served_out_of_range
        )

    @property
    def kinds(self) -> list[str]:
        """What is wrong with it: `missing`, `out of range` (or nothing)."""
        out = []
        if self.refused_missing or self.served_missing:
            out.append("missing")
        if self.refused_out_of_range or self.served_out_of_range:
            out.append("out of range")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.name,
            "range": [self.min, self.max],
            "median": self.median,
            "refused_missing": self.refused_missing,
            "refused_out_of_range": self.refused_out_of_range,
            "served_missing": self.served_missing,
            "served_out_of_range": self.served_out_of_range,
            "imputed": self.imputed,
            "kinds": self.kinds,
        }


@dataclass
class Scan:
    """A model's traffic over [since, until) judged feature by feature against its production signature."""

    model: str
    version: int
    since: dt.datetime
    until: dt.datetime
    served: int
    refused: int
    refused_by_reason: dict[str, int]
    server_errors: int
    features: list[FeatureScan]
    affected_served: int
    #: accuracy where labels arrived: {"affected": {...}, "unaffected": {...}}
    accuracy: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.served + self.refused

    @property
    def affected(self) -> int:
        return (
            self.affected_served
            + self.refused_by_reason.get(MISSING, 0)
            + self.refused_by_reason.get(OUT_OF_RANGE, 0)
        )

    @property
    def affected_share(self) -> float:
        return self.affected / self.total if self.total else 0.0

    def troubled(self, min_share: float = 0.0) -> list[FeatureScan]:
        """The features in trouble in more than `min_share` of the requests (a few rows of ordinary traffic
        just outside the training range are not an upstream problem)."""
        return [f for f in self.features if f.troubles and f.troubles / max(self.total, 1) > min_share]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "served": self.served,
            "refused": self.refused,
            "refused_by_reason": self.refused_by_reason,
            "server_errors": self.server_errors,
            "affected": self.affected,
            "affected_share": self.affected_share,
            "features": [f.to_dict() for f in self.features],
            "accuracy": self.accuracy,
        }


def _signature(ctx: Context, model: str) -> tuple[int, list[FeatureScan]]:
    with ctx.db.session() as s:
        version = routing.effective(session=s, name=model).stable_version
        mv = registry.get_version_or_raise(session=s, name=model, version=version)
        feats = list((mv.signature or {}).get("features", []))
    return version, [
        FeatureScan(
            name=f["name"],
            min=f.get("min"),
            max=f.get("max"),
            median=(f.get("quantiles") or {}).get("0.5"),
        )
        for f in feats
    ]


def _column(table: pa.Table | None, name: str) -> list[Any]:
    if table is None or name not in table.column_names:
        return [None] * (0 if table is None else table.num_rows)
    return table.column(name).to_pylist()


def scan(ctx: Context, *, model: str, since: dt.datetime, until: dt.datetime) -> Scan:
    """Every feature's refusals, missing, out-of-range and imputed values, and accuracy by group."""
    version, features = _signature(ctx, model)
    preds = predlog.read_window(
        ctx.store, kind=predlog.PREDICTIONS, model=model, since=since, until=until,
        columns=["id", "version", "label", "flags", "error", "status", predlog.SYNTHETIC], prefixes=("f_",),
    )  # fmt: skip
    rejected = predlog.read_window(
        ctx.store, kind=predlog.REJECTIONS, model=model, since=since, until=until, columns=["reason", "field"]
    )
    reasons, fields_ = _column(rejected.table, "reason"), _column(rejected.table, "field")
    by_reason: dict[str, int] = {}
    for reason in reasons:
        by_reason[str(reason)] = by_reason.get(str(reason), 0) + 1
    for f in features:
        f.refused_missing = sum(
            1 for r, n in zip(reasons, fields_, strict=True) if r == MISSING and n == f.name
        )
        f.refused_out_of_range = sum(
            1 for r, n in zip(reasons, fields_, strict=True) if r == OUT_OF_RANGE and n == f.name
        )
    table = preds.table
    errors = server_errors(table)
    if table is not None and table.num_rows:
        table = table.filter(pa.array(~(error_mask(table) | predlog.synthetic_mask(table))))
    n = 0 if table is None else table.num_rows
    affected = np.zeros(n, dtype=bool)
    flags = [set(x or []) for x in _column(table, "flags")]
    for f in features:
        x = float_column(table, f"f_{f.name}") if table is not None else np.empty(0)
        missing = ~np.isfinite(x)
        with np.errstate(invalid="ignore"):
            outside = np.zeros(n, dtype=bool)
            if f.min is not None:
                outside |= x < f.min
            if f.max is not None:
                outside |= x > f.max
        f.served_missing, f.served_out_of_range = int(missing.sum()), int(outside.sum())
        f.imputed = sum(1 for row in flags if f"imputed:{f.name}" in row)
        affected |= missing | outside
    result = Scan(
        model=model, version=version, since=since, until=until, served=n, refused=rejected.rows,
        refused_by_reason=by_reason, server_errors=errors, features=features,
        affected_served=int(affected.sum()),
    )  # fmt: skip
    if table is not None and n:
        result.accuracy = _accuracy(ctx, model, table, affected, since)
    return result


def _accuracy(
    ctx: Context, model: str, table: pa.Table, affected: np.ndarray, since: dt.datetime
) -> dict[str, Any]:
    """Accuracy of the affected and unaffected served rows whose labels arrived (labels come in later)."""
    feedback = predlog.read_window(
        ctx.store, kind=predlog.FEEDBACK, model=model, since=since,
        until=clock.now() + dt.timedelta(seconds=1), columns=["prediction_id", "label"],
    )  # fmt: skip
    truth = dict(zip(_column(feedback.table, "prediction_id"), _column(feedback.table, "label"), strict=True))
    ids, labels = _column(table, "id"), _column(table, "label")
    out: dict[str, Any] = {}
    for group, mask in (("affected", affected), ("unaffected", ~affected)):
        pairs = [(labels[i], truth[ids[i]]) for i in np.flatnonzero(mask) if ids[i] in truth]
        right = sum(1 for p, t in pairs if p == t)
        out[group] = {
            "rows": int(mask.sum()),
            "labelled": len(pairs),
            "accuracy": right / len(pairs) if pairs else None,
        }
    return out

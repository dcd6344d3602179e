"""The monitor kinds and their parameters: names, defaults, bounds, and the one validator rules go through.

Every parameter a rule can set is declared here, so a rules file with an unknown monitor, an unknown
parameter or a bad value is refused when it is loaded (`validate_params`), not when the monitor first runs.
Durations accept seconds, ISO 8601 (`PT1H`) or the short form rules files use (`90s`, `15m`, `24h`, `7d`,
`1h30m`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from mloncall.core.durations import Duration
from mloncall.core.errors import InvalidInput
from mloncall.monitoring import drift, drift_stats

MONITOR_KINDS = (
    "drift",
    "missing_features",
    "out_of_range",
    "validation_failures",
    "volume",
    "accuracy",
    "error_rate",
    "latency",
    "freshness",
    "pipeline",
)
#: The kinds judged from the pipelines' run history rather than the prediction log.
BATCH_KINDS = ("freshness", "pipeline")


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a number, not true/false")
    return value


Number = Annotated[float, BeforeValidator(_not_bool)]
Count = Annotated[int, BeforeValidator(_not_bool)]
Rate = Annotated[float, BeforeValidator(_not_bool), Field(ge=0.0, le=1.0)]
Probability = Annotated[float, BeforeValidator(_not_bool), Field(gt=0.0, lt=1.0)]


class MonitorParams(BaseModel):
    """Base of every kind's parameters: unknown names and non-finite numbers are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DriftParams(MonitorParams):
    method: Literal["auto", "ks", "wasserstein", "psi"] = "auto"
    ks_p_value: Probability = drift.KS_P_VALUE
    chi2_p_value: Probability = drift.CHI2_P_VALUE
    wasserstein_threshold: Annotated[Number, Field(gt=0)] = drift.WASSERSTEIN_THRESHOLD
    js_threshold: Annotated[Number, Field(gt=0, le=1)] = drift.JS_THRESHOLD
    psi_threshold: Annotated[Number, Field(gt=0)] = drift.PSI_THRESHOLD
    psi_bins: Annotated[Count, Field(ge=2, le=1000)] = drift_stats.PSI_BINS
    psi_epsilon: Annotated[Number, Field(gt=0, lt=0.1)] = drift_stats.PSI_EPSILON
    drift_share: Annotated[Number, Field(gt=0, le=1)] = drift.DRIFT_SHARE
    small_reference: Annotated[Count, Field(ge=1)] = drift.SMALL_REFERENCE
    categorical_unique: Annotated[Count, Field(ge=1, le=1000)] = drift_stats.CATEGORICAL_UNIQUE
    min_rows: Annotated[Count, Field(ge=1)] | None = None
    features: list[str] | None = None
    include_prediction: bool = False
    histogram_bins: Annotated[Count, Field(ge=1, le=1000)] = drift_stats.HISTOGRAM_BINS

    def settings(self) -> drift.DriftSettings:
        return drift.DriftSettings(**self.model_dump(exclude={"features"}))


class MissingFeaturesParams(MonitorParams):
    max_rate: Rate = 0.01
    min_rows: Annotated[Count, Field(ge=1)] = 100


class OutOfRangeParams(MonitorParams):
    # A fresh row from an unchanged distribution falls outside one feature's training [min, max] with
    # probability about 2/(n+1) for n training rows, so a few percent of rows are out of range by chance
    # on small training sets (Iris: ~100 rows, 4 features): the default leaves room for that.
    max_rate: Rate = 0.1
    min_rows: Annotated[Count, Field(ge=1)] = 100


class ValidationFailuresParams(MonitorParams):
    max_rate: Rate = 0.05
    min_requests: Annotated[Count, Field(ge=1)] = 100


class VolumeParams(MonitorParams):
    min_ratio: Annotated[Number, Field(ge=0, lt=1)] = 0.2
    max_ratio: Annotated[Number, Field(gt=1)] | None = None
    lookback: Duration = dt.timedelta(hours=24)
    min_history: Duration = dt.timedelta(hours=1)

    @model_validator(mode="after")
    def _positive(self) -> VolumeParams:
        if self.lookback <= dt.timedelta(0):
            raise ValueError("lookback must be a positive duration")
        if self.min_history < dt.timedelta(0) or self.min_history > self.lookback:
            raise ValueError("min_history must be between 0 and lookback")
        return self


class AccuracyParams(MonitorParams):
    tolerance: Rate = 0.05
    baseline: Rate | None = None
    min_labels: Annotated[Count, Field(ge=1)] = 30
    min_label_coverage: Rate = 0.5
    offset: Duration = dt.timedelta(0)
    buckets: Annotated[Count, Field(ge=1, le=1000)] = 4
    recall_tolerance: Rate | None = None
    min_class_labels: Annotated[Count, Field(ge=1)] = 20

    @model_validator(mode="after")
    def _offset(self) -> AccuracyParams:
        if self.offset < dt.timedelta(0):
            raise ValueError("offset must not be negative")
        return self


class ErrorRateParams(MonitorParams):
    max_error_rate: Rate = 0.01
    min_rows: Annotated[Count, Field(ge=1)] = 100


class LatencyParams(MonitorParams):
    max_p50_ms: Annotated[Number, Field(gt=0)] | None = None
    max_p95_ms: Annotated[Number, Field(gt=0)] | None = None
    max_p99_ms: Annotated[Number, Field(gt=0)] | None = 100.0
    min_rows: Annotated[Count, Field(ge=1)] = 100

    @model_validator(mode="after")
    def _some_limit(self) -> LatencyParams:
        if self.max_p50_ms is None and self.max_p95_ms is None and self.max_p99_ms is None:
            raise ValueError("set at least one of max_p50_ms, max_p95_ms, max_p99_ms")
        return self


class FreshnessParams(MonitorParams):
    #: None: each pipeline's declared freshness SLA
    max_age: Duration | None = None

    @model_validator(mode="after")
    def _positive(self) -> FreshnessParams:
        if self.max_age is not None and self.max_age <= dt.timedelta(0):
            raise ValueError("max_age must be a positive duration")
        return self


class PipelineParams(MonitorParams):
    #: an interrupted run (its process died) counts as failed
    interrupted: bool = True


PARAMS: dict[str, type[MonitorParams]] = {
    "drift": DriftParams,
    "missing_features": MissingFeaturesParams,
    "out_of_range": OutOfRangeParams,
    "validation_failures": ValidationFailuresParams,
    "volume": VolumeParams,
    "accuracy": AccuracyParams,
    "error_rate": ErrorRateParams,
    "latency": LatencyParams,
    "freshness": FreshnessParams,
    "pipeline": PipelineParams,
}


def parse_params(kind: str, params: dict[str, Any] | None) -> MonitorParams:
    """The typed parameters of a monitor kind; InvalidInput names the kind and every bad parameter."""
    if kind not in PARAMS:
        raise InvalidInput(
            f"unknown monitor kind {kind!r}: known kinds are {', '.join(MONITOR_KINDS)}",
            details={"kind": kind},
        )
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidInput(
            f"monitor {kind!r}: params must be a mapping, got {type(params).__name__}", details={"kind": kind}
        )
    model = PARAMS[kind]
    try:
        return model(**{str(k): v for k, v in params.items()})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "(params)"
            if err["type"] == "extra_forbidden":
                known = ", ".join(model.model_fields)
                text = f"unknown parameter (known for {kind}: {known})"
            else:
                text = str(err["msg"]).removeprefix("Value error, ")
            got = err.get("input")
            problems.append(
                {"param": name, "reason": text, "value": None if isinstance(got, dict) else repr(got)}
            )
        listed = "; ".join(f"{p['param']}: {p['reason']}" for p in problems)
        raise InvalidInput(
            f"monitor {kind!r}: bad parameter(s): {listed}", details={"kind": kind, "problems": problems}
        ) from None


def evidence_params(params: MonitorParams) -> dict[str, Any]:
    """The effective parameters as plain JSON values (durations in seconds)."""
    out: dict[str, Any] = {}
    for key, value in params.model_dump().items():
        out[key] = value.total_seconds() if isinstance(value, dt.timedelta) else value
    return out

"""Prometheus alerting rules over mloncall's own `/metrics`, for teams that run their own Prometheus (route its
alerts back with Alertmanager's webhook to `/api/v1/alerts/alertmanager`). The rules are one table, `SERVING_RULES`,
whose expressions and texts are functions of the thresholds; `prometheus_rules` writes them as one rules file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

_HEADER = (
    "# Prometheus alerting rules for mloncall's /metrics, written by `mloncall monitor prometheus-rules`.\n"
    "# Load with `rule_files:` in prometheus.yml; check with `promtool check rules FILE`.\n"
)


@dataclass(frozen=True)
class Thresholds:
    """The job Prometheus scrapes mloncall as, and the limits that alert."""

    job: str = "mloncall"
    max_error_rate: float = 0.01
    max_p99_seconds: float = 0.25
    max_validation_failure_rate: float = 0.05
    max_out_of_range_rate: float = 0.05
    min_volume_ratio: float = 0.5


def _rate(series: str, window: str, offset: str = "") -> str:
    """PromQL: the per-second rate of a counter over `window` (`offset` earlier), per model."""
    return f"sum by (model) (rate({series}[{window}]{' offset ' + offset if offset else ''}))"


def _share_above(part: str, whole: str, window: str, limit: float) -> str:
    """PromQL: per model, the rate of `part` is more than `limit` of the rate of `whole`."""
    return f"{_rate(part, window)}\n  / {_rate(whole, window)}\n  > {limit:g}"


_REQUESTS = "mloncall_requests_total"


@dataclass(frozen=True)
class PromRule:
    """One alerting rule: what it is called, when it fires and what it says; the expression and the description
    are functions of the thresholds."""

    alert: str
    for_: str
    severity: str
    runbook: str
    summary: str
    expr: Callable[[Thresholds], str]
    description: Callable[[Thresholds], str]

    def render(self, t: Thresholds) -> dict[str, Any]:
        """The rule as Prometheus reads it."""
        return {
            "alert": self.alert,
            "expr": self.expr(t),
            "for": self.for_,
            "labels": {"severity": self.severity, "runbook": self.runbook, "source": "mloncall-prometheus"},
            "annotations": {"summary": self.summary, "description": self.description(t)},
        }


def _share_rule(
    alert: str,
    for_: str,
    runbook: str,
    summary: str,
    part: str,
    whole: str,
    window: str,
    limit: Callable[[Thresholds], float],
    description: str,
) -> PromRule:
    """A warning that fires while one counter's rate is more than a share of another's; `{limit}` in the
    description is that share."""
    return PromRule(
        alert, for_, "warning", runbook, summary,
        expr=lambda t: _share_above(part, whole, window, limit(t)),
        description=lambda t: description.replace("{limit}", f"{limit(t):.0%}"),
    )  # fmt: skip


#: The rules of the `mloncall-serving` group, in the order they are written.
SERVING_RULES: tuple[PromRule, ...] = (
    PromRule(
        "MloncallDown", "2m", "critical", "scaling", "mloncall at {{ $labels.instance }} cannot be scraped",
        expr=lambda t: f'up{{job="{t.job}"}} == 0',
        description=lambda t: "Prometheus has not scraped job " + t.job + " at {{ $labels.instance }} for 2 minutes.",
    ),
    PromRule(
        "MloncallHighErrorRate", "5m", "critical", "deployment", "{{ $labels.model }} answers with server errors",
        expr=lambda t: _share_above(_REQUESTS + '{status=~"5.."}', _REQUESTS, "5m", t.max_error_rate),
        description=lambda t: "{{ $value | humanizePercentage }} of the requests to {{ $labels.model }} failed "
        f"with 5xx over 5 minutes (maximum {t.max_error_rate:.2%}).",
    ),
    PromRule(
        "MloncallHighLatencyP99", "10m", "warning", "scaling", "p99 latency of {{ $labels.model }} is high",
        expr=lambda t: "histogram_quantile(0.99,\n  sum by (model, le) "
        f"(rate(mloncall_request_latency_seconds_bucket[5m])))\n  > {t.max_p99_seconds:g}",
        description=lambda t: "p99 latency is {{ $value | humanizeDuration }} over 5 minutes "
        f"(maximum {t.max_p99_seconds * 1000:g} ms).",
    ),
    _share_rule(
        "MloncallValidationFailures", "10m", "data-quality", "Requests to {{ $labels.model }} fail input validation",
        "mloncall_validation_failures_total", _REQUESTS, "10m", lambda t: t.max_validation_failure_rate,
        "{{ $value | humanizePercentage }} of the requests were refused by input validation (maximum {limit}): "
        "check the upstream data.",
    ),
    _share_rule(
        "MloncallOutOfRangeInputs", "10m", "data-quality",
        "{{ $labels.model }} receives values outside the training range",
        "mloncall_out_of_range_total", "mloncall_predictions_total", "15m", lambda t: t.max_out_of_range_rate,
        "{{ $value | humanizePercentage }} out-of-range values per predicted row over 15 minutes "
        "(maximum {limit}).",
    ),
    PromRule(
        "MloncallVolumeDrop", "15m", "warning", "pipeline", "Requests to {{ $labels.model }} dropped",
        expr=lambda t: f"{_rate(_REQUESTS, '30m')}\n  < {t.min_volume_ratio:g} * {_rate(_REQUESTS, '30m', '1d')}",
        description=lambda t: f"Request rate is below {t.min_volume_ratio:.0%} of the same time yesterday: "
        "is a source gone quiet?",
    ),
)  # fmt: skip


def prometheus_rules(
    thresholds: Thresholds | None = None, slo_rules: list[dict[str, Any]] | None = None
) -> str:
    """A Prometheus alerting rules file over the serving metrics; `slo_rules` (the SLOs' burn-rate alerts) as
    a second group, `mloncall-slo`."""
    thresholds = thresholds or Thresholds()
    groups: list[dict[str, Any]] = [
        {"name": "mloncall-serving", "rules": [rule.render(thresholds) for rule in SERVING_RULES]}
    ]
    if slo_rules:
        groups.append({"name": "mloncall-slo", "rules": slo_rules})
    doc = {"groups": groups}
    return _HEADER + yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, width=120, allow_unicode=True)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL expressions) as `|` blocks, as people write them."""


def _str_block(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_block)

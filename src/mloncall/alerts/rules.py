"""Alert rules in YAML: parse and validate a whole file, or refuse it with the line and reason of every error.

A rules file is either a list of rules or a mapping:

```yaml
group_by: [model, runbook]     # optional: labels that put alerts into one group (default model, runbook)
hold_time: 10m                 # optional: a resolved alert that fires again within this re-opens (default 10m)
rules:
  - name: feature-drift        # unique in the file
    model: "*"                 # a model name, or "*" for every served model
    monitor: drift             # a monitor kind (mloncall.monitoring.service.MONITOR_KINDS)
    params: {drift_share: 0.5} # passed to the monitor; checked by its validate_params
    window: 1h                 # the window of logs the monitor judges
    for: 15m                   # pending -> firing only once the condition held this long; 0 fires at once
    severity: warning          # critical | warning | info
    runbook: monitoring        # the runbook the alert belongs to
    labels: {team: ml}         # optional, added to the alert's labels
    annotations:               # optional; {{ $value }}, {{ $labels.NAME }}, {{ $evidence.NAME }} are filled in
      summary: "Inputs of {{ $labels.model }} drifted"
    auto_run: checks           # optional: when the alert fires, its runbook's read-only checks run
```

Durations are Prometheus-style: `0`, `90s`, `15m`, `1h30m`, `2d`, `1w`. The annotations' templates are
filled in by `mloncall.alerts.templates.render`. Prometheus's own rules for mloncall's `/metrics` are written by `promrules`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.resources
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from mloncall.alerts.catalog import MonitorCatalog, default_catalog
from mloncall.alerts.templates import TEMPLATE, TEMPLATE_VAR
from mloncall.core.durations import format_duration, parse_duration
from mloncall.core.errors import InvalidInput
from mloncall.core.names import check_name
from mloncall.core.records import Record

SEVERITIES = ("critical", "warning", "info")
RUNBOOKS = (
    "deployment",
    "retraining",
    "monitoring",
    "pipeline",
    "scaling",
    "data-quality",
    "access",
    "incident",
)
DEFAULT_GROUP_BY = ("model", "runbook")
DEFAULT_HOLD_TIME = dt.timedelta(minutes=10)
#: Labels mloncall sets on every alert of a rule; a rule's own labels may not override them.
RESERVED_LABELS = ("alertname", "rule", "model", "severity", "runbook", "monitor")
DEFAULT_RULES_FILE = "default_rules.yaml"
#: What a rule's `auto_run` may ask for when its alert fires: the runbook's read-only checks.
AUTO_RUN_MODES = ("checks",)

_RULE_KEYS = {
    "name",
    "model",
    "monitor",
    "params",
    "window",
    "for",
    "severity",
    "labels",
    "annotations",
    "runbook",
    "auto_run",
}
_REQUIRED_KEYS = ("name", "model", "monitor", "window", "for", "severity", "runbook")
_TOP_KEYS = {"rules", "group_by", "hold_time"}
_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


# --- rules -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule(Record):
    """One validated alert rule."""

    name: str
    model: str
    monitor: str
    params: dict[str, Any]
    window: dt.timedelta
    for_: dt.timedelta
    severity: str
    runbook: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    auto_run: str | None = None
    line: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rule:
        return cls(
            name=data["name"],
            model=data["model"],
            monitor=data["monitor"],
            params=dict(data.get("params") or {}),
            window=parse_duration(data["window"], allow_zero=True),
            for_=parse_duration(data["for"], allow_zero=True),
            severity=data["severity"],
            runbook=data["runbook"],
            labels=dict(data.get("labels") or {}),
            annotations=dict(data.get("annotations") or {}),
            auto_run=data.get("auto_run"),
            line=int(data.get("line", 0)),
        )

    def alert_labels(self, model: str) -> dict[str, str]:
        """The labels of this rule's alert on one model: the rule's own plus the reserved ones."""
        return {
            **self.labels,
            "alertname": self.name,
            "rule": self.name,
            "model": model,
            "severity": self.severity,
            "runbook": self.runbook,
            "monitor": self.monitor,
        }


@dataclass(frozen=True)
class RuleFile:
    """A validated rules file: its rules and its grouping and flapping policy."""

    rules: tuple[Rule, ...]
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    hold_time: dt.timedelta = DEFAULT_HOLD_TIME
    sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_by": list(self.group_by),
            "hold_time": format_duration(self.hold_time),
            "rules": [r.to_dict() for r in self.rules],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], sha256: str = "") -> RuleFile:
        return cls(
            rules=tuple(Rule.from_dict(r) for r in data.get("rules", [])),
            group_by=tuple(data.get("group_by") or DEFAULT_GROUP_BY),
            hold_time=parse_duration(data.get("hold_time", "10m")),
            sha256=sha256,
        )


@dataclass(frozen=True)
class RuleError:
    line: int
    rule: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}: {f'rule {self.rule!r}: ' if self.rule else ''}{self.message}"


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_rules_text() -> str:
    """The rules that ship with mloncall (package data)."""
    return (importlib.resources.files("mloncall.alerts") / DEFAULT_RULES_FILE).read_text(encoding="utf-8")


def parse_rules(text: str, *, origin: str = "<rules>", catalog: MonitorCatalog | None = None) -> RuleFile:
    """Validate a whole rules file; InvalidInput lists every error with its line, and nothing is half-taken."""
    parser = _Parser(catalog or default_catalog())
    rule_file = parser.parse(text)
    if parser.errors:
        errors = sorted(parser.errors, key=lambda e: e.line)
        shown = "\n".join(f"  {e}" for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise InvalidInput(
            f"rules file {origin} refused ({len(errors)} error{'s' if len(errors) != 1 else ''}; "
            f"the active rules are unchanged):\n{shown}{more}",
            details=[{"line": e.line, "rule": e.rule, "error": e.message} for e in errors],
        )
    assert rule_file is not None
    return rule_file


@dataclass(frozen=True)
class _Fields:
    """A rule's keys with their key and value nodes, and their values constructed on demand."""

    entries: dict[str, tuple[yaml.ScalarNode, yaml.Node]]
    construct: Callable[[yaml.Node], Any]

    def get(self, key: str) -> tuple[yaml.Node | None, Any]:
        entry = self.entries.get(key)
        return (entry[1], self.construct(entry[1])) if entry is not None else (None, None)


class _Parser:
    def __init__(self, catalog: MonitorCatalog) -> None:
        self.catalog = catalog
        self.errors: list[RuleError] = []
        self._loader: yaml.SafeLoader | None = None

    def error(self, node: yaml.Node | None, message: str, rule: str | None = None) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        self.errors.append(RuleError(line=line, rule=rule, message=message))

    def value(self, node: yaml.Node) -> Any:
        assert self._loader is not None
        return self._loader.construct_object(node, deep=True)

    def parse(self, text: str) -> RuleFile | None:
        try:
            loader = yaml.SafeLoader(text)  # its reader refuses non-printable characters at once
        except yaml.YAMLError as exc:
            self.errors.append(RuleError(line=0, rule=None, message=f"YAML error: {exc}"))
            return None
        self._loader = loader
        try:
            try:
                root = loader.get_single_node()
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                line = mark.line + 1 if mark is not None else 0
                reason = " ".join(str(p) for p in (exc.context, exc.problem) if p)
                self.errors.append(RuleError(line=line, rule=None, message=f"YAML syntax error: {reason}"))
                return None
            except yaml.YAMLError as exc:
                self.errors.append(RuleError(line=0, rule=None, message=f"YAML error: {exc}"))
                return None
            try:
                return self._file(root)
            except yaml.YAMLError as exc:  # e.g. a bad tag met while constructing a value
                mark = getattr(exc, "problem_mark", None)
                line = mark.line + 1 if mark is not None else 0
                self.errors.append(RuleError(line=line, rule=None, message=f"YAML error: {exc}"))
                return None
        finally:
            loader.dispose()

    def _file(self, root: yaml.Node | None) -> RuleFile | None:
        if root is None:
            self.errors.append(RuleError(0, None, "the file is empty: it must hold a list of rules"))
            return None
        group_by: tuple[str, ...] = DEFAULT_GROUP_BY
        hold_time = DEFAULT_HOLD_TIME
        rules_node: yaml.Node | None = root
        if isinstance(root, yaml.MappingNode):
            rules_node = None
            for key_node, value_node in self._pairs(root, None):
                key = key_node.value
                if key == "rules":
                    rules_node = value_node
                elif key == "group_by":
                    group_by = self._group_by(value_node) or group_by
                elif key == "hold_time":
                    try:
                        hold_time = parse_duration(self.value(value_node))
                    except InvalidInput as exc:
                        self.error(value_node, f"hold_time: {exc.message}")
                else:
                    self.error(key_node, f"unknown key {key!r}: use {', '.join(sorted(_TOP_KEYS))}")
            if rules_node is None:
                self.error(root, "missing 'rules': the list of rules")
                return None
        if not isinstance(rules_node, yaml.SequenceNode):
            self.error(rules_node, "expected a list of rules (or a mapping with 'rules:')")
            return None
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for item in rules_node.value:
            rule = self._rule(item)
            if rule is None:
                continue
            if rule.name in seen:
                self.error(item, f"duplicate rule name (first defined on line {seen[rule.name]})", rule.name)
                continue
            seen[rule.name] = rule.line
            rules.append(rule)
        return RuleFile(rules=tuple(rules), group_by=group_by, hold_time=hold_time)

    def _pairs(self, node: yaml.MappingNode, rule: str | None) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        pairs: list[tuple[yaml.ScalarNode, yaml.Node]] = []
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node, "keys must be plain strings", rule)
                continue
            key = str(key_node.value)
            if key in seen:
                self.error(key_node, f"key {key!r} given twice (first on line {seen[key]})", rule)
                continue
            seen[key] = key_node.start_mark.line + 1
            pairs.append((key_node, value_node))
        return pairs

    def _group_by(self, node: yaml.Node) -> tuple[str, ...] | None:
        value = self.value(node)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and _LABEL_NAME.match(v) for v in value)
        ):
            self.error(node, "group_by must be a non-empty list of label names, e.g. [model, runbook]")
            return None
        return tuple(value)

    def _rule(self, node: yaml.Node) -> Rule | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, "each rule must be a mapping with name, model, monitor, window, for, ...")
            return None
        before = len(self.errors)
        fields = _Fields({k.value: (k, v) for k, v in self._pairs(node, None)}, self.value)
        name = self._rule_name(fields)
        self._check_keys(node, fields, name)
        model = self._model(fields, name)
        monitor, params = self._monitor(node, fields, name)
        durations = self._durations(fields, name)
        severity = self._choice(fields, "severity", SEVERITIES, "bad severity", name)
        runbook = self._choice(fields, "runbook", RUNBOOKS, "unknown runbook", name)
        labels = self._labels(fields.get("labels"), name)
        annotations = self._annotations(fields.get("annotations"), name)
        auto_node, auto_run = fields.get("auto_run")
        if auto_node is not None and auto_run not in AUTO_RUN_MODES:
            self.error(auto_node, f"bad auto_run {auto_run!r}: use checks (or leave it out)", name)
        if len(self.errors) > before or name is None:
            return None
        return Rule(
            name=name,
            model=str(model),
            monitor=str(monitor),
            params=dict(params or {}),
            window=durations["window"],
            for_=durations["for"],
            severity=str(severity),
            runbook=str(runbook),
            labels=labels,
            annotations=annotations,
            auto_run=str(auto_run) if auto_node is not None else None,
            line=node.start_mark.line + 1,
        )

    def _rule_name(self, fields: _Fields) -> str | None:
        node, raw = fields.get("name")
        if node is None:
            return None
        if isinstance(raw, str) and _RULE_NAME.match(raw):
            return raw
        self.error(node, f"bad rule name {raw!r}: use 1-128 letters, digits, '_', '.', ':' or '-'")
        return None

    def _check_keys(self, node: yaml.Node, fields: _Fields, name: str | None) -> None:
        for key, (key_node, _) in fields.entries.items():
            if key not in _RULE_KEYS:
                self.error(key_node, f"unknown key {key!r}: use {', '.join(sorted(_RULE_KEYS))}", name)
        missing = [k for k in _REQUIRED_KEYS if k not in fields.entries]
        if missing:
            self.error(node, f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}", name)

    def _model(self, fields: _Fields, name: str | None) -> Any:
        model_node, model = fields.get("model")
        if model_node is not None and model != "*":
            try:
                check_name(model, "model name")
            except InvalidInput as exc:
                self.error(model_node, f"model: {exc.message} (or '*' for every served model)", name)
        return model

    def _monitor(
        self, node: yaml.Node, fields: _Fields, name: str | None
    ) -> tuple[Any, dict[str, Any] | None]:
        """The monitor kind and its params, checked by the catalog."""
        monitor_node, monitor = fields.get("monitor")
        monitor_ok = False
        if monitor_node is not None:
            if monitor in self.catalog.kinds:
                monitor_ok = True
            else:
                self.error(
                    monitor_node,
                    f"unknown monitor {monitor!r}: use one of {', '.join(self.catalog.kinds)}",
                    name,
                )
        params_node, params = fields.get("params")
        if params_node is None or params is None:
            params = {}
        elif not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            self.error(params_node, "params must be a mapping of parameter names to values", name)
            params = None
        if monitor_ok and params is not None:
            try:
                self.catalog.validate_params(str(monitor), dict(params))
            except InvalidInput as exc:
                self.error(self._param_node(params_node, exc) or params_node or node, exc.message, name)
        return monitor, params

    def _durations(self, fields: _Fields, name: str | None) -> dict[str, dt.timedelta]:
        durations: dict[str, dt.timedelta] = {}
        for key in ("window", "for"):
            d_node, raw = fields.get(key)
            if d_node is None:
                continue
            try:
                if not isinstance(raw, str) and raw != 0:
                    raise InvalidInput(f"bad duration {raw!r}: write it with a unit, e.g. 15m")
                durations[key] = parse_duration(raw, allow_zero=key == "for")
            except InvalidInput as exc:
                self.error(d_node, f"{key}: {exc.message}", name)
        return durations

    def _choice(
        self, fields: _Fields, key: str, allowed: Sequence[str], problem: str, name: str | None
    ) -> Any:
        node, value = fields.get(key)
        if node is not None and value not in allowed:
            self.error(node, f"{problem} {value!r}: use one of {', '.join(allowed)}", name)
        return value

    def _param_node(self, params_node: yaml.Node | None, error: InvalidInput) -> yaml.Node | None:
        """The key node of the (first) parameter an error names, for a precise line."""
        if not isinstance(params_node, yaml.MappingNode):
            return None
        keys = {str(k.value): k for k, _ in params_node.value if isinstance(k, yaml.ScalarNode)}
        details = error.details if isinstance(error.details, dict) else {}
        for problem in details.get("problems") or []:
            name = str(problem.get("param", "")).split(".")[0] if isinstance(problem, dict) else ""
            if name in keys:
                return keys[name]
        message = error.message.split("(known", 1)[0]
        for name, node in keys.items():
            if re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message):
                return node
        return None

    def _labels(self, entry: tuple[yaml.Node | None, Any], rule: str | None) -> dict[str, str]:
        node, value = entry
        if node is None or value is None:
            return {}
        if not isinstance(value, dict):
            self.error(node, "labels must be a mapping of label names to strings", rule)
            return {}
        labels: dict[str, str] = {}
        for key, raw in value.items():
            if not isinstance(key, str) or not _LABEL_NAME.match(key):
                self.error(node, f"bad label name {key!r}: use letters, digits and '_'", rule)
            elif key in RESERVED_LABELS:
                self.error(node, f"label {key!r} is set by mloncall and cannot be overridden", rule)
            elif isinstance(raw, bool) or not isinstance(raw, str | int | float):
                self.error(node, f"label {key!r} must be a string, got {raw!r}", rule)
            else:
                labels[key] = str(raw)
        return labels

    def _annotations(self, entry: tuple[yaml.Node | None, Any], rule: str | None) -> dict[str, str]:
        node, value = entry
        if node is None or value is None:
            return {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            self.error(node, "annotations must be a mapping of names to strings", rule)
            return {}
        for key, text in value.items():
            for expr in TEMPLATE.findall(text):
                if not TEMPLATE_VAR.match(expr):
                    self.error(
                        node,
                        f"annotation {key!r}: unknown template {{{{ {expr} }}}}: use $value, $rule, $model, "
                        "$labels.NAME or $evidence.NAME",
                        rule,
                    )
        return dict(value)

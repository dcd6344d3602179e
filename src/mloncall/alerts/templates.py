"""The templates of alert annotations: `{{ $value }}`, `{{ $rule }}`, `{{ $model }}`, `{{ $labels.NAME }}`,
`{{ $evidence.NAME }}`; the rules parser checks them, `render` fills them in."""

from __future__ import annotations

import re
from typing import Any

TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
TEMPLATE_VAR = re.compile(r"^\$(value|rule|model|labels\.[A-Za-z_][A-Za-z0-9_]*|evidence\.[A-Za-z0-9_.-]+)$")


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "n/a"
    return str(value)


def render(template: str, *, labels: dict[str, Any], value: Any, evidence: dict[str, Any]) -> str:
    """Fill `{{ $value }}`, `{{ $rule }}`, `{{ $model }}`, `{{ $labels.X }}`, `{{ $evidence.X }}`."""

    def substitute(match: re.Match[str]) -> str:
        expr = match.group(1)
        if expr == "$value":
            return _format_value(value)
        if expr == "$rule":
            return str(labels.get("rule", ""))
        if expr == "$model":
            return str(labels.get("model", ""))
        if expr.startswith("$labels."):
            return str(labels.get(expr.removeprefix("$labels."), ""))
        if expr.startswith("$evidence."):
            current: Any = evidence
            for part in expr.removeprefix("$evidence.").split("."):
                current = current.get(part) if isinstance(current, dict) else None
            return _format_value(current)
        return match.group(0)

    return TEMPLATE.sub(substitute, template)

"""The monitors alert rules refer to: their kinds and the check of a rule's parameters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mloncall.monitoring import service as monitoring

#: The monitor kinds the monitoring domain announces, for tests that build a catalog of their own.
KNOWN_MONITOR_KINDS = tuple(monitoring.MONITOR_KINDS)


class MonitorCatalog(Protocol):
    """What rule validation needs to know about the monitors."""

    kinds: Sequence[str]

    def validate_params(self, kind: str, params: dict[str, Any]) -> None: ...


@dataclass
class Catalog:
    """Monitor kinds and their parameter check (the monitoring domain's, or a fake in tests)."""

    kinds: Sequence[str]
    validate: Callable[[str, dict[str, Any]], object] | None = None

    def validate_params(self, kind: str, params: dict[str, Any]) -> None:
        if self.validate is not None:
            self.validate(kind, params)


def default_catalog() -> Catalog:
    """The monitoring domain's kinds and `validate_params` (tests pass a `Catalog` of their own)."""
    return Catalog(kinds=tuple(monitoring.MONITOR_KINDS), validate=monitoring.validate_params)

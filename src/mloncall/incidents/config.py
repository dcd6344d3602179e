"""The `[incidents]` settings: per severity an update cadence, an acknowledgement limit and an escalation
policy; which alert severities open an incident; the bridge template; the correlation window; the role
claim limit; who is told.

```toml
[incidents]
open_on = { critical = "SEV2", error = "SEV3" }   # alert severity -> incident severity (others only join)
bridge = "https://meet.example.com/incident-{id}" # or a chat channel, "#inc-{id}-{model}"
correlation_window = "1h"      # alerts on the same version, features or deploy within it join
role_claim_limit = "15m"       # remind when a role stays unclaimed this long
subscribers = ["ml-slack"]     # channels told of opening, updates, resolution (default: every channel)
page_channels = ["oncall-mail"] # channels pages and reminders go to (default: every channel)

[incidents.severities.SEV1]
cadence = "15m"                # an update at least this often
ack_within = "5m"
policy = "default"             # an escalation policy (`mloncall oncall policy create`)
```
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mloncall.core.config import Settings
from mloncall.core.durations import parse_duration
from mloncall.core.errors import InvalidInput
from mloncall.incidents.states import Severity

_DEFAULTS: dict[Severity, tuple[str, str]] = {
    Severity.SEV1: ("15m", "5m"),
    Severity.SEV2: ("30m", "15m"),
    Severity.SEV3: ("1h", "30m"),
    Severity.SEV4: ("4h", "1h"),
    Severity.SEV5: ("1d", "4h"),
}
DEFAULT_OPEN_ON = {"critical": Severity.SEV2, "error": Severity.SEV3}
DEFAULT_BRIDGE = "#incident-{id}"
DEFAULT_POLICY = "default"
_KEYS = {
    "interval",
    "open_on",
    "bridge",
    "correlation_window",
    "role_claim_limit",
    "subscribers",
    "page_channels",
    "severities",
}
_SEVERITY_KEYS = {"cadence", "ack_within", "policy"}


@dataclass(frozen=True)
class SeverityPolicy:
    severity: Severity
    cadence: dt.timedelta
    ack_within: dt.timedelta
    policy: str | None


@dataclass(frozen=True)
class IncidentSettings:
    severities: dict[Severity, SeverityPolicy]
    open_on: dict[str, Severity]
    bridge: str
    correlation_window: dt.timedelta
    role_claim_limit: dt.timedelta
    subscribers: tuple[str, ...] | None
    page_channels: tuple[str, ...] | None

    def of(self, severity: str) -> SeverityPolicy:
        return self.severities[parse_severity(severity)]


def parse_severity(value: str) -> Severity:
    """`SEV2` (or `sev2`, `2`) as a Severity; InvalidInput listing them otherwise."""
    text = str(value).strip().upper()
    text = f"SEV{text}" if text.isdigit() else text
    try:
        return Severity(text)
    except ValueError:
        raise InvalidInput(f"unknown severity {value!r}: use one of {', '.join(Severity)}") from None


def _names(raw: Any, what: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
        raise InvalidInput(f"[incidents] {what} must be a list of channel names")
    return tuple(raw)


def _severity_policy(severity: Severity, raw: Mapping[str, Any]) -> SeverityPolicy:
    where = f"[incidents.severities.{severity}]"
    unknown = sorted(set(raw) - _SEVERITY_KEYS)
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(unknown)}")
    cadence, ack = _DEFAULTS[severity]
    policy = raw.get("policy", DEFAULT_POLICY)
    if policy is not None and (not isinstance(policy, str) or not policy):
        raise InvalidInput(f"{where}: policy must be the name of an escalation policy")
    return SeverityPolicy(
        severity=severity,
        cadence=parse_duration(raw.get("cadence", cadence), what=f"{where} cadence"),
        ack_within=parse_duration(raw.get("ack_within", ack), what=f"{where} ack_within"),
        policy=policy,
    )


def incident_settings(settings: Settings) -> IncidentSettings:
    """The `[incidents]` table, validated; InvalidInput names the key and the problem."""
    raw = settings.section("incidents")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise InvalidInput(f"[incidents]: unknown key(s) {', '.join(unknown)}")
    per_severity = raw.get("severities", {})
    if not isinstance(per_severity, Mapping):
        raise InvalidInput("[incidents] severities must be a table of severities")
    for name in per_severity:
        parse_severity(name)
    severities = {s: _severity_policy(s, per_severity.get(str(s), {})) for s in Severity}
    open_on_raw = raw.get("open_on", DEFAULT_OPEN_ON)
    if not isinstance(open_on_raw, Mapping):
        raise InvalidInput("[incidents] open_on must map alert severities to incident severities")
    bridge = raw.get("bridge", DEFAULT_BRIDGE)
    if not isinstance(bridge, str) or not bridge.strip():
        raise InvalidInput("[incidents] bridge must be a URL or channel template such as '#incident-{id}'")
    return IncidentSettings(
        severities=severities,
        open_on={str(k): parse_severity(v) for k, v in open_on_raw.items()},
        bridge=bridge,
        correlation_window=parse_duration(
            raw.get("correlation_window", "1h"), what="[incidents] correlation_window"
        ),
        role_claim_limit=parse_duration(
            raw.get("role_claim_limit", "15m"), what="[incidents] role_claim_limit"
        ),
        subscribers=_names(raw.get("subscribers"), "subscribers"),
        page_channels=_names(raw.get("page_channels"), "page_channels"),
    )

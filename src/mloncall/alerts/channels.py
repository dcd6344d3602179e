"""Notification channels and their configuration: a generic JSON webhook, a Slack-compatible incoming
webhook and SMTP e-mail. What is sent and how it is retried is `mloncall.alerts.notify`.

Channels are configured in the `[alerts]` table of `mloncall.toml` (not in the rules file, so the rules can
live in git without secrets; a secret can also come from the environment with `url_env`/`password_env`):

```toml
[[alerts.channels]]
name = "ops-webhook"                 # unique; shown in every delivery record
type = "webhook"                     # webhook | slack | email
url = "https://hooks.example.com/mloncall"
headers = { Authorization = "Bearer s3cret" }

[[alerts.channels]]
name = "ml-slack"
type = "slack"
url_env = "MLONCALL_SLACK_WEBHOOK"   # the URL from this environment variable
severities = ["critical", "warning"] # optional filters: severities, events, sources

[[alerts.channels]]
name = "oncall-mail"
type = "email"
host = "smtp.example.com"
port = 587
starttls = true                      # or ssl = true for SMTPS; ca_file = "/etc/ssl/relay-ca.pem" to trust a private CA
username = "mloncall"
password_env = "MLONCALL_SMTP_PASSWORD"
from = "mloncall@example.com"
to = ["oncall@example.com"]
```

Every channel also takes `max_attempts` (3), `backoff` (1 s, doubled per retry) and `max_backoff` (30 s),
and `timeout` (10 s), and filters: `events` (firing, resolved, reopened), `severities` and `sources`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mloncall.alerts.lifecycle import ALERT_SEVERITIES
from mloncall.alerts.models import Alert
from mloncall.alerts.states import AlertSource, NotifyEvent
from mloncall.core.config import Settings
from mloncall.core.errors import InvalidInput

CHANNEL_TYPES = ("webhook", "slack", "email")


# --- channels --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Channel:
    """Where notifications go, and which ones."""

    name: str
    type: str
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    host: str | None = None
    port: int = 25
    starttls: bool = False
    ssl: bool = False
    #: A PEM file of CA certificates to trust for STARTTLS/SMTPS (an internal mail relay); default: the system's.
    ca_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    events: tuple[str, ...] = tuple(NotifyEvent)
    severities: tuple[str, ...] | None = None
    sources: tuple[str, ...] | None = None
    max_attempts: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0
    timeout: float = 10.0

    def accepts(self, event: str, alert: Alert) -> bool:
        """Whether this channel wants to hear about this event of this alert."""
        if event not in self.events:
            return False
        if self.severities is not None and alert.severity not in self.severities:
            return False
        return self.sources is None or alert.source in self.sources

    def describe(self) -> str:
        """Where it sends, without secrets."""
        if self.type == "email":
            return f"smtp://{self.host}:{self.port} -> {', '.join(self.recipients)}"
        parts = urlsplit(self.url or "")
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "target": self.describe(),
            "events": list(self.events),
            "severities": list(self.severities) if self.severities is not None else None,
            "sources": list(self.sources) if self.sources is not None else None,
            "max_attempts": self.max_attempts,
        }


def _strings(value: Any, what: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{what} must be a non-empty list of strings")
    if allowed is not None:
        bad = [v for v in value if v not in allowed]
        if bad:
            raise InvalidInput(f"{what}: unknown {', '.join(map(repr, bad))}: use {', '.join(allowed)}")
    return tuple(value)


def _secret(raw: Mapping[str, Any], key: str, env: Mapping[str, str], where: str) -> str | None:
    env_key = f"{key}_env"
    if raw.get(env_key) is not None:
        name = str(raw[env_key])
        if not env.get(name):
            raise InvalidInput(f"{where}: environment variable {name} ({env_key}) is not set")
        return env[name]
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{where}: {key} must be a string")
    return value


_CHANNEL_KEYS = {
    "name", "type", "url", "url_env", "headers", "host", "port", "starttls", "ssl", "username", "password",
    "password_env", "from", "to", "ca_file", "events", "severities", "sources", "max_attempts", "backoff",
    "max_backoff", "timeout",
}  # fmt: skip


_LIMITS = (("max_attempts", 1, 20), ("backoff", 0, 3600), ("max_backoff", 0, 3600), ("timeout", 0.1, 300))


def _common(raw: Mapping[str, Any], name: str, kind: str, where: str) -> dict[str, Any]:
    """What every channel takes: its name and type, its filters and its retry limits."""
    common: dict[str, Any] = {"name": name, "type": kind}
    if "events" in raw:
        common["events"] = _strings(raw["events"], f"{where}: events", tuple(NotifyEvent))
    if "severities" in raw:
        common["severities"] = _strings(raw["severities"], f"{where}: severities", ALERT_SEVERITIES)
    if "sources" in raw:
        common["sources"] = _strings(raw["sources"], f"{where}: sources", tuple(AlertSource))
    for key, low, high in _LIMITS:
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise InvalidInput(f"{where}: {key} must be a number from {low} to {high}, not {value!r}")
            common[key] = int(value) if key == "max_attempts" else float(value)
    return common


def _http_channel(
    raw: Mapping[str, Any], common: dict[str, Any], env: Mapping[str, str], where: str
) -> Channel:
    url = _secret(raw, "url", env, where)
    if not url or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise InvalidInput(f"{where}: url must be an http(s) URL")
    headers = raw.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise InvalidInput(f"{where}: headers must be a table of strings")
    return Channel(url=url, headers=dict(headers), **common)


def _smtp_security(raw: Mapping[str, Any], where: str) -> None:
    for flag in ("starttls", "ssl"):
        if flag in raw and not isinstance(raw[flag], bool):
            raise InvalidInput(f"{where}: {flag} must be true or false")
    if raw.get("starttls") and raw.get("ssl"):
        raise InvalidInput(f"{where}: use starttls or ssl, not both")
    ca_file = raw.get("ca_file")
    if ca_file is not None and (not isinstance(ca_file, str) or not ca_file):
        raise InvalidInput(f"{where}: ca_file must be the path of a PEM file")


def _email_channel(
    raw: Mapping[str, Any], common: dict[str, Any], env: Mapping[str, str], where: str
) -> Channel:
    host = raw.get("host")
    if not isinstance(host, str) or not host:
        raise InvalidInput(f"{where}: host is required for e-mail")
    port = raw.get("port", 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidInput(f"{where}: port must be a TCP port, not {port!r}")
    sender = raw.get("from")
    if not isinstance(sender, str) or "@" not in sender:
        raise InvalidInput(f"{where}: 'from' must be an e-mail address")
    recipients = _strings(raw.get("to"), f"{where}: to")
    if not all("@" in r for r in recipients):
        raise InvalidInput(f"{where}: every 'to' must be an e-mail address")
    _smtp_security(raw, where)
    username = raw.get("username")
    if username is not None and not isinstance(username, str):
        raise InvalidInput(f"{where}: username must be a string")
    return Channel(
        host=host,
        port=port,
        starttls=bool(raw.get("starttls", False)),
        ca_file=raw.get("ca_file"),
        ssl=bool(raw.get("ssl", False)),
        username=username,
        password=_secret(raw, "password", env, where),
        sender=sender,
        recipients=recipients,
        **common,
    )


def parse_channel(raw: Mapping[str, Any], *, index: int = 0, env: Mapping[str, str] | None = None) -> Channel:
    """One channel from its configuration table; InvalidInput names the channel and the problem."""
    env = os.environ if env is None else env
    where = f"[alerts] channel #{index + 1}"
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where} must be a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise InvalidInput(f"{where}: 'name' is required (1-128 characters)")
    where = f"[alerts] channel {name!r}"
    unknown = sorted(set(raw) - _CHANNEL_KEYS)
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(unknown)}")
    kind = raw.get("type")
    if kind not in CHANNEL_TYPES:
        raise InvalidInput(f"{where}: type must be one of {', '.join(CHANNEL_TYPES)}, not {kind!r}")
    common = _common(raw, name, str(kind), where)
    if kind in ("webhook", "slack"):
        return _http_channel(raw, common, env, where)
    return _email_channel(raw, common, env, where)


def channels_from_settings(settings: Settings, env: Mapping[str, str] | None = None) -> list[Channel]:
    """The channels of `[alerts] channels` (none configured: an empty list)."""
    raw = settings.section("alerts").get("channels", [])
    if not isinstance(raw, list):
        raise InvalidInput("[alerts] channels must be an array of tables ([[alerts.channels]])")
    channels = [parse_channel(item, index=i, env=env) for i, item in enumerate(raw)]
    names = [c.name for c in channels]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput(f"[alerts] channel name(s) used twice: {', '.join(dupes)}")
    return channels

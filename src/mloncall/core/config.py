"""Configuration: environment variables over an optional `mloncall.toml`, over built-in defaults.

| setting   | environment          | toml key    | default                         |
|-----------|----------------------|-------------|---------------------------------|
| home      | MLONCALL_HOME        | home        | ./.mloncall                     |
| database  | MLONCALL_DB_URL      | db_url      | sqlite:///<home>/mloncall.db    |
| artifacts | MLONCALL_ARTIFACTS   | artifacts   | <home>/artifacts                |

The toml file is `$MLONCALL_CONFIG` if set, else `./mloncall.toml` if it exists. Other tables in the file
(`[gate]`, `[serving]`, ...) are kept in `Settings.sections` for the domains that own them.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from mloncall.core.errors import InvalidInput

_KEYS = {"home", "db_url", "artifacts"}


@dataclass(frozen=True)
class Settings:
    """Where mloncall keeps its metadata and artifacts."""

    home: Path
    db_url: str
    artifacts: str
    sections: dict[str, Any] = field(default_factory=dict)
    config_file: Path | None = None

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
        """Read settings from the environment and the optional toml file."""
        env = os.environ if env is None else env
        path = config_file or (Path(env["MLONCALL_CONFIG"]) if env.get("MLONCALL_CONFIG") else None)
        if path is None and Path("mloncall.toml").is_file():
            path = Path("mloncall.toml")
        data: dict[str, Any] = {}
        if path is not None:
            data = _read_toml(path)
        home = Path(env.get("MLONCALL_HOME") or data.get("home") or ".mloncall").expanduser()
        home = home if home.is_absolute() else Path.cwd() / home
        db_url = env.get("MLONCALL_DB_URL") or data.get("db_url") or f"sqlite:///{home / 'mloncall.db'}"
        artifacts = env.get("MLONCALL_ARTIFACTS") or data.get("artifacts") or str(home / "artifacts")
        if "://" not in artifacts and not Path(artifacts).is_absolute():
            artifacts = str(Path.cwd() / artifacts)
        sections = {k: v for k, v in data.items() if k not in _KEYS and isinstance(v, dict)}
        return cls(
            home=home, db_url=str(db_url), artifacts=str(artifacts), sections=sections, config_file=path
        )

    def section(self, name: str) -> dict[str, Any]:
        """A table of the toml file, empty if absent."""
        return dict(self.sections.get(name, {}))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise InvalidInput(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"config file {path} is not valid TOML: {exc}") from None
    unknown = [k for k, v in data.items() if k not in _KEYS and not isinstance(v, dict)]
    if unknown:
        raise InvalidInput(f"config file {path}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in _KEYS & data.keys():
        if not isinstance(data[key], str):
            raise InvalidInput(f"config file {path}: '{key}' must be a string")
    return data


Limits = TypeVar("Limits")


def positive_numbers(
    cls: type[Limits],
    table: str,
    settings: Settings,
    env: Mapping[str, str] | None = None,
    *,
    read_elsewhere: Iterable[str] = (),
) -> Limits:
    """A dataclass of positive numbers (limits, timeouts) from the `[table]` of the toml file, each
    overridden by `MLONCALL_<TABLE>_<FIELD>`. A value that is not a positive number, and a key of the table
    that is neither a field nor `read_elsewhere`, is refused with its name."""
    env = os.environ if env is None else env
    values = settings.section(table)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(values) - names - set(read_elsewhere)
    if unknown:
        raise InvalidInput(f"[{table}] has unknown key(s): {', '.join(sorted(unknown))}")
    chosen: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        raw = env.get(f"MLONCALL_{table.upper()}_{f.name.upper()}", values.get(f.name))
        if raw is None:
            continue
        kind = int if f.type in ("int", int) else float
        what = "whole number" if kind is int else "number"
        try:
            if isinstance(raw, bool):  # `true` in the toml file is no number
                raise TypeError
            value = kind(raw)
        except (TypeError, ValueError):
            raise InvalidInput(f"{table} setting {f.name}={raw!r} must be a {what}") from None
        # NaN passed `value <= 0`, and an infinite timeout never fires: a slow client held its connection.
        if not 0 < value < math.inf:
            raise InvalidInput(f"{table} setting {f.name}={raw!r} must be positive and finite")
        chosen[f.name] = value
    return cls(**chosen)

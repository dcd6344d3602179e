"""Names people type: model, dataset and alias names, and model references like `iris:3` or `iris@production`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from mloncall.core.errors import InvalidInput

#: The grammar of every name (models, datasets, aliases, principals, schedules), also stated in the OpenAPI document.
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
#: Text that is not blank and holds no NUL (the server strips text and refuses what is left empty). Blank as
#: Python's strip sees it: JSON Schema's \s leaves out the separators \x1c-\x1f and NEL (\x85) that it strips.
TEXT_PATTERN = r"^[^\x00]*[^\s\x00\x1c-\x1f\x85][^\x00]*$"

#: The largest id or version number: what the database's integer columns hold (32-bit signed on every
#: backend). Every edge (HTTP path, query and body, CLI argument, service lookup) bounds ids by it, so a
#: larger number is the caller's mistake rather than an overflow deep in a driver.
MAX_ID = 2**31 - 1


#: In a request body: an id or version (1..MAX_ID), and a seed (0..MAX_ID).
IdField = Annotated[int, Field(ge=1, le=MAX_ID)]
SeedField = Annotated[int, Field(ge=0, le=MAX_ID)]


def is_id(value: object) -> bool:
    """Whether value is an int id or version the database can hold (1..MAX_ID)."""
    return type(value) is int and 1 <= value <= MAX_ID


def parse_id(text: str) -> int | None:
    """The id or version written in text (digits only, 1..MAX_ID), or None when it is not one."""
    if not text.isascii() or not text.isdigit() or len(text) > len(str(MAX_ID)):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


def check_name(value: str, kind: str = "name") -> str:
    """Return value if it is a valid lowercase name, else raise InvalidInput saying what is allowed."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInput(
            f"invalid {kind} {value!r}: use 1-64 characters, lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def parse_pairs(items: list[str], *, option: str, example: str) -> dict[str, str]:
    """Repeated `--option NAME=VALUE` items as a mapping (a later NAME wins); a malformed item is
    InvalidInput naming the option and an example."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"invalid {option} {item!r}: use NAME=VALUE, e.g. {example}")
        out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class ModelRef:
    """`NAME`, `NAME:VERSION` or `NAME@ALIAS`."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        text = (text or "").strip()
        if "@" in text:
            name, alias = text.split("@", 1)
            return cls(check_name(name, "model name"), alias=check_name(alias, "alias"))
        if ":" in text:
            name, version = text.split(":", 1)
            number = parse_id(version.lstrip("v"))
            if number is None:
                raise InvalidInput(
                    f"invalid model reference {text!r}: the version must be a positive integer up to {MAX_ID}"
                )
            return cls(check_name(name, "model name"), version=number)
        return cls(check_name(text, "model name"))

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name

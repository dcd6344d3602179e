"""Names people type: model, dataset and alias names, and model references like `iris:3` or `iris@production`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mloncall.core.errors import InvalidInput

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def check_name(value: str, kind: str = "name") -> str:
    """Return value if it is a valid lowercase name, else raise InvalidInput saying what is allowed."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInput(
            f"invalid {kind} {value!r}: use 1-64 characters, lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


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
            version = version.lstrip("v")
            if not version.isdigit() or int(version) < 1:
                raise InvalidInput(
                    f"invalid model reference {text!r}: the version must be a positive integer"
                )
            return cls(check_name(name, "model name"), version=int(version))
        return cls(check_name(text, "model name"))

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name

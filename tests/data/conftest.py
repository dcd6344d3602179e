"""Fixtures of the data tests: small files written into tmp_path, and the Iris schema."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mloncall.data import iris, validation


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """Write text (or bytes) to a file in tmp_path and return its path."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write


@pytest.fixture
def iris_schema() -> dict[str, Any]:
    """The schema inferred from the bundled Iris data (ranges and the three species)."""
    return validation.infer_schema(iris.iris_frame(), target=iris.TARGET)

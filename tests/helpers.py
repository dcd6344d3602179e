"""Builders that make real objects through the services, for tests of every domain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from mloncall.data import iris
from mloncall.stores.context import Context
from mloncall.training import service as training
from mloncall.training.service import TrainingRun


def train_iris(ctx: Context, name: str = "iris-classifier", **kwargs: Any) -> TrainingRun:
    """Train and register a version on the bundled Iris data."""
    return training.train(ctx=ctx, name=name, created_by="test", **kwargs)


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def new_samples_csv(tmp_path: Path, n: int = 60, seed: int = 7, **kwargs: Any) -> Path:
    """Fresh Iris-like rows, as a CSV file."""
    return write_csv(tmp_path / f"new-{seed}.csv", iris.iris_like_samples(n, seed=seed, **kwargs))


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `mloncall ARGS` the way a user does, in a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "mloncall", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )

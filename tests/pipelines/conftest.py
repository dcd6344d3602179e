"""An installation whose Iris ingestion pipeline is declared under its home (so a test can repair it), the
batches of Iris-like rows its source folder receives, and the model versions trained on what it loads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from mloncall.data.iris import iris_like_samples
from mloncall.pipelines import records, spec
from mloncall.pipelines.schemas import RunRead
from mloncall.pipelines.service import run_read
from mloncall.registry import service as registry
from mloncall.stores.context import Context
from mloncall.training import service as training
from tests.conftest import make_context

PIPELINE = "iris-ingest"
MODEL = "iris-classifier"


@pytest.fixture
def pctx(tmp_path: Path) -> Iterator[Context]:
    c = make_context(tmp_path / "home")
    spec.add(c.settings, spec.EXAMPLES / f"{PIPELINE}.yaml")
    yield c
    c.close()


def source_dir(ctx: Context) -> Path:
    folder = ctx.settings.home / "sources" / "iris"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def batch(n: int = 30, seed: int = 1) -> pd.DataFrame:
    return iris_like_samples(n, seed=seed)


def drop(ctx: Context, frame: pd.DataFrame, name: str = "batch-1.csv") -> Path:
    path = source_dir(ctx) / name
    frame.to_csv(path, index=False)
    return path


def declaration(ctx: Context) -> dict[str, Any]:
    return yaml.safe_load((spec.declarations_dir(ctx.settings) / f"{PIPELINE}.yaml").read_text())


def redeclare(ctx: Context, data: dict[str, Any]) -> None:
    path = ctx.settings.home / "new.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    spec.add(ctx.settings, path)


def stage_of(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in data["stages"] if s["name"] == name)


def latest(ctx: Context) -> RunRead:
    with ctx.db.session() as s:
        found = records.latest_run(session=s, pipeline=PIPELINE)
        assert found is not None
        run_id = found.id
    return run_read(ctx, run_id)


def trained_on(ctx: Context, ref: str, *, alias: str | None = None) -> int:
    """A new version of the Iris model trained on dataset version `ref` (`iris:1`), given `alias`."""
    version = training.train(ctx=ctx, name=MODEL, dataset=ref, created_by="dana").model_version.version
    if alias is not None:
        with ctx.db.session() as s:
            registry.set_alias(session=s, name=MODEL, alias=alias, version=version, actor="dana")
    return version

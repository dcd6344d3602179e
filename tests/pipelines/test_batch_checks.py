"""Runbook 6's batch half: a named pipeline's source is checked as a batch, beside the live checks: a late
source, a corrupted file (set aside with its reason) and a share of bad rows each fail the step, with why."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from mloncall.runbooks.batch import batch
from mloncall.runbooks.catalog import get_runbook
from mloncall.stores.context import Context
from tests.pipelines.conftest import PIPELINE, drop, source_dir
from tests.pipelines.conftest import batch as rows


@dataclass
class Params:
    """The two things the batch step reads of its run: the installation and the parameters."""

    ctx: Context
    params: dict[str, Any] = field(default_factory=dict)


def _check(ctx: Context) -> Any:
    params = get_runbook("data-quality").parse_params({"pipeline": PIPELINE}, ["iris-classifier"])
    return batch(Params(ctx, params))  # type: ignore[arg-type]


def test_fresh_clean_source_passes_and_no_pipeline_means_live_checks_only(pctx: Context) -> None:
    drop(pctx, rows(40))
    found = _check(pctx)
    assert found.passed, found.reason
    params = get_runbook("data-quality").parse_params({}, ["iris-classifier"])
    assert "live checks only" in batch(Params(pctx, params)).reason  # type: ignore[arg-type]


def test_late_corrupted_and_out_of_range_batches_fail_with_the_reason(pctx: Context) -> None:
    path = drop(pctx, rows(40))
    old = time.time() - 3 * 86400
    os.utime(path, (old, old))
    late = _check(pctx)
    assert not late.passed and "late" in late.reason

    path.unlink()
    frame = rows(40)
    frame.loc[:5, "petal_length"] = 99.0
    drop(pctx, frame)
    (source_dir(pctx) / "batch-2.csv").write_bytes(b"")
    bad = _check(pctx)
    assert not bad.passed
    assert "batch-2.csv set aside" in bad.reason and "fail the schema's checks" in bad.reason
    assert bad.evidence["bad_share"] == 6 / 40

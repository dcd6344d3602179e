"""The issue's "done when": each of runbook 4's troubleshooting cases (a missing file, a schema mismatch, a
transformation error) is injected into the Iris pipeline running on Dagster, diagnosed with the right class,
repaired, re-run from the failed stage and accepted by runbook 4, whose last step has `retrain` read the
new dataset version."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mloncall.data import service as data_service
from mloncall.pipelines import service
from mloncall.registry import service as registry
from mloncall.runbooks import engine, export
from mloncall.runbooks import service as runs
from mloncall.stores.context import Context
from mloncall.training import service as training
from tests.pipelines.conftest import PIPELINE, batch, declaration, drop, latest, redeclare, stage_of

pytestmark = pytest.mark.slow


class RepairThenYes:
    """The engineer: asked to re-run, repairs what the diagnosis named first."""

    actor = "dana"

    def __init__(self, repair: Callable[[], None]) -> None:
        self.repair = repair
        self.questions: list[str] = []

    def ask(self, question: str) -> bool:
        self.questions.append(question)
        self.repair()
        return True

    def note(self, prompt: str) -> str:
        return ""


def _champion(ctx: Context) -> None:
    training.train(ctx=ctx, name="iris-classifier", created_by="dana")
    with ctx.db.session() as s:
        registry.set_alias(session=s, name="iris-classifier", alias="production", version=1, actor="dana")


def _runbook(ctx: Context, confirmer: RepairThenYes) -> dict:
    run_id = engine.start(ctx, runbook="pipeline-failure", params={"pipeline": PIPELINE}, confirmer=confirmer)
    with ctx.db.session() as s:
        return export.run_dict(s, runs.get_run_or_raise(session=s, run_id=run_id))


def _case(ctx: Context, *, expected_class: str, stage: str, repair: Callable[[], None]) -> None:
    versions_before = _versions(ctx)
    failed = service.run_read(ctx, service.run(ctx, PIPELINE, actor="cron"))
    assert failed.state == "failed"
    assert (failed.failed_stage, failed.failure_class) == (stage, expected_class)
    assert failed.fix and _versions(ctx) == versions_before  # nothing half-loaded, nothing visible

    # retraining on the dataset the failed pipeline feeds is blocked until it is repaired
    with pytest.raises(Exception, match="blocked"):
        training.refuse_if_blocked(ctx, model="iris-classifier", dataset="iris")

    confirmer = RepairThenYes(repair)
    record = _runbook(ctx, confirmer)
    steps = {s["name"]: s for s in record["steps"]}
    assert steps["identify"]["evidence"]["class"] == expected_class
    assert stage in confirmer.questions[0]
    assert record["outcome"] == "successful", [
        (s["name"], s["state"], s["reason"]) for s in record["steps"]
    ] + [(c["name"], c["reason"]) for c in (record["acceptance"] or {}).get("checks", [])]

    rerun = latest(ctx)
    assert rerun.parent_id == failed.id and rerun.from_stage == stage and rerun.state == "succeeded"
    assert rerun.orchestrator == "dagster" and rerun.orchestrator_run_id
    kept = [s.name for s in rerun.stages if s.state == "reused"]
    assert kept == [s.name for s in failed.stages][: [s.name for s in failed.stages].index(stage)]
    assert _versions(ctx) == versions_before + 1
    dry = steps["monitor"]["evidence"]["dry_runs"]["iris-classifier"]
    with ctx.db.session() as s:
        new = data_service.get_version_by_id_or_raise(session=s, dataset_version_id=rerun.dataset_version_id)
        assert dry["reads"] == f"dataset iris:{new.version}" and dry["rows"] == new.row_count


def _versions(ctx: Context) -> int:
    with ctx.db.session() as s:
        return len(data_service.get_dataset_or_raise(session=s, name="iris").versions)


def test_three_troubleshooting_cases_are_diagnosed_repaired_rerun_and_accepted(pctx: Context) -> None:
    _champion(pctx)

    # 1. a missing data file: the upstream delivers it late
    late = batch(30, seed=1)
    _case(pctx, expected_class="missing_source", stage="extract", repair=lambda: drop(pctx, late))

    # 2. a schema mismatch: the upstream renamed a column; mapped back in the validate stage
    renamed = batch(30, seed=2).rename(columns={"petal_width": "petal_wdth"})
    drop(pctx, renamed)

    def map_column() -> None:
        data = declaration(pctx)
        stage_of(data, "validate")["rename"] = {"petal_wdth": "petal_width"}
        redeclare(pctx, data)

    _case(pctx, expected_class="schema_mismatch", stage="validate", repair=map_column)

    # 3. a transformation error: two rows carry a label the normaliser does not know
    typo = batch(30, seed=3)
    typo.loc[[3, 7], "species"] = "Iris-setsa"
    drop(pctx, typo)

    def add_alias() -> None:
        data = declaration(pctx)
        stage_of(data, "transform")["steps"][0]["aliases"]["Iris-setsa"] = "setosa"
        redeclare(pctx, data)

    _case(pctx, expected_class="transformation_error", stage="transform", repair=add_alias)
    rows = latest(pctx).stages  # the re-run's transform saw the rows the failure named
    assert rows[2].state == "succeeded"

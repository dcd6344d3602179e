"""The one interface mloncall drives an orchestrator through, and its embedded default: Dagster, run
in-process on a SQLite instance under `MLONCALL_HOME`.

mloncall owns what a stage does and what it records (`StageRunner`); the orchestrator owns running the
stages in order, handing each its predecessor's output through the IO manager, retrying with backoff what
the stage says is transient, and skipping what follows a failure. A team's own Dagster, Prefect or Airflow
deployment plugs in by implementing `Orchestrator.execute`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from mloncall.pipelines.failures import TransientError


class StageRunner(Protocol):
    """mloncall's side of one run: each stage's body with its record, and the frames between stages."""

    run_id: int

    def run_stage(self, name: str, frame: pd.DataFrame | None, *, attempt: int) -> pd.DataFrame:
        """Run and record one stage; raises TransientError (retry), or any other error (the stage failed)."""
        ...

    def start_frame(self) -> pd.DataFrame | None:
        """The input of the plan's first stage: None for extract, else the predecessor's recorded output."""
        ...

    def store_output(self, name: str, frame: pd.DataFrame) -> None:
        """Keep a stage's output (atomically, with its hash) for the next stage and for a later re-run."""
        ...

    def load_output(self, name: str) -> pd.DataFrame:
        """A stage's kept output, its bytes checked against the recorded hash."""
        ...

    def engine_log(self, line: str) -> None: ...


@dataclass(frozen=True)
class Plan:
    """The stages to run, in order (all of them, or from a failed one), and the retry policy."""

    pipeline: str
    stages: tuple[str, ...]
    attempts: int
    backoff_seconds: float


@dataclass
class Result:
    orchestrator_run_id: str
    success: bool
    events: list[str] = field(default_factory=list)


class Orchestrator(Protocol):
    name: str

    def execute(self, plan: Plan, runner: StageRunner) -> Result: ...


# --- Dagster ------------------------------------------------------------------------------------------------


#: Telemetry off; no compute-log capture: Dagster would mirror each op's stdout through a `tail -F` and a
#: watcher process per op and wait up to 30 s for each to end (a run's stages record their own evidence).
DAGSTER_YAML = (
    "telemetry:\n  enabled: false\n"
    "compute_logs:\n  module: dagster._core.storage.noop_compute_log_manager\n  class: NoOpComputeLogManager\n"
)


def dagster_home(home: Path) -> Path:
    """Dagster's instance folder under the installation, written (again, when an older one differs)."""
    folder = home / "dagster"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "dagster.yaml"
    if not config.is_file() or config.read_text(encoding="utf-8") != DAGSTER_YAML:
        tmp = folder / ".dagster.yaml.tmp"
        tmp.write_text(DAGSTER_YAML, encoding="utf-8")
        tmp.replace(config)
    return folder


class DagsterOrchestrator:
    """Each plan becomes a Dagster job of one op per stage, run by the in-process executor (the
    multiprocess one costs seconds a run and re-imports the caller)."""

    name = "dagster"

    def __init__(self, home: Path) -> None:
        self.home = home

    def execute(self, plan: Plan, runner: StageRunner) -> Result:
        import dagster as dg

        job = _job(dg, plan, runner)
        instance = dg.DagsterInstance.from_config(str(dagster_home(self.home)))
        try:
            result = job.execute_in_process(
                instance=instance, raise_on_error=False, run_config={"loggers": {"captured": {}}}
            )
        finally:
            instance.dispose()
        return Result(result.run_id, bool(result.success))


def _job(dg: Any, plan: Plan, runner: StageRunner) -> Any:
    by_op = {_safe(name): name for name in plan.stages}

    class FrameIO(dg.IOManager):
        """Stage outputs through the runner's store: read back by stage, never by a path of Dagster's."""

        def handle_output(self, context: Any, obj: pd.DataFrame) -> None:
            runner.store_output(by_op[context.step_key], obj)

        def load_input(self, context: Any) -> pd.DataFrame:
            return runner.load_output(by_op[context.upstream_output.step_key])

    def stage_op(name: str, first: bool) -> Any:
        def attempt_stage(context: Any, frame: pd.DataFrame | None) -> pd.DataFrame:
            attempt = context.retry_number + 1
            try:
                return runner.run_stage(name, frame, attempt=attempt)
            except TransientError as exc:
                if attempt >= plan.attempts:
                    raise
                wait = plan.backoff_seconds * 2 ** (attempt - 1)
                raise dg.RetryRequested(max_retries=plan.attempts - 1, seconds_to_wait=wait) from exc

        out = dg.Out(io_manager_key="frames")
        if first:

            def head(context):  # dagster reads `context` bare: no annotation
                return attempt_stage(context, runner.start_frame())

            return dg.op(name=_safe(name), out=out)(head)

        def then(context, frame):
            return attempt_stage(context, frame)

        return dg.op(name=_safe(name), ins={"frame": dg.In()}, out=out)(then)

    ops = [stage_op(name, i == 0) for i, name in enumerate(plan.stages)]

    @dg.graph(name=_safe(plan.pipeline))
    def pipeline() -> None:
        out = ops[0]()
        for op in ops[1:]:
            out = op(frame=out)

    @dg.logger(config_schema={})
    def captured(_init: Any) -> logging.Logger:
        logger = logging.getLogger(f"mloncall.pipelines.dagster.{runner.run_id}")
        logger.handlers = [_Capture(runner)]
        logger.setLevel(logging.INFO)
        logger.propagate = False
        return logger

    return pipeline.to_job(
        name=_safe(plan.pipeline),
        executor_def=dg.in_process_executor,
        resource_defs={"frames": dg.IOManagerDefinition.hardcoded_io_manager(FrameIO())},
        logger_defs={"captured": captured},
    )


class _Capture(logging.Handler):
    def __init__(self, runner: StageRunner) -> None:
        super().__init__(logging.INFO)
        self.runner = runner

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        message = str(meta.get("orig_message") or record.getMessage())
        step = meta.get("step_key")
        self.runner.engine_log(f"{step}: {message}" if step else message)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)

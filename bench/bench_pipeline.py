"""The orchestrator's overhead per stage: an empty stage run by Dagster's in-process executor (the embedded
default, with its SQLite instance and the IO manager mloncall configures), side by side with the same empty
stage called as a plain function, in the same run.

A plan of 1 and of 6 empty stages is run on each; the per-stage figure is the difference divided by 5 (so
the per-run cost, building the job and recording the run, is reported apart); a plain call costs the
6-stage run divided by 6.
Run: .venv/bin/python bench/bench_pipeline.py [REPEATS]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from mloncall.pipelines.orchestrator import DagsterOrchestrator, Plan

FRAME = pd.DataFrame({"x": [1.0, 2.0, 3.0]})


class EmptyStages:
    """A runner whose stages do nothing: what is left is the orchestrator's own cost."""

    run_id = 1

    def __init__(self) -> None:
        self.kept: dict[str, pd.DataFrame] = {}

    def run_stage(self, name: str, frame: pd.DataFrame | None, *, attempt: int) -> pd.DataFrame:
        return FRAME if frame is None else frame

    def start_frame(self) -> pd.DataFrame | None:
        return None

    def store_output(self, name: str, frame: pd.DataFrame) -> None:
        self.kept[name] = frame

    def load_output(self, name: str) -> pd.DataFrame:
        return self.kept[name]

    def engine_log(self, line: str) -> None:
        pass


def plan(stages: int) -> Plan:
    return Plan("bench", tuple(f"s{i}" for i in range(stages)), attempts=1, backoff_seconds=0.0)


def dagster_run(engine: DagsterOrchestrator, stages: int) -> float:
    start = time.perf_counter()
    result = engine.execute(plan(stages), EmptyStages())
    assert result.success
    return time.perf_counter() - start


def plain_run(stages: int) -> float:
    runner = EmptyStages()
    start = time.perf_counter()
    frame = None
    for name in plan(stages).stages:
        frame = runner.run_stage(name, frame, attempt=1)
        runner.store_output(name, frame)
    return time.perf_counter() - start


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as home:
        engine = DagsterOrchestrator(Path(home))
        dagster_run(engine, 1)  # the instance's first run creates its SQLite storage: not measured
        times = {k: [] for k in ("d1", "d6", "p1", "p6")}
        for _ in range(repeats):  # in turns, so a burst of load hits both alike
            times["d1"].append(dagster_run(engine, 1))
            times["d6"].append(dagster_run(engine, 6))
            times["p1"].append(plain_run(1))
            times["p6"].append(plain_run(6))
    best = {k: min(v) for k, v in times.items()}
    d_stage = (best["d6"] - best["d1"]) / 5
    p_stage = best["p6"] / 6  # a plain call has no per-run cost to take apart
    print(f"empty stage, best of {repeats} (load average {os.getloadavg()[0]:.1f}):")
    print(
        f"  dagster in-process: {d_stage * 1000:9.2f} ms per stage, {best['d1'] * 1000:8.1f} ms a 1-stage run"
    )
    print(
        f"  plain function:     {p_stage * 1000:9.4f} ms per stage, {best['p1'] * 1000:8.4f} ms a 1-stage run"
    )
    print(f"  ratio: dagster costs {d_stage / p_stage:,.0f}x a plain call per stage "
          f"({d_stage * 1000:.1f} ms of overhead per stage)")  # fmt: skip


if __name__ == "__main__":
    main()

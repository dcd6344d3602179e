"""The demo's small shared types: its pace, the story told so far, and the scene every stage acts on.

They live apart from the command and the stages so that both import them, and neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mloncall.stores.context import Context

MODEL = "iris-classifier"
ACTOR = "demo"
#: What the story's drift was: the root cause runbook 3 records and the post-mortem carries.
DRIFT_ROOT_CAUSE = "upstream source shifted petal_length by +2 cm (sensor calibration change)"


@dataclass
class Pace:
    """How long the story waits at each point; `--fast` shortens everything for the test suite."""

    step_duration: float
    min_requests: int
    steps: list[int]
    alert_for: str
    alert_window: str
    acceptance_timeout: float

    @classmethod
    def of(cls, fast: bool) -> Pace:
        if fast:
            return cls(3.0, 30, [50, 100], "3s", "20s", 30.0)
        return cls(10.0, 60, [10, 50, 100], "10s", "30s", 60.0)


@dataclass
class Story:
    """What happened, stage by stage, for the live view and the summary."""

    stages: list[tuple[str, str, str]] = field(default_factory=list)  # (title, status, detail)
    note: str = ""

    def begin(self, title: str) -> int:
        self.stages.append((title, "running", ""))
        return len(self.stages) - 1

    def end(self, index: int, status: str, detail: str) -> None:
        self.stages[index] = (self.stages[index][0], status, detail)


@dataclass
class Scene:
    """What every stage acts on: the installation, the pace, the live view, and the summary it adds to."""

    ctx: Context
    story: Story
    pace: Pace
    seed: int
    workdir: Path
    #: what the live view and the summary read while the story runs: the traffic, the acceptance, ...
    holder: dict[str, Any]
    refresh: Callable[[], None]
    lines: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)

    def begin(self, title: str) -> int:
        """Show a new stage as running."""
        i = self.story.begin(title)
        self.refresh()
        return i

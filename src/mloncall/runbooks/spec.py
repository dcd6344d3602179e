"""How a runbook is declared: its typed parameters, its ordered steps of four kinds, its acceptance
criteria and contact points. A runbook module builds one `Runbook`; `catalog` lists them by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mloncall.core.durations import parse_duration
from mloncall.core.errors import InvalidInput
from mloncall.core.outcome import Check
from mloncall.runbooks.states import StepKind

if TYPE_CHECKING:
    from mloncall.runbooks.runcontext import RunContext

StepFn = Callable[["RunContext"], Check]
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Param:
    """A typed parameter: `str`, `int`, `float`, `bool`, `duration` (kept as its text) or `steps` (10,50,100)."""

    name: str
    help: str
    type: str = "str"
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    positional: bool = False

    def parse(self, raw: Any) -> Any:
        """The value from its text (or a JSON value), or InvalidInput naming the parameter and the rule."""
        text = str(raw).strip()
        bad = f"invalid parameter {self.name}={text!r}"
        if self.choices and text not in self.choices:
            raise InvalidInput(f"{bad}: use one of {', '.join(self.choices)}")
        try:
            if self.type == "int":
                return int(text)
            if self.type == "float":
                return float(text)
        except ValueError:
            raise InvalidInput(f"{bad}: expected a {'whole ' if self.type == 'int' else ''}number") from None
        if self.type == "bool":
            if text.lower() not in TRUE_WORDS + FALSE_WORDS:
                raise InvalidInput(f"{bad}: use true or false")
            return text.lower() in TRUE_WORDS
        if self.type == "duration":
            parse_duration(text, what=self.name)
            return text
        if self.type == "steps":
            from mloncall.rollout.service import parse_steps

            return parse_steps(text if isinstance(raw, str) else list(raw))
        if self.type == "thresholds":
            return _thresholds(raw, self.name)
        if not text:
            raise InvalidInput(f"{bad}: it may not be empty")
        return text


@dataclass(frozen=True)
class Step:
    """One numbered step. `check` reads only; `action` changes state after confirmation, with a
    precondition re-checked before it runs; `manual` asks a person; `decision` chooses the next steps.

    A non-idempotent action that may have half-run is never repeated blindly: `trace` says what it left
    (None: nothing), and `resume` continues from that trace without repeating it.
    """

    name: str
    title: str
    kind: StepKind
    run: StepFn
    question: str | Callable[[RunContext], str] = ""
    idempotent: bool = True
    precondition: StepFn | None = None
    trace: Callable[[RunContext], str | None] | None = None
    resume: StepFn | None = None
    #: a failed outcome stops the run (True), or is recorded and the run goes on to decide (False)
    stop_on_failure: bool = True
    #: a decision's choices: the later steps it may run; those it does not choose are skipped
    chooses_among: tuple[str, ...] = ()


@dataclass(frozen=True)
class Criterion:
    """An acceptance criterion: a check evaluated at the end of a run, and again on demand."""

    name: str
    check: StepFn


def _thresholds(raw: Any, name: str) -> dict[str, Any]:
    """Canary analysis thresholds to override, `NAME=VALUE[,NAME=VALUE]` (or a JSON object), checked now so a
    bad one is refused before anything runs."""
    from mloncall.core.names import parse_pairs
    from mloncall.rollout.analysis import Thresholds

    if isinstance(raw, Mapping):
        pairs = {str(k): v for k, v in raw.items()}
    else:
        items = [item for item in str(raw).split(",") if item.strip()]
        pairs = parse_pairs(items, option=f"parameter {name}", example="latency_slack_ms=50")
    Thresholds.from_overrides(pairs)
    return pairs


def model_target(params: Mapping[str, Any]) -> str:
    """The target of a runbook run on one model (`model:iris-classifier`), from its `model` parameter."""
    return f"model:{params['model']}"


@dataclass(frozen=True)
class Runbook:
    name: str
    title: str
    scenario: str
    objective: str
    params: tuple[Param, ...]
    steps: tuple[Step, ...]
    acceptance: tuple[Criterion, ...]
    contacts: tuple[str, ...]
    #: what the run acts on (`model:iris-classifier`), from its parsed parameters: the lease's key
    target: Callable[[Mapping[str, Any]], str]
    needs_alert: bool = False
    troubleshooting: tuple[str, ...] = field(default_factory=tuple)

    def triage_checks(self) -> tuple[Step, ...]:
        """The read-only checks before the first step that changes state or asks a person: what
        `auto_run: checks` runs when an alert fires (later checks judge what an action did)."""
        out: list[Step] = []
        for s in self.steps:
            if s.kind != StepKind.CHECK:
                break
            out.append(s)
        return tuple(out)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def parse_params(self, given: Mapping[str, Any], positional: list[str] | None = None) -> dict[str, Any]:
        """Every parameter parsed and checked: unknown, missing and invalid ones are InvalidInput."""
        known = {p.name: p for p in self.params}
        values = dict(given)
        slots = [p for p in self.params if p.positional]
        args = list(positional or [])
        if len(args) > len(slots):
            raise InvalidInput(
                f"runbook {self.name} takes {len(slots)} argument(s) "
                f"({', '.join(p.name.upper() for p in slots) or 'none'}), got {len(args)}"
            )
        for p, arg in zip(slots, args, strict=False):
            if p.name in values:
                raise InvalidInput(f"{p.name} given twice: as an argument and as --param {p.name}=...")
            values[p.name] = arg
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InvalidInput(
                f"unknown parameter {', '.join(unknown)} for runbook {self.name}: "
                f"it takes {', '.join(known) or 'none'}"
            )
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in values and values[p.name] is not None:
                out[p.name] = p.parse(values[p.name])
            elif p.required:
                how = p.name.upper() if p.positional else f"--param {p.name}=..."
                raise InvalidInput(f"runbook {self.name} needs {p.name} ({p.help}): give {how}")
            else:
                out[p.name] = p.default
        return out

"""The runbooks by name: each is declared in its own module and listed here."""

from __future__ import annotations

from mloncall.core.errors import NotFound
from mloncall.runbooks.spec import Runbook

RUNBOOKS: dict[str, Runbook] = {}


def register(runbook: Runbook) -> Runbook:
    RUNBOOKS[runbook.name] = runbook
    return runbook


def get_runbook(name: str) -> Runbook:
    _load()
    try:
        return RUNBOOKS[name]
    except KeyError:
        raise NotFound(f"no runbook {name!r}: known runbooks are {', '.join(sorted(RUNBOOKS))}") from None


def all_runbooks() -> list[Runbook]:
    _load()
    return list(RUNBOOKS.values())


def _load() -> None:
    """The project's runbooks, imported when first asked for (they pull in the domains' services)."""
    if "deployment" in RUNBOOKS:
        return
    from mloncall.runbooks import (
        access,
        dataquality,
        deployment,
        incident,
        monitoring,
        pipeline,
        retraining,
        scaling,
    )

    for book in (
        deployment.RUNBOOK,
        retraining.RUNBOOK,
        monitoring.RUNBOOK,
        dataquality.RUNBOOK,
        pipeline.RUNBOOK,
        scaling.RUNBOOK,
        access.RUNBOOK,
        incident.RUNBOOK,
    ):
        RUNBOOKS.setdefault(book.name, book)

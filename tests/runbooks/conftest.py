"""A live server with traffic for the runbooks' end-to-end tests (the rollout tests' own fixture), and a
real webhook receiver for what a runbook escalates (the alerts tests' own)."""

from __future__ import annotations

from tests.alerts.conftest import receiver
from tests.rollout.conftest import ok, served

__all__ = ["ok", "receiver", "served"]

"""A live server with traffic for the runbooks' end-to-end tests (the rollout tests' own fixture), and a
real webhook receiver for what a runbook escalates (the alerts tests' own), and the incidents tests'
installation with principals at a frozen time."""

from __future__ import annotations

from tests.alerts.conftest import receiver
from tests.incidents.conftest import clock_at, ictx
from tests.rollout.conftest import ok, served

__all__ = ["clock_at", "ictx", "ok", "receiver", "served"]

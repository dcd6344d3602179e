"""A live server with traffic for the runbooks' end-to-end tests (the rollout tests' own fixture)."""

from __future__ import annotations

from tests.rollout.conftest import ok, served

__all__ = ["ok", "served"]

"""mloncall: runbooks that run, for a production ML model."""

from __future__ import annotations

__version__ = "0.1.0"

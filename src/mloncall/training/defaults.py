"""Gate defaults, in a module light enough for the CLI to import without loading scikit-learn."""

from __future__ import annotations

#: Largest allowed drop of any class's recall, challenger vs production, on the shared evaluation rows.
DEFAULT_RECALL_MARGIN = 0.05
#: Largest allowed accuracy gap on production's own held-out rows (new rows with wrong labels show here).
DEFAULT_REFERENCE_MARGIN = 0.05
DEFAULT_TARGET = "species"

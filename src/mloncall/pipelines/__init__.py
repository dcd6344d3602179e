"""Data pipelines: declared stages run on an orchestrator, with row checks, quarantine, upstream checks and schema diffs."""

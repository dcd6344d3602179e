"""Runbooks: where several domains meet for one oncall task (investigate today; the runbook engine next)."""

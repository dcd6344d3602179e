from __future__ import annotations

import pytest

from mloncall.core.outcome import Check, Outcome, overall, worst


def test_outcomes_are_ordered_best_to_worst() -> None:
    assert Outcome.SUCCESSFUL < Outcome.INCONCLUSIVE < Outcome.ERROR < Outcome.FAILED
    assert worst([Outcome.SUCCESSFUL, Outcome.FAILED, Outcome.INCONCLUSIVE]) is Outcome.FAILED
    assert worst([Outcome.SUCCESSFUL, Outcome.INCONCLUSIVE]) is Outcome.INCONCLUSIVE


def test_no_evidence_is_never_a_silent_success() -> None:
    assert worst([]) is Outcome.INCONCLUSIVE
    assert overall([]) is Outcome.INCONCLUSIVE


def test_check_carries_evidence() -> None:
    c = Check("error rate", Outcome.FAILED, "2.0% > 1.0%", {"value": 0.02, "threshold": 0.01})
    assert not c.passed
    assert c.to_dict() == {
        "name": "error rate",
        "outcome": "failed",
        "reason": "2.0% > 1.0%",
        "evidence": {"value": 0.02, "threshold": 0.01},
    }
    assert Outcome.parse("Inconclusive") is Outcome.INCONCLUSIVE
    with pytest.raises(ValueError):
        Outcome.parse("great")

"""The one state-machine table every domain's states use."""

from __future__ import annotations

import enum

import pytest

from mloncall.core.errors import Conflict
from mloncall.core.states import Moves


class Light(enum.StrEnum):
    RED = "red"
    GREEN = "green"
    OFF = "off"


LIGHTS = Moves(
    Light, {None: {Light.RED}, Light.RED: {Light.GREEN, Light.OFF}, Light.GREEN: {Light.RED}, Light.OFF: ()}
)


def test_a_move_in_the_table_returns_its_target_and_one_outside_it_is_a_conflict_naming_both() -> None:
    assert LIGHTS.check("light 1", None, "red") is Light.RED
    assert LIGHTS.check("light 1", "red", "green") is Light.GREEN
    with pytest.raises(Conflict, match="light 1 is green: it cannot become off"):
        LIGHTS.check("light 1", "green", "off")
    with pytest.raises(Conflict, match="light 2 is new: it cannot become green"):
        LIGHTS.check("light 2", None, "green")
    assert LIGHTS.final == (Light.OFF,)


def test_a_table_that_forgets_a_state_is_refused_when_it_is_written() -> None:
    with pytest.raises(ValueError, match="off"):
        Moves(Light, {Light.RED: {Light.GREEN}, Light.GREEN: {Light.RED}})


def test_every_domain_table_covers_its_states() -> None:
    from mloncall.alerts.states import ALERT_TRANSITIONS, NOTIFICATION_TRANSITIONS
    from mloncall.incidents.states import TRANSITIONS as INCIDENT_MOVES
    from mloncall.rollout.models import FINAL_STATES
    from mloncall.rollout.models import TRANSITIONS as ROLLOUT_MOVES

    assert set(FINAL_STATES) == {"promoted", "aborted", "rolled_back"}
    assert ALERT_TRANSITIONS.final == ("closed",)
    assert "sent" in NOTIFICATION_TRANSITIONS.final
    assert INCIDENT_MOVES.final == ("closed",)
    assert ROLLOUT_MOVES.allows("running", "paused") and not ROLLOUT_MOVES.allows("promoted", "running")

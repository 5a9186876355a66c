"""The lifecycle table: one place that says which event moves a state where."""

from __future__ import annotations

import enum

import pytest

from carehub.hub import InvalidTransition, Lifecycle


class Door(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    LOCKED = "locked"


DOOR = Lifecycle("door", {
    Door.OPEN: {"close": Door.CLOSED},
    Door.CLOSED: {"open": Door.OPEN, "lock": Door.LOCKED},
})


@pytest.mark.parametrize(("state", "event", "after"), [
    (Door.OPEN, "close", Door.CLOSED),
    (Door.CLOSED, "open", Door.OPEN),
    (Door.CLOSED, "lock", Door.LOCKED),
])
def test_a_legal_step_leads_to_the_state_in_the_table(state: Door, event: str, after: Door) -> None:
    assert DOOR.step(state, event) is after


def test_an_illegal_step_names_the_state_and_the_event() -> None:
    with pytest.raises(InvalidTransition, match="lock is not allowed while the door is open") as caught:
        DOOR.step(Door.OPEN, "lock")
    assert caught.value.state is Door.OPEN and caught.value.event == "lock"
    assert caught.value.code == "invalid_transition"


def test_a_refusal_can_carry_the_sentence_and_code_its_users_know() -> None:
    with pytest.raises(InvalidTransition) as caught:
        DOOR.step(Door.LOCKED, "open", message="门已锁 (the door is locked)", code="locked")
    assert (caught.value.message, caught.value.code) == ("门已锁 (the door is locked)", "locked")


def test_a_state_without_a_row_is_final() -> None:
    assert DOOR.is_final(Door.LOCKED) and not DOOR.is_final(Door.OPEN)
    assert DOOR.events(Door.CLOSED) == {"open", "lock"}

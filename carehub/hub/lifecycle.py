"""Lifecycles written once, as tables (h11's ``_state.py``).

A lifecycle is ``state -> {event: next state}``: the statuses an aggregate (a booking, a payment
order, a bill, a roster, a consultation ...) can be in, and which event moves it where. Every
status check of the domain goes through :meth:`Lifecycle.step` (or :meth:`Lifecycle.allows` for
a question), so an illegal step is refused in one place, with :class:`InvalidTransition` naming
the state and the event, instead of ``if status != ...`` scattered over the handlers.

Events are whatever names the domain's moves best: a message type (``PaymentConfirmed``), or a
string when the move has no message (``"approve"``). States are members of a ``str`` enum, so
the stored and wire values stay the plain strings they were::

    class RosterStatus(enum.StrEnum):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    ROSTER = Lifecycle("roster", {
        RosterStatus.PENDING: {"approve": RosterStatus.APPROVED, "reject": RosterStatus.REJECTED},
    })
    ROSTER.step(RosterStatus.PENDING, "approve")   # RosterStatus.APPROVED
    ROSTER.step(RosterStatus.APPROVED, "reject")   # InvalidTransition: reject ... while the roster is approved

A state without a row is final (no event moves it).
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

from .errors import InvalidTransition, _name

S = TypeVar("S", bound=enum.Enum)


class Lifecycle(Generic[S]):
    """One aggregate's allowed transitions; see the module docstring."""

    def __init__(self, name: str, transitions: Mapping[S, Mapping[Hashable, S]]) -> None:
        self.name = name
        self.transitions: Mapping[S, Mapping[Hashable, S]] = {s: dict(t) for s, t in transitions.items()}

    def allows(self, state: S, event: Hashable) -> bool:
        return event in self.transitions.get(state, {})

    def step(self, state: S, event: Hashable, *, message: str | None = None, code: str | None = None) -> S:
        """The state ``event`` leads to from ``state``; raises :class:`InvalidTransition` when the table has none.

        ``message``/``code`` are what the caller is told on a refusal (default: the state and event named).
        """
        try:
            return self.transitions[state][event]
        except KeyError:
            text = message or f"{_name(event)} is not allowed while the {self.name} is {_name(state)}"
            raise InvalidTransition(state, event, message=text, code=code) from None

    def events(self, state: S) -> frozenset[Hashable]:
        """What may happen next in ``state`` (empty for a final state)."""
        return frozenset(self.transitions.get(state, {}))

    def is_final(self, state: S) -> bool:
        return not self.transitions.get(state)

    def __repr__(self) -> str:
        return f"Lifecycle({self.name!r}, {len(self.transitions)} states)"


__all__ = ["Lifecycle"]

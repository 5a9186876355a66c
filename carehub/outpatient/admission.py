"""Admission to a slot pool in a release burst: the pools' gates and the "sold out" board (OUT-2, OUT-3).

The slot pool actor is the only judge of a booking; this module spares it (and the database) the
hopeless requests. Requests for one pool pass a gate of ``POOL_GATE`` at a time (the pool's batch);
the others wait in order. After the pool answers "full", the same answer is given for
``SOLD_OUT_SECONDS`` from the board without asking anyone, and everyone queued at that pool's gate
hears it at once (docs/outpatient.md, "Release bursts").
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
import time
from collections.abc import Callable
from typing import Protocol

import trio

from carehub.actors.slot_pool import pool_address
from carehub.hub import Refusal

from .errors import BookingRefused

#: How long a pool's "full" answer is given again without asking the pool. In a release burst
#: the thousands who come after the last slot cost no storage read and no actor turn; a slot
#: freed meanwhile (a cancellation, an unpaid hold released) is offered again within this time.
SOLD_OUT_SECONDS = 2.0
#: Booking requests one pool works on at once (its batch); the rest wait here, in order, where
#: the sold-out board answers them once the pool is full, instead of filling its mailbox.
POOL_GATE = 64
GATE_WAIT_SECONDS = 20.0

#: (pool address, period, channel): one board entry
BoardKey = tuple[str, str, str]


class Place:
    """A place at a pool's gate, held by one booking request (:meth:`Bookings.book` books with it, then leaves)."""

    __slots__ = ("gate",)

    def __init__(self, gate: _Gate) -> None:
        self.gate = gate


class Waiter(Protocol):
    """A booking request that waits at a pool's gate without a task of its own (a booking frame on ``/ws``).

    Implemented by whoever carries the request (the ``/ws`` gateway); the gate calls exactly one of
    the two, once: now from :meth:`PoolGates.admit`, or later when a place frees or the pool sells out.
    """

    def admitted(self, place: Place) -> bool:
        """It has its place: start its booking with it (False: the request is gone; the place goes to the next)."""
        ...

    def refused(self, err: Refusal | BookingRefused) -> None:
        """It is answered without a place: "full" (the sold-out board) or "busy" (it waited ``GATE_WAIT_SECONDS``)."""
        ...


class Admission(enum.Enum):
    """What :meth:`PoolGates.admit` did with a request (a sold-out pool raises "full" instead)."""

    #: it had a place at once (its waiter was admitted, or was gone and the place went on)
    ADMITTED = "admitted"
    #: it waits in the gate's queue; its waiter hears later
    QUEUED = "queued"


class _Queued:
    """A :class:`Waiter` in a gate's queue, with what the sold-out board and the deadline need to answer it."""

    __slots__ = ("board_key", "client_ref", "deadline", "waiter")

    def __init__(self, board_key: BoardKey, client_ref: str | None, deadline: float, waiter: Waiter) -> None:
        self.board_key = board_key
        self.client_ref = client_ref
        self.deadline = deadline
        self.waiter = waiter


class _Parked:
    """A task waiting in :meth:`_Gate.enter` (HTTP, partner channels): parked on a ParkingLot of its own."""

    __slots__ = ("let_in", "lot")

    def __init__(self) -> None:
        self.lot = trio.lowlevel.ParkingLot()
        #: set by whoever wakes it: True (it has a place), False (sent back to read the board)
        self.let_in: bool | None = None

    def wake(self, let_in: bool) -> None:
        self.let_in = let_in
        self.lot.unpark()


def _busy() -> BookingRefused:
    return BookingRefused("预约人数过多, 请稍后重试 (too many bookings in progress, try again)", code="busy")


class _Gate:
    """At most ``size`` booking requests at a pool's actor at once; the rest wait here, first come first in:
    tasks parked in :meth:`enter` (HTTP, partner channels) and :class:`Waiter` s without a task
    (:meth:`queue`, the ``/ws`` command), in one order.

    When the pool sells out, :meth:`wake_all` sends the whole queue back for its answer at once: with a
    semaphore each waiter was let in by the one before it, one per turn of the loop, so the last of
    thousands queued at a release heard "full" only after thousands of turns. A queued request is
    answered right there, without ever having had a task: in a release burst that is most of them.
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._size = size
        self._waiting: collections.OrderedDict[_Parked | _Queued, None] = collections.OrderedDict()

    @property
    def in_use(self) -> bool:
        return self._free < self._size or bool(self._waiting)

    def take_place(self) -> bool:
        """A place now, if one is free and nobody waits (call :meth:`leave` after)."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return True
        return False

    async def enter(self, deadline: float) -> bool:
        """True once in (call :meth:`leave` after); False when sent back by :meth:`wake_all` or at ``deadline``."""
        if self.take_place():
            await trio.lowlevel.checkpoint()  # still a checkpoint, like Semaphore.acquire
            return True
        parked = _Parked()
        self._waiting[parked] = None
        try:
            with trio.move_on_at(deadline):
                await parked.lot.park()
        finally:
            if parked.let_in is None:  # timed out or cancelled while still in line
                self._waiting.pop(parked, None)
        return bool(parked.let_in)

    def queue(self, request: _Queued) -> None:
        self._waiting[request] = None

    def leave(self) -> None:
        """Hand the place to the first waiting: a parked task, or a queued waiter whose booking starts now."""
        now = trio.current_time()
        while self._waiting:
            waiter, _ = self._waiting.popitem(last=False)
            if isinstance(waiter, _Parked):
                waiter.wake(True)
                return
            if now >= waiter.deadline:
                waiter.waiter.refused(_busy())
            elif waiter.waiter.admitted(Place(self)):
                return
        self._free += 1

    def wake_all(self, board: Callable[[BoardKey, str | None], str | None]) -> None:
        """The pool said "full": parked tasks go back to read the sold-out board; the queued waiters whose
        board (``board(board_key, client_ref)``) is now sold out are answered here, the others keep their place."""
        said: dict[BoardKey, str | None] = {}  # the board's answer per key (a retry asks for itself)
        for waiter in list(self._waiting):
            if isinstance(waiter, _Parked):
                del self._waiting[waiter]
                waiter.wake(False)
                continue
            if waiter.client_ref is None:
                if waiter.board_key not in said:
                    said[waiter.board_key] = board(waiter.board_key, None)
                message = said[waiter.board_key]
            else:
                message = board(waiter.board_key, waiter.client_ref)
            if message is not None:
                del self._waiting[waiter]
                waiter.waiter.refused(Refusal(message, code="full"))


class PoolGates:
    """Every slot pool's gate and the sold-out board, for one node."""

    def __init__(self) -> None:
        #: (pool address, period, channel) -> (until, the pool's "full" message)
        self._sold_out: dict[BoardKey, tuple[float, str]] = {}
        #: pool address -> the gate of its booking requests (POOL_GATE at a time)
        self._gates: dict[str, _Gate] = {}

    def board(self, board_key: BoardKey, client_ref: str | None) -> str | None:
        """The "sold out" board's answer to this booking now (None: try it)."""
        sold_out = self._sold_out.get(board_key)
        if sold_out is not None and client_ref is None:  # a retry (client_ref) may find its own booking
            if sold_out[0] > time.monotonic():
                return sold_out[1]
            self._sold_out.pop(board_key, None)
        return None

    def check_sold_out(self, board_key: BoardKey, client_ref: str | None) -> None:
        message = self.board(board_key, client_ref)
        if message is not None:
            raise Refusal(message, code="full")

    def gate(self, address: str) -> _Gate:
        gate = self._gates.get(address)
        if gate is None:
            if len(self._gates) > 10_000:
                self._gates = {a: g for a, g in self._gates.items() if g.in_use}  # keep those in use
            gate = self._gates[address] = _Gate(POOL_GATE)
        return gate

    def admit(
        self, *, doctor_id: str, day: dt.date, period: str, channel: str, client_ref: str | None, waiter: Waiter,
    ) -> Admission:
        """A booking request that has no task yet: admitted now if its pool's gate has a place (the waiter
        starts its booking with the :class:`Place`), else queued until one frees or the pool sells out (the
        waiter hears which); raises Refusal "full" at once from the sold-out board."""
        address = pool_address(doctor_id, day)
        board_key = (address, period, channel)
        self.check_sold_out(board_key, client_ref)
        gate = self.gate(address)
        if gate.take_place():
            if not waiter.admitted(Place(gate)):
                gate.leave()
            return Admission.ADMITTED
        gate.queue(_Queued(board_key, client_ref, trio.current_time() + GATE_WAIT_SECONDS, waiter))
        return Admission.QUEUED

    async def enter(self, address: str, board_key: BoardKey, client_ref: str | None) -> _Gate:
        """Wait for a place at the pool's gate (call ``leave()`` on the gate after); raises "full" or "busy"."""
        gate = self.gate(address)
        self.check_sold_out(board_key, client_ref)
        deadline = trio.current_time() + GATE_WAIT_SECONDS
        while not await gate.enter(deadline):
            # sent back because a board of this pool sold out: ours, or another period's or channel's
            self.check_sold_out(board_key, client_ref)
            if trio.current_time() >= deadline:
                raise _busy()
        return gate

    def sold_out(self, address: str, board_key: BoardKey, message: str) -> None:
        """The pool answered "full": the board says so for a while, and its whole queue hears it now."""
        if len(self._sold_out) > 10_000:
            self._sold_out.clear()
        self._sold_out[board_key] = (time.monotonic() + SOLD_OUT_SECONDS, message)
        gate = self._gates.get(address)
        if gate is not None:
            gate.wake_all(self.board)  # everyone queued for this pool learns it now, in one turn

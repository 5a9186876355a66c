"""A pool's gate in a release burst: admit / queued / full, for waiters without a task and tasks, in one order."""

from __future__ import annotations

import datetime as dt

import pytest
import trio

from carehub.actors.slot_pool import pool_address
from carehub.hub import Refusal
from carehub.outpatient.admission import POOL_GATE, Admission, Place, PoolGates
from carehub.outpatient.errors import BookingRefused

DAY = dt.date(2026, 12, 1)
ADDRESS = pool_address("d1", DAY)
BOARD = (ADDRESS, "am", "app")


class Waiter:
    """What the ``/ws`` gateway does for a booking frame, recorded: admitted (with its place) or refused."""

    def __init__(self, name: str, log: list[str], *, gone: bool = False) -> None:
        self.name = name
        self.log = log
        self.gone = gone
        self.place: Place | None = None

    def admitted(self, place: Place) -> bool:
        if self.gone:
            self.log.append(f"{self.name} gone")
            return False
        self.place = place
        self.log.append(f"{self.name} admitted")
        return True

    def refused(self, err: Refusal | BookingRefused) -> None:
        self.log.append(f"{self.name} {err.code}")


def admit(gates: PoolGates, waiter: Waiter) -> Admission:
    return gates.admit(doctor_id="d1", day=DAY, period="am", channel="app", client_ref=None, waiter=waiter)


async def test_waiters_are_admitted_while_places_are_free_then_queue_and_go_in_order_as_places_free() -> None:
    gates, log = PoolGates(), []
    first = [Waiter(f"w{i}", log) for i in range(POOL_GATE)]
    assert [admit(gates, w) for w in first] == [Admission.ADMITTED] * POOL_GATE
    late = [Waiter("x", log), Waiter("y", log, gone=True), Waiter("z", log)]
    assert [admit(gates, w) for w in late] == [Admission.QUEUED] * 3
    log.clear()
    assert first[0].place is not None
    assert first[1].place is not None
    first[0].place.gate.leave()  # x goes in
    first[1].place.gate.leave()  # y is gone: the place goes on to z
    assert log == ["x admitted", "y gone", "z admitted"]


async def test_when_the_pool_sells_out_its_whole_queue_hears_full_at_once_and_the_board_answers_newcomers() -> None:
    gates, log = PoolGates(), []
    for i in range(POOL_GATE):
        admit(gates, Waiter(f"w{i}", log))
    queued = [Waiter(f"q{i}", log) for i in range(3)]
    for w in queued:
        admit(gates, w)
    log.clear()
    gates.sold_out(ADDRESS, BOARD, "已约满 (full)")
    assert log == ["q0 full", "q1 full", "q2 full"]
    with pytest.raises(Refusal) as full:
        admit(gates, Waiter("late", log))
    assert full.value.code == "full"


async def test_a_task_waiting_at_the_gate_keeps_its_place_in_line_with_the_waiters_without_a_task() -> None:
    gates, log = PoolGates(), []
    holders = [Waiter(f"w{i}", log) for i in range(POOL_GATE)]
    for w in holders:
        admit(gates, w)
    got_in = trio.Event()

    async def http_booking() -> None:
        gate = await gates.enter(ADDRESS, BOARD, None)
        log.append("task in")
        got_in.set()
        gate.leave()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(http_booking)
        await trio.testing.wait_all_tasks_blocked()
        admit(gates, Waiter("after the task", log))
        log.clear()
        assert holders[0].place is not None
        holders[0].place.gate.leave()  # the task was first in line
        await got_in.wait()
    assert log == ["task in", "after the task admitted"]


async def test_a_task_that_waits_too_long_at_the_gate_is_told_busy(autojump_clock: trio.abc.Clock) -> None:
    gates, log = PoolGates(), []
    for i in range(POOL_GATE):
        admit(gates, Waiter(f"w{i}", log))
    with pytest.raises(BookingRefused) as busy:
        await gates.enter(ADDRESS, BOARD, None)
    assert busy.value.code == "busy"

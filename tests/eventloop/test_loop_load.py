"""How busy the event loop is: what housekeeping (GC, effects) asks before it runs (docs/gateway.md)."""

from __future__ import annotations

import time

import trio

from carehub.eventloop import Backlog, loop_load


async def run_without_waiting(seconds: float) -> None:
    """Turns of the loop that never wait for I/O, as while thousands of frames are read."""
    end = trio.current_time() + seconds
    while trio.current_time() < end:
        time.sleep(0.002)  # noqa: ASYNC251 (work in the turn is the point)
        await trio.lowlevel.checkpoint()


async def test_the_loop_is_not_busy_while_it_mostly_waits() -> None:
    load = loop_load()
    await trio.sleep(0.25)
    assert not load.busy()


async def test_the_loop_is_busy_while_it_runs_without_waiting_and_quiet_again_after() -> None:
    load = loop_load()
    await run_without_waiting(0.3)
    busy_then = load.busy()
    await trio.sleep(0.25)
    assert busy_then and not load.busy()


async def test_the_loop_is_busy_while_work_is_held_back_for_a_later_turn() -> None:
    load = loop_load()
    await trio.sleep(0.25)
    held = Backlog()
    load.hold(held)
    held.count = 3
    assert load.busy() and not load.idle()
    held.count = 0
    assert not load.busy()
    held.count = 2
    load.release(held)
    assert not load.busy()

"""The garbage collector runs at the event loop's quiet moments (docs/gateway.md, "Collector")."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator

import pytest
import trio

from carehub.eventloop import Collector


class Node:
    """A garbage cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def small_young_generation() -> Iterator[None]:
    before = gc.get_threshold()
    gc.collect()
    gc.set_threshold(200, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.enable()


def garbage_cycles(n: int = 1000) -> weakref.ref[Node]:
    """Make ``n`` unreachable cycles (enough to pass the young generation's threshold); a weak reference to one."""
    first = Node()
    probe = weakref.ref(first)
    del first
    for _ in range(n):
        Node()
    return probe


async def busy_for(seconds: float) -> None:
    """Turns of the loop that each take 30 ms, as when thousands of frames arrive at once."""
    end = trio.current_time() + seconds
    while trio.current_time() < end:
        time.sleep(0.03)  # noqa: ASYNC251 (a slow turn of the loop is the point)
        await trio.lowlevel.checkpoint()


async def test_garbage_cycles_are_collected_by_the_collector_once_the_threshold_is_passed(
    small_young_generation: None,
) -> None:
    collector = Collector(interval=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run)
        probe = garbage_cycles()
        await trio.sleep(0.2)
        collector.stop()
    assert probe() is None and collector.collections[0] >= 1
    assert gc.isenabled()  # CPython collects again once the collector stops


async def test_a_collection_waits_while_turns_of_the_loop_are_slow(small_young_generation: None) -> None:
    collector = Collector(interval=0.01, max_wait=5.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run)
        probe = garbage_cycles()
        await busy_for(0.4)
        alive_while_busy = probe() is not None
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert alive_while_busy and collector.deferred >= 1
    assert probe() is None  # collected once the loop was quiet again


async def test_a_collection_waits_no_longer_than_its_limit_when_the_loop_stays_busy(
    small_young_generation: None,
) -> None:
    collector = Collector(interval=0.01, max_wait=0.15)
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run)
        probe = garbage_cycles()
        await busy_for(0.6)
        collected_while_busy = probe() is None
        nursery.cancel_scope.cancel()
    assert collected_while_busy and collector.deferred >= 1


async def test_a_collection_half_way_due_runs_ahead_while_the_loop_is_idle(small_young_generation: None) -> None:
    collector = Collector(interval=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run)
        probe = garbage_cycles(60)
        assert 100 < gc.get_count()[0] < 200  # past half the threshold (200), not past the threshold
        await trio.sleep(0.2)
        collector.stop()
    assert probe() is None and collector.collections[0] >= 1

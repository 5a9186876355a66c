"""Python's cyclic garbage collector, run at the event loop's quiet moments (docs/gateway.md, "Collector").

CPython collects the young generation whenever tracked allocations pass its threshold, wherever the
program is at that moment: in a release burst that was four or five passes of 25-100 ms inside the
1.4 s in which 10,000 booking frames were answered, and every 50th pass also walks the middle
generation, which with 10,000 connections held is millions of objects. Here automatic collection
is off and a task runs the same collections itself: every ``interval`` it looks at the allocation
counts and collects the generation CPython would have, unless the loop is busy (people are waiting
for answers, :mod:`carehub.eventloop.load`); then the collection waits, at most ``max_wait`` seconds; past
``hard_factor`` thresholds of young allocations only the young generation is collected meanwhile (a
few ms), so what garbage cycles hold stays bounded. While the loop is idle it collects what is
``ahead`` (half) way to due, so that a burst starts with room before the next pass.
"""

from __future__ import annotations

import gc
import time

import trio

from .load import loop_load


class Collector:
    """Runs CPython's collections itself, at the loop's quiet moments (see the module docstring)."""

    def __init__(self, *, interval: float = 0.1, max_wait: float = 5.0, hard_factor: int = 20,
                 ahead: float = 0.5) -> None:
        self.interval = interval
        self.ahead = ahead
        self.max_wait = max_wait
        self.hard_factor = hard_factor
        #: collections run, by generation
        self.collections = [0, 0, 0]
        #: collections that waited for a quiet moment
        self.deferred = 0
        #: time spent collecting
        self.seconds = 0.0
        self._scope = trio.CancelScope()
        #: collecting in place of CPython now (between :meth:`run` starting and stopping)
        self.running = False

    def due(self, ahead: float = 1.0) -> int | None:
        """The generation CPython's own rule would collect now (None: nothing is due); without CPython's extra
        condition for a full collection (a quarter of the old generation new since the last), which the
        ``gc`` module does not expose: a full pass comes after 100 middle-generation passes, as counted.
        ``ahead`` < 1: what would be due once the counts reach that share of the thresholds."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        for generation in (2, 1, 0):
            if counts[generation] > thresholds[generation] * ahead:
                return generation
        return None

    def stop(self) -> None:
        """End :meth:`run` (automatic collection is back on)."""
        self._scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Collect in place of CPython until :meth:`stop` or cancelled (automatic collection is back on after)."""
        loop_load()  # measuring from now
        gc.disable()
        self.running = True
        task_status.started()
        try:
            with self._scope:
                await self._collect()
        finally:
            self.running = False
            gc.enable()

    async def _collect(self) -> None:
        waiting_since: float | None = None
        while True:
            await trio.sleep(self.interval)
            # while the loop is idle, what is half-way due is collected ahead: otherwise the first
            # allocations of the next burst tip it over, and a 200 ms pass of the middle generation
            # ran in the first turns of a release (benchmarks-log.md, 2026-11-26 afternoon)
            generation = self.due(ahead=self.ahead if loop_load().idle() else 1.0)
            if generation is None:
                continue
            if loop_load().busy():
                now = trio.current_time()
                if waiting_since is None:
                    waiting_since = now
                    self.deferred += 1
                if now - waiting_since < self.max_wait:
                    if gc.get_count()[0] < self.hard_factor * gc.get_threshold()[0]:
                        continue
                    generation = 0  # too many young objects: those (a few ms); the older generations wait on
                else:
                    waiting_since = None
            else:
                waiting_since = None
            started = time.perf_counter()
            gc.collect(generation)
            self.seconds += time.perf_counter() - started
            self.collections[generation] += 1

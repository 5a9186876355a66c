"""The read pacer: a burst of frames on reader tasks is read in short turns (docs/gateway.md, "Read pacer")."""

from __future__ import annotations

import trio

from carehub.eventloop import LoopLoad, loop_load


class ReadPacer:
    """Bounds the reading done in one turn of the event loop.

    Trio runs every task that became ready in one batch. After a quiet moment a burst of frames on
    thousands of connections (a release of slots at 08:00) makes every reader ready at once, and
    the turn that reads them all takes hundreds of milliseconds, in which nothing else moves: the
    answer of a commit, the next step of a booking, the writes, a timer. Each of those steps then
    waits for such a turn, so the work already in the hub finishes only after all new work is read.

    Here a reader woken once ``turn_seconds`` of the turn are spent, or while others already wait,
    parks; each turn :meth:`run` lets the first ``per_turn`` parked readers go, in the order they came.
    The reading goes on at the same pace, but in short turns, between which in-flight work moves on.
    """

    def __init__(self, *, turn_seconds: float = 0.004, per_turn: int = 64) -> None:
        self.turn_seconds = turn_seconds
        self.per_turn = per_turn
        #: readers waiting for a later turn, in arrival order (the loop is busy while any waits)
        self._parked = trio.lowlevel.ParkingLot()
        self._wake = trio.Event()
        self._load: LoopLoad | None = None  # while running
        #: readers that waited for a later turn (/metrics ``carehub_ws_reads_paced_total``)
        self.paced = 0

    def busy(self) -> bool:
        """Should a reader woken now wait for a later turn?"""
        return self._load is not None and (bool(self._parked) or self._load.turn_seconds() > self.turn_seconds)

    async def wait(self) -> None:
        """Wait for this reader's place in a later turn."""
        self.paced += 1
        self._wake.set()
        await self._parked.park()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._load = load = loop_load()
        load.hold(self._parked)  # the hub's housekeeping waits while readers do
        try:
            task_status.started()
            while True:
                if not self._parked:
                    await self._wake.wait()
                    self._wake = trio.Event()
                self._parked.unpark(count=self.per_turn)
                await trio.lowlevel.checkpoint()  # the next turn
        finally:
            self._load = None
            load.release(self._parked)
            self._parked.unpark_all()  # nobody would let them go any more

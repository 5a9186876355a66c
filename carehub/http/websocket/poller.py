"""The read poller: one task reads for every signed-in connection (docs/gateway.md, "Read poller")."""

from __future__ import annotations

import contextlib
import select
from typing import TYPE_CHECKING

import trio

from carehub.eventloop import Backlog, LoopLoad, loop_load

if TYPE_CHECKING:
    from .socket import WebSocket

#: the longest the read poller's idle sweep waits for a quiet moment
BUSY_SWEEP_SECONDS = 5.0


class ReadPoller:
    """Reads, from one task, for every connection whose reader parked with it (signed-in ``/ws`` clients).

    A reader task per connection costs, per frame, a wake-up: Trio re-arms the descriptor in its
    one-shot epoll (a system call), reschedules the task and resumes its coroutine, ~25 µs on this
    hardware, more than reading and running a small frame. Here the descriptors of parked
    connections sit in one level-triggered epoll of our own (registered once, while parked); Trio
    wakes this task when any of them is readable, and it reads each ready connection and hands every
    message to the connection's handler, in this task (5-8 µs per frame in a socket-pair test). A
    message the handler cannot run without its task (one that waits, e.g. for the database), the
    peer's close, a broken connection or an error hands the connection back to its reader task.

    At most ``per_turn`` connections are read per turn of the event loop, so a burst is read in short
    turns between which the work already in the hub moves on (as the :class:`ReadPacer` does for
    the reader tasks).

    The poller also times parked connections out: every ``sweep_seconds`` (later while the loop is
    busy, at most :data:`BUSY_SWEEP_SECONDS`) it hands back, marked ``idled``, each connection it has
    read nothing from for its idle time. A timer per connection fired, for phones that signed in
    together, together: in the middle of the release they came for.
    """

    def __init__(self, *, per_turn: int = 64, sweep_seconds: float = 1.0) -> None:
        self.per_turn = per_turn
        self.sweep_seconds = sweep_seconds
        self._epoll: select.epoll | None = None
        self._parked: dict[int, WebSocket] = {}
        #: ready connections left for the next turn (the loop is busy meanwhile)
        self._left = Backlog()
        #: socket reads done here (/metrics ``carehub_ws_reads_polled_total``)
        self.reads = 0

    @property
    def running(self) -> bool:
        return self._epoll is not None

    def park(self, ws: WebSocket) -> None:
        """Read for ``ws`` from now on (its task waits in :meth:`WebSocket.serve_parked`)."""
        assert self._epoll is not None
        self._epoll.register(ws.fd, select.EPOLLIN)
        self._parked[ws.fd] = ws

    def unpark(self, ws: WebSocket) -> bool:
        """Stop reading for ``ws`` (False: it was not parked)."""
        if self._parked.get(ws.fd) is not ws:
            return False
        del self._parked[ws.fd]
        if self._epoll is not None:
            try:
                self._epoll.unregister(ws.fd)
            except OSError:  # already closed: the kernel dropped it from the epoll
                pass
        return True

    def hand_back(self, ws: WebSocket, *, idled: bool = False) -> None:
        """Return ``ws`` to its reader task (``idled``: because nothing came for its idle time)."""
        if self.unpark(ws):
            ws.wake_parked(idled=idled)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._epoll = epoll = select.epoll()
        load = loop_load()
        load.hold(self._left)
        parked = self._parked
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sweep, load)
                task_status.started()
                await self._poll(epoll)
        finally:
            self._epoll = None
            self._left.count = 0
            load.release(self._left)
            for ws in list(parked.values()):  # their tasks read for themselves from now on
                self.hand_back(ws)
            epoll.close()

    async def _poll(self, epoll: select.epoll) -> None:
        parked = self._parked
        left = self._left
        while True:
            await trio.lowlevel.wait_readable(epoll.fileno())
            while True:
                events = epoll.poll(0, self.per_turn)
                now = trio.current_time()
                for fd, _ in events:
                    ws = parked.get(fd)
                    if ws is None:  # cannot happen: every unpark unregisters; never spin on it
                        with contextlib.suppress(OSError):
                            epoll.unregister(fd)
                        continue
                    if ws.read_polled(now):
                        self.hand_back(ws)
                self.reads += len(events)
                if len(events) < self.per_turn:
                    break
                left.count = len(parked)  # more may be ready: the hub's housekeeping waits
                await trio.lowlevel.checkpoint()
            left.count = 0

    async def _sweep(self, load: LoopLoad) -> None:
        last = trio.current_time()
        while True:
            await trio.sleep(self.sweep_seconds)
            now = trio.current_time()
            if load.busy() and now - last < BUSY_SWEEP_SECONDS:
                continue  # frames are queued (a release): nobody is closed for idling a few seconds late
            last = now
            for ws in [ws for ws in self._parked.values() if ws.silent_for(now) > ws.idle_seconds]:
                self.hand_back(ws, idled=True)

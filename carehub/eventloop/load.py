"""How busy the event loop is, for the work that should give way to people waiting (docs/gateway.md, "Loop load").

Trio runs, in one turn, every task that became ready; between turns it waits for I/O. The share of
recent time spent running rather than waiting says whether people's work is queued: in a release
burst the loop never waits. Housekeeping (a garbage collection, a stored effect, a heartbeat pass)
then waits for a quieter moment, and whoever reads requests paces itself by when the current turn
began. Work that a reader held back for a later turn counts as busy too: it registers its count
with :meth:`LoopLoad.hold` (anything with a length, e.g. a :class:`Backlog` or a parking lot).

One :class:`LoopLoad` per ``trio.run``, from :func:`loop_load` (it installs itself as an instrument).
"""

from __future__ import annotations

import time
from collections.abc import Sized

import trio

_LOAD: trio.lowlevel.RunVar[LoopLoad] = trio.lowlevel.RunVar("carehub_loop_load")


class LoopLoad(trio.abc.Instrument):
    """The loop's turns: when the current one began, and the share of time spent running tasks."""

    def __init__(self, *, window: float = 0.1, busy_share: float = 0.9, slow_turn: float = 0.02) -> None:
        #: the length of one measurement of the running share
        self.window = window
        #: :meth:`busy` when the loop ran this share of the last window ...
        self.busy_share = busy_share
        #: ... or when the current turn has run this long
        self.slow_turn = slow_turn
        now = time.perf_counter()
        #: when the current turn began (after the wait for I/O)
        self.turn_started = now
        self._window_started = now
        self._waited = 0.0  # time spent waiting for I/O in the window so far
        self._wait_started: float | None = None
        #: the share of the last whole window spent running tasks
        self.share = 0.0
        #: counts of work ready and held back for a later turn (:meth:`hold`): busy while any is non-empty
        self._held: list[Sized] = []

    def hold(self, work: Sized) -> None:
        """Count ``work`` as held back for a later turn: the loop is busy while ``len(work)`` > 0."""
        if not any(w is work for w in self._held):
            self._held.append(work)

    def release(self, work: Sized) -> None:
        """Stop counting ``work`` (its holder stopped)."""
        self._held = [w for w in self._held if w is not work]

    def held_back(self) -> int:
        """How much work is held back for a later turn now."""
        return sum(len(w) for w in self._held)

    def before_io_wait(self, timeout: float) -> None:
        self._wait_started = time.perf_counter()

    def after_io_wait(self, timeout: float) -> None:
        now = self.turn_started = time.perf_counter()
        if self._wait_started is not None:
            self._waited += now - self._wait_started
            self._wait_started = None
        elapsed = now - self._window_started
        if elapsed >= self.window:
            self.share = max(0.0, 1.0 - self._waited / elapsed)
            self._window_started = now
            self._waited = 0.0

    def turn_seconds(self) -> float:
        """How long the current turn has run so far."""
        return time.perf_counter() - self.turn_started

    def busy(self) -> bool:
        """People's work is queued: some is held back for a later turn, the loop ran (nearly) all of the last
        window, or this turn is slow."""
        if self.share >= self.busy_share or self.held_back():
            return True
        now = time.perf_counter()
        if now - self.turn_started >= self.slow_turn:
            return True
        elapsed = now - self._window_started  # the window so far: a burst counts before its first window ends
        return elapsed >= self.window / 5 and 1.0 - self._waited / elapsed >= self.busy_share

    def idle(self) -> bool:
        """The loop mostly waits: it ran under a third of the last window and of the current one so far."""
        if self.share >= 1 / 3 or self.held_back():
            return False
        elapsed = time.perf_counter() - self._window_started
        return elapsed < self.window / 5 or 1.0 - self._waited / elapsed < 1 / 3


def loop_load() -> LoopLoad:
    """The running loop's :class:`LoopLoad` (installed on first use)."""
    try:
        return _LOAD.get()
    except LookupError:
        load = LoopLoad()
        trio.lowlevel.add_instrument(load)
        _LOAD.set(load)
        return load


class Backlog:
    """A count of work its holder left for a later turn (e.g. connections ready to read), for :meth:`LoopLoad.hold`."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __len__(self) -> int:
        return self.count

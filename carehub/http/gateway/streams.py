"""Where each signing-in connection's delivery stream stands, read for all that sign in together at once."""

from __future__ import annotations

import trio

from carehub.storage.hub_store import PostgresHubStore

#: the most connections one read answers (a reconnect storm is read in several)
BATCH = 1000


class _Open:
    __slots__ = ("account_id", "device", "done", "error", "result")

    def __init__(self, account_id: str, device: str) -> None:
        self.account_id = account_id
        self.device = device
        self.done = trio.Event()
        self.result = (0, 0, 0)
        self.error: Exception | None = None


class StreamsUnavailable(Exception):
    """The stream's bounds could not be read (the connection ends with 1011, as a failed resume does)."""


class StreamOpener:
    """(first seq kept, last seq, the device's stored cursor) for each connection signing in.

    A restart brings every phone back within seconds, and opening a signed-in connection cost two
    storage crossings of its own (the stream's bounds, then the device's cursor): the hub opened
    ~500 connections a second. Here the requests that arrive while one read runs wait for the next,
    which answers all of them in one crossing (:meth:`PostgresHubStore.open_streams`), as the hub's
    group commit does for commits. Without :meth:`run` (a test's bare app) each request reads alone.
    """

    def __init__(self, store: PostgresHubStore) -> None:
        self._store = store
        self._pending: list[_Open] = []
        self._wake = trio.Event()
        self.running = False
        #: reads done and connections they answered (``/metrics``-style figures for the benchmarks)
        self.reads = 0
        self.opened = 0

    async def open(self, account_id: str, device: str) -> tuple[int, int, int]:
        if not self.running:
            return (await self._store.open_streams([(account_id, device)]))[(account_id, device)]
        request = _Open(account_id, device)
        self._pending.append(request)
        self._wake.set()
        await request.done.wait()
        if request.error is not None:
            raise StreamsUnavailable(f"could not read the delivery stream: {request.error}") from request.error
        return request.result

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.running = True
        task_status.started()
        try:
            while True:
                if not self._pending:
                    await self._wake.wait()
                    self._wake = trio.Event()
                batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
                try:
                    found = await self._store.open_streams([(r.account_id, r.device) for r in batch])
                except Exception as err:  # storage down: each of these connections ends; the next read tries again
                    for request in batch:
                        request.error = err
                        request.done.set()
                    continue
                self.reads += 1
                self.opened += len(batch)
                for request in batch:
                    request.result = found[(request.account_id, request.device)]
                    request.done.set()
        finally:
            self.running = False
            for request in self._pending:  # nobody will read for them: they read alone
                request.error = StreamsUnavailable("the gateway is stopping")
                request.done.set()

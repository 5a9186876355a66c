"""One task writes every connection's queued frames (docs/gateway.md, "Writing")."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .socket import WebSocket

log = logging.getLogger("carehub.websocket")


class Flusher:
    """Writes what connections queued, for all of them, from one task."""

    def __init__(self) -> None:
        self._pending: list[WebSocket] = []
        self._wake = trio.Event()
        self.nursery: trio.Nursery | None = None
        self.writes = 0
        #: connections whose socket buffer is full right now (the peer reads slower than we write)
        self.full = 0

    def schedule(self, ws: WebSocket) -> None:
        self._pending.append(ws)
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                batch, self._pending = self._pending, []
                for i, ws in enumerate(batch):
                    try:
                        ws.flush()
                    except Exception:  # one connection's bug must not stop every connection's writes
                        log.exception("writing to a WebSocket failed; closing it")
                        ws.abort()
                    if i % 1000 == 999:
                        await trio.lowlevel.checkpoint()

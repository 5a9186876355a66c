"""The listening socket: WebSocket upgrades to our routes are served here, everything else by Hypercorn.

Each accepted connection's request head is read first. An upgrade to one of ``websocket_routes``
(``/ws``, ``/ws/echo``) goes to its handler on CareHub's own WebSocket server side
(``carehub/http/websocket/``); anything else goes to Hypercorn's trio worker with the bytes already read
replayed, so REST, pages, ``/metrics`` and HTTP keep-alive behave exactly as Hypercorn serves them.
Browsers and WebSocket libraries open a fresh TCP connection for each WebSocket, so the first
request is where an upgrade appears; an upgrade later on a kept-alive HTTP connection reaches the
ASGI app, which refuses it with close code 1008 (carehub/http/asgi.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

from .websocket import HandshakeError, Upgrade, parse_upgrade

log = logging.getLogger("carehub.server")

MAX_HEAD_BYTES = 16 * 1024
WebSocketRoute = Callable[[trio.SocketStream, Upgrade], Awaitable[None]]


class _Replayed(trio.abc.HalfCloseableStream):
    """A socket stream whose first bytes were already read: they are received again first."""

    def __init__(self, stream: trio.SocketStream, head: bytes) -> None:
        self._stream = stream
        self._head = head
        self.socket = stream.socket  # Hypercorn reads the peer's address from it

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._head:
            data, self._head = self._head, b""
            await trio.lowlevel.checkpoint()
            return data
        return bytes(await self._stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _read_head(stream: trio.SocketStream, timeout: float) -> bytes:
    """The bytes up to the end of the first request head (and whatever came with them)."""
    head = b""
    with trio.move_on_after(timeout):
        while b"\r\n\r\n" not in head and len(head) < MAX_HEAD_BYTES:
            try:
                data = await stream.receive_some(MAX_HEAD_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            if not data:
                break
            head += data
    return head


async def serve_http(
    asgi: Any,
    hc: HypercornConfig,
    *,
    host: str,
    port: int,
    websocket_routes: Mapping[str, WebSocketRoute],
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` until ``shutdown_trigger`` returns (or the caller cancels).

    Reports the bound URLs (``http://host:port``) once listening. Mirrors Hypercorn's own
    ``worker_serve`` (ASGI lifespan, graceful timeout), with this module's front door per connection.
    """
    app = wrap_app(asgi, hc.wsgi_max_body_size, "asgi")
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(app, hc, lifespan_state)
    context = WorkerContext(None)

    async def front_door(stream: trio.SocketStream) -> None:
        try:
            head = await _read_head(stream, hc.keep_alive_timeout)
            if not head:
                await stream.aclose()
                return
            try:
                upgrade = parse_upgrade(head, websocket_routes)
            except HandshakeError as err:
                with trio.move_on_after(5):
                    await stream.send_all(err.response())
                await stream.aclose()
                return
            if upgrade is None:
                replayed: Any = _Replayed(stream, head)  # Hypercorn types its stream as an SSLStream
                await TCPServer(app, hc, context, ConnectionState(lifespan_state.copy()), replayed)
                return
            await websocket_routes[upgrade.path](stream, upgrade)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the peer went away
        except Exception:  # a bug in one connection's handling ends that connection, not the server
            log.exception("a connection failed")
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        listeners = await trio.open_tcp_listeners(port, host=host or None, backlog=hc.backlog)
        binds = []
        for listener in listeners:
            address = listener.socket.getsockname()
            name = f"[{address[0]}]" if ":" in address[0] else address[0]
            binds.append(f"http://{name}:{address[1]}")
        async with trio.open_nursery() as server_nursery:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        functools.partial(trio.serve_listeners, front_door, listeners, handler_nursery=server_nursery)
                    )
                    task_status.started(binds)
                    if shutdown_trigger is None:
                        await trio.sleep_forever()
                    await shutdown_trigger()
                    nursery.cancel_scope.cancel()
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + hc.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()

"""The ASGI entry: the Quart-Trio app, behind a guard for WebSocket requests.

``/ws`` and ``/ws/echo`` are served before the request reaches ASGI (carehub/http/server.py); a
WebSocket request that gets here (an upgrade on a kept-alive HTTP connection, or another path)
is accepted and closed at once with code 1008 and the reason.

An HTTP request refused before its body was read (401, 403, 413) still has its body on the
connection: Hypercorn queues it for the app, and with nobody reading that queue it stopped reading
the socket, so the client, still writing the body, never saw the answer or sent its next request
(one keep-alive client, 100 refused POSTs: stalls). The dispatcher lets the end of the answer wait until
the rest of such a body was read (up to :data:`DRAIN_BYTES`, by Quart's receiver, which runs until
the answer is sent); a longer one is answered with ``Connection: close`` instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio
from quart_trio import QuartTrio

from .context import Services

#: the most of an unread request body read (and dropped) after the answer to keep the connection
#: (the app's own limit, MAX_CONTENT_LENGTH, plus the rest of a read buffer)
DRAIN_BYTES = 1024 * 1024 + 65536
#: the longest an answer waits for the rest of such a body (then the connection is closed after it)
DRAIN_SECONDS = 10.0

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Dispatcher:
    def __init__(self, services: Services, app: QuartTrio) -> None:
        self.services = services
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            path = scope.get("path", "")
            await receive()  # websocket.connect
            if path in ("/ws", "/ws/echo"):
                reason = f"open {path} on a new connection (not after an HTTP request on the same one)"
            else:
                reason = f"no WebSocket route at {path[:80]}"
            # accepted, then closed: the client sees the reason (a refusal before accepting is a bare 403)
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1008, "reason": reason})
            return
        app: Any = self.app
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        body = _Body(scope)

        async def receive_body() -> MutableMapping[str, Any]:
            message = await receive()
            body.note(message)
            return message

        async def send_answer(message: MutableMapping[str, Any]) -> None:
            if not body.done:
                if message["type"] == "http.response.start" and not body.drainable():
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
                elif message["type"] == "http.response.body" and not message.get("more_body", False):
                    # before the answer ends: Hypercorn keeps the connection only if the request was read whole.
                    # Quart's own receiver reads the rest (it runs until the answer is sent); wait for it
                    with trio.move_on_after(DRAIN_SECONDS):
                        await body.complete.wait()
            await send(message)

        await app(scope, receive_body, send_answer)


class _Body:
    """How much of one request's body the app has received."""

    __slots__ = ("complete", "done", "length", "received")

    def __init__(self, scope: Scope) -> None:
        self.received = 0
        self.length = _length(scope)
        self.done = scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE") and not self.length
        self.complete = trio.Event()

    def note(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.done = True
                self.complete.set()
        elif message["type"] == "http.disconnect":
            self.done = True
            self.complete.set()

    def drainable(self) -> bool:
        """The rest may be read and dropped (a declared length within :data:`DRAIN_BYTES`)."""
        return self.length is not None and self.length <= DRAIN_BYTES and self.received <= DRAIN_BYTES


def _length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

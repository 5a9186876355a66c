"""The ASGI entry: the Quart-Trio app, behind a guard for WebSocket requests.

``/ws`` and ``/ws/echo`` are served before the request reaches ASGI (carehub/http/server.py); a
WebSocket request that gets here (an upgrade on a kept-alive HTTP connection, or another path)
is accepted and closed at once with code 1008 and the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from quart_trio import QuartTrio

from .context import Services

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
        await app(scope, receive, send)

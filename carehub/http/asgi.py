"""The ASGI entry: WebSocket routes go to the gateway, everything else to the Quart-Trio app."""

from __future__ import annotations

from typing import Any

from quart_trio import QuartTrio

from .context import Services
from .ws import Receive, Scope, Send, echo_gateway, websocket_gateway


class Dispatcher:
    def __init__(self, services: Services, app: QuartTrio) -> None:
        self.services = services
        self.app = app
        self.echo = services.config.ws_echo

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            path = scope.get("path", "")
            if path == "/ws":
                await websocket_gateway(self.services, scope, receive, send)
                return
            if path == "/ws/echo" and self.echo:
                await echo_gateway(scope, receive, send)
                return
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": f"no WebSocket route at {path[:80]}"})
            return
        app: Any = self.app
        await app(scope, receive, send)

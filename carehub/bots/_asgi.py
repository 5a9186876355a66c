"""The little ASGI the simulators need: lifespan, and reading a bounded request body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

Receive = Callable[[], Awaitable[Any]]
Send = Callable[..., Awaitable[None]]


class BodyTooLarge(Exception):
    pass


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Answer the server's lifespan events (the simulators keep no start-up state)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def admin_json(body: bytes) -> tuple[dict[str, Any] | None, str]:
    """An admin API body: the JSON object (empty body: ``{}``), or None and what is wrong with it."""
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError as err:
        return None, f"the body is not JSON: {err}"
    if not isinstance(data, dict):
        return None, "the body must be a JSON object"
    return data, ""


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body; None if the client went away; BodyTooLarge past ``limit``."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            return bytes(body)

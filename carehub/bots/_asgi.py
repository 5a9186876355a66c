"""The HTTP shell the simulators share: a bare ASGI app served by Hypercorn on Trio.

Each simulator (``sms_gateway``, ``pay_gateway``, ``his_sim``, ``faceid_sim``) keeps its protocol
in a sans-I/O core (a class taking a method, path, headers and body and returning a reply) and
subclasses :class:`SimulatorApp` for the I/O: lifespan events, a bounded request body (413 past
it, in the simulated provider's own words), headers joined as one string per name, answers with a
``content-length``, requests a fault keeps hanging, and the Hypercorn server (:func:`serve_app`)
and the command line (:func:`run_until_signalled`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BodyTooLarge(Exception):
    """The request body went past the simulator's limit (answered 413)."""


@dataclasses.dataclass(frozen=True)
class Request:
    """One HTTP request as the simulators' cores read it."""

    method: str
    path: str
    #: the path as sent (percent-escapes kept): what a signature covers
    raw_path: str
    #: the query string, undecoded ("" when none)
    query: str
    #: lower-case names; a header sent several times is joined with "," (RFC 9110 5.3)
    headers: dict[str, str]
    body: bytes
    scheme: str

    @property
    def target(self) -> str:
        """The request target: the raw path and its query."""
        return self.raw_path + (f"?{self.query}" if self.query and "?" not in self.raw_path else "")


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


def joined_headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name, repeated ones joined with ","."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """Send a whole answer; ``content-length`` is added here."""
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def hang(receive: Receive, seconds: float) -> None:
    """Never answer: keep the request open until the client gives up (or ``seconds`` pass)."""
    with trio.move_on_after(seconds):
        while (await receive())["type"] != "http.disconnect":
            pass


class SimulatorApp:
    """The ASGI entry point of a simulator: subclasses answer :meth:`handle` and :meth:`too_large`."""

    #: the largest request body read (bytes)
    max_body: int = 1 << 20

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            body = await read_body(receive, self.max_body)
        except BodyTooLarge:
            await self.too_large(send)
            return
        if body is None:
            return  # the client went away
        path = scope["path"]
        request = Request(
            method=scope["method"],
            path=path,
            raw_path=(scope.get("raw_path") or path.encode()).decode("latin-1"),
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=joined_headers(scope),
            body=body,
            scheme=scope.get("scheme", "http"),
        )
        await self.handle(request, receive, send)

    async def handle(self, request: Request, receive: Receive, send: Send) -> None:
        """Answer one request (``receive`` only to notice the client leaving a hanging request)."""
        raise NotImplementedError

    async def too_large(self, send: Send) -> None:
        """Answer a body past :attr:`max_body` as the simulated provider does."""
        raise NotImplementedError


async def serve_app(nursery: trio.Nursery, app: SimulatorApp, host: str, port: int, errorlog: logging.Logger) -> str:
    """Serve ``app`` with Hypercorn in ``nursery`` (until it is cancelled); returns the base URL."""
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = errorlog
    config.graceful_timeout = 1.0
    asgi: Any = app  # hypercorn's ASGI types are TypedDicts; the simulators use plain dicts
    binds = await nursery.start(functools.partial(hypercorn_serve, asgi, config, mode="asgi"))
    return str(binds[0])


def run_until_signalled(start: Callable[[trio.Nursery], Awaitable[None]]) -> None:
    """A simulator's command line: ``start`` it in a nursery and serve until SIGINT or SIGTERM."""

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await start(nursery)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(run)

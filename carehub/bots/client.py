"""A client of CareHub's public protocol (HTTP sign-in + the ``/ws`` WebSocket).

Bots, the benchmark and the tests use it; it talks to CareHub only over the network.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgpack
import orjson
import pyotp
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url


class CallFailed(Exception):
    def __init__(self, code: str, message: str, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        #: for commands: the HTTP status the same request gets from the route
        self.status = status


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/") + "/ws"


class TotpSource:
    """TOTP codes (RFC 6238) for one staff account, each for a time step not used before.

    CareHub accepts each step once, so a second sign-in within 30 s takes the next step's code
    (accepted as clock drift), and a third waits for time to move on.
    """

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.last_step = 0

    async def code(self) -> str:
        while True:
            now_step = int(time.time() // self.totp.interval)
            step = max(now_step, self.last_step + 1)
            if step <= now_step + 1:
                self.last_step = step
                return str(self.totp.at(step * self.totp.interval))
            await trio.sleep(0.5)


_SOURCES: dict[tuple[str, str], TotpSource] = {}


def totp_for(base_url: str, login_name: str, secret: str) -> TotpSource:
    """The one TOTP source of a staff account at a server, shared by everything in this process."""
    return _SOURCES.setdefault((base_url.rstrip("/"), login_name), TotpSource(secret))


async def login(
    base_url: str, login_name: str, password: str, *, totp: str | None = None
) -> tuple[str, dict[str, Any]]:
    body = {"login": login_name, "password": password}
    if totp is not None:
        body["totp"] = totp
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        response = await http.post("/api/v1/auth/login", json=body)
    if response.status_code != 200:
        raise CallFailed("auth_failed", response.text)
    data = response.json()
    return data["token"], data["account"]


class HubClient:
    """One authenticated connection. Frames other than replies land in the channels below."""

    def __init__(self, ws: WebSocketConnection, codec: str) -> None:
        self.ws = ws
        self.codec = codec
        self._ids = itertools.count(1)
        self._pending: dict[Any, trio.MemorySendChannel[dict[str, Any]]] = {}
        self.deliveries_in, self.deliveries = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.events_in, self.events = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.errors_in, self.errors = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.welcome: dict[str, Any] | None = None
        self.bye: dict[str, Any] | None = None
        self.last_seq = 0
        self.closed = trio.Event()
        self.auto_pong = True

    async def send(self, frame: dict[str, Any]) -> None:
        if self.codec == "json":
            await self.ws.send_message(orjson.dumps(frame).decode())
        else:
            await self.ws.send_message(msgpack.packb(frame, use_bin_type=True))

    async def _reader(self) -> None:
        try:
            while True:
                raw = await self.ws.get_message()
                frame = orjson.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw, raw=False)
                op = frame.get("op")
                if op == "reply":
                    waiter = self._pending.pop(frame.get("id"), None)
                    if waiter is not None:
                        waiter.send_nowait(frame)
                elif op == "deliver":
                    self.last_seq = max(self.last_seq, frame["seq"])
                    self.deliveries_in.send_nowait(frame)
                elif op == "event" or op in ("subscribed", "unsubscribed"):
                    self.events_in.send_nowait(frame)
                elif op == "ping":
                    if self.auto_pong:
                        await self.send({"op": "pong", "t": frame.get("t")})
                elif op == "welcome":
                    self.welcome = frame
                elif op == "bye":
                    self.bye = frame
                elif op == "error":
                    self.errors_in.send_nowait(frame)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for waiter in self._pending.values():
                waiter.send_nowait({"ok": False, "error": {"code": "closed", "message": "connection closed"}})
            self._pending.clear()

    async def call(self, to: str, type: str, body: dict[str, Any] | None = None) -> Any:
        ref = next(self._ids)
        send, recv = trio.open_memory_channel[dict[str, Any]](1)
        self._pending[ref] = send
        await self.send({"op": "call", "id": ref, "to": to, "type": type, "body": body or {}})
        frame = await recv.receive()
        if not frame.get("ok"):
            err = frame.get("error", {})
            raise CallFailed(err.get("code", "?"), err.get("message", ""), err.get("retryable", False))
        return frame.get("result")

    async def command(self, name: str, body: Any = None) -> tuple[int, Any]:
        """Run a route's command over this connection: (status, result), or CallFailed with the status."""
        ref = next(self._ids)
        send, recv = trio.open_memory_channel[dict[str, Any]](1)
        self._pending[ref] = send
        frame: dict[str, Any] = {"op": "command", "id": ref, "name": name}
        if body is not None:
            frame["body"] = body
        await self.send(frame)
        reply = await recv.receive()
        if not reply.get("ok"):
            err = reply.get("error", {})
            raise CallFailed(err.get("code", "?"), err.get("message", ""), err.get("retryable", False),
                             err.get("status"))
        return int(reply.get("status", 200)), reply.get("result")

    async def publish(self, topic: str, type: str, body: dict[str, Any]) -> int:
        ref = next(self._ids)
        send, recv = trio.open_memory_channel[dict[str, Any]](1)
        self._pending[ref] = send
        await self.send({"op": "publish", "id": ref, "topic": topic, "type": type, "body": body})
        frame = await recv.receive()
        if not frame.get("ok"):
            raise CallFailed(frame["error"]["code"], frame["error"]["message"])
        return int(frame["result"]["subscribers"])

    async def subscribe(self, topic: str) -> None:
        await self.send({"op": "subscribe", "topic": topic})

    async def ack(self, seq: int | None = None) -> None:
        await self.send({"op": "ack", "seq": self.last_seq if seq is None else seq})

    async def resume(self, after: int) -> None:
        await self.send({"op": "resume", "after": after})

    async def next_delivery(self, timeout: float = 10) -> dict[str, Any]:
        with trio.fail_after(timeout):
            return await self.deliveries.receive()

    async def next_event(self, timeout: float = 10) -> dict[str, Any]:
        with trio.fail_after(timeout):
            return await self.events.receive()

    async def close(self) -> None:
        await self.ws.aclose()


@asynccontextmanager
async def connect(
    base_url: str,
    token: str | None,
    *,
    device: str = "bot",
    resume_after: int | None = None,
    codec: str = "json",
    timeout: float = 15,
) -> AsyncIterator[HubClient]:
    """Open ``/ws``, authenticate (unless ``token`` is None) and wait for the welcome."""
    subprotocols = ["carehub.v1.msgpack" if codec == "msgpack" else "carehub.v1.json"]
    async with open_websocket_url(ws_url(base_url), subprotocols=subprotocols, message_queue_size=0) as ws:
        client = HubClient(ws, codec)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._reader)
            if token is not None:
                frame: dict[str, Any] = {"op": "auth", "token": token, "device": device}
                if resume_after is not None:
                    frame["resume_after"] = resume_after
                await client.send(frame)
                with trio.fail_after(timeout):
                    while client.welcome is None:
                        if client.closed.is_set():
                            raise CallFailed("auth_failed", "connection closed during authentication")
                        await trio.sleep(0.005)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()

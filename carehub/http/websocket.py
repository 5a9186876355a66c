"""CareHub's own server side of RFC 6455: the handshake, frames in through wsproto, frames out through one flusher.

Why not Hypercorn for ``/ws`` (docs/benchmarks.md, "Where the hub spends its time"): through ASGI
every frame to every connection was one ``websocket.send`` message, Hypercorn's stream and
protocol dispatch, a lock, a shielded cancel scope and a wake-up of the connection's writer task,
and each connection held four tasks and the upgrade request's HTTP state. Here:

- a connection is one task (its reader) and a few small objects;
- outgoing frames are queued on the connection (its push ``Session``) and written by one
  ``Flusher`` task for the whole hub: every frame queued for a connection goes out in one
  non-blocking ``write``; a topic event's frame bytes are built once and written to every
  subscriber (server frames are not masked, so they are the same bytes);
- only a connection whose socket buffer is full gets a task of its own until it drains.

Incoming frames are parsed by wsproto (masking, fragments, UTF-8, control frames, close codes),
which is what made Hypercorn's stack pass Autobahn|Testsuite; ``tests/http/test_autobahn.py``
runs the suite against this code. Compression (permessage-deflate) is not offered.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import struct
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import trio
from wsproto.connection import Connection as FrameParser
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import generate_accept_token

log = logging.getLogger("carehub.websocket")

RECEIVE_BYTES = 65536
#: the hard cap on one message (the gateway answers a smaller limit with an error frame first)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CLOSE_TIMEOUT = 1.0
OP_TEXT = 0x1
OP_BINARY = 0x2

# ---- the handshake -----------------------------------------------------------------------


class HandshakeError(Exception):
    """An upgrade request for one of our paths that cannot be accepted: answered with ``status``."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)

    def response(self) -> bytes:
        body = orjson.dumps({"error": {"code": "bad_handshake", "message": self.message}})
        reason = {400: "Bad Request", 426: "Upgrade Required"}.get(self.status, "Error")
        lines = [f"HTTP/1.1 {self.status} {reason}", "content-type: application/json",
                 f"content-length: {len(body)}", "connection: close"]
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Upgrade:
    """A valid WebSocket upgrade request (RFC 6455 section 4.2.1)."""

    __slots__ = ("key", "path", "query", "rest", "subprotocols")

    def __init__(self, path: str, query: str, key: bytes, subprotocols: list[str], rest: bytes) -> None:
        self.path = path
        self.query = query
        self.key = key
        self.subprotocols = subprotocols
        self.rest = rest  # bytes the client sent after the request head (its first frames)

    def accept(self, subprotocol: str | None) -> bytes:
        lines = ["HTTP/1.1 101 Switching Protocols", "upgrade: websocket", "connection: Upgrade",
                 f"sec-websocket-accept: {generate_accept_token(self.key).decode('ascii')}"]
        if subprotocol is not None:
            lines.append(f"sec-websocket-protocol: {subprotocol}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _tokens(value: bytes) -> list[str]:
    return [part.strip().decode("latin-1") for part in value.split(b",") if part.strip()]


def parse_upgrade(data: bytes, paths: Iterable[str]) -> Upgrade | None:
    """The upgrade request in ``data`` (a whole request head) when it is one for ``paths``.

    None when it is anything else (plain HTTP, or a WebSocket for another path): that goes to
    the HTTP server. Raises ``HandshakeError`` for an upgrade to our path that is not valid.
    """
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"GET "):
        return None
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return None
    target, version = parts[1], parts[2]
    path, _, query = target.partition(b"?")
    if path.decode("latin-1") not in paths:
        return None
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise HandshakeError(400, f"malformed header line {line[:60]!r}")
        name = name.strip().lower()
        value = value.strip()
        # repeated headers are one comma-separated list (RFC 9110 5.3)
        headers[name] = headers[name] + b", " + value if name in headers else value
    if "websocket" not in (t.lower() for t in _tokens(headers.get(b"upgrade", b""))):
        return None
    if version != b"HTTP/1.1":
        raise HandshakeError(400, f"a WebSocket upgrade needs HTTP/1.1, not {version[:16].decode('latin-1')}")
    if "upgrade" not in (t.lower() for t in _tokens(headers.get(b"connection", b""))):
        raise HandshakeError(400, "a WebSocket upgrade needs 'Connection: Upgrade'")
    if headers.get(b"sec-websocket-version") != b"13":
        raise HandshakeError(426, "this server speaks WebSocket version 13", [("sec-websocket-version", "13")])
    key = headers.get(b"sec-websocket-key", b"")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise HandshakeError(400, "Sec-WebSocket-Key must be 16 bytes in base64") from None
    return Upgrade(
        path.decode("latin-1"), query.decode("latin-1"), key,
        _tokens(headers.get(b"sec-websocket-protocol", b"")), rest,
    )


# ---- frames out --------------------------------------------------------------------------


def frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One unfragmented, unmasked frame (what a server sends)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


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


class WebSocket:
    """One accepted WebSocket: ``receive()`` whole messages; queue frames with ``send_*``; ``close()``.

    Outgoing bytes come from ``source`` (a callable returning frames queued elsewhere, e.g. the
    push ``Session``) and from frames this object queued itself (pongs, the close frame, echo).
    """

    __slots__ = (
        "_closed",
        "_fd",
        "_flusher",
        "_own",
        "_parser",
        "_parts",
        "_queued",
        "_ready",
        "_size",
        "_slow",
        "_unsent",
        "close_code",
        "close_reason",
        "source",
        "stream",
    )

    def __init__(self, stream: trio.SocketStream, flusher: Flusher, rest: bytes = b"") -> None:
        self.stream = stream
        self._fd = stream.socket.fileno()
        self._parser = FrameParser(ConnectionType.SERVER)
        self._flusher = flusher
        self._own: list[bytes] | None = None
        self._unsent: bytes | memoryview = b""
        self._queued = False
        self._slow = False
        self._closed = False
        self.source: Callable[[], list[bytes]] | None = None
        #: the close code the peer sent (1006: the connection was lost without one)
        self.close_code: int | None = None
        self.close_reason = ""
        self._parts: list[Any] | None = None
        self._size = 0
        self._ready: list[str | bytes] | None = None
        if rest:
            self._parser.receive_data(rest)

    # ---- out ------------------------------------------------------------------------------

    def wake(self) -> None:
        """Something was queued: have the flusher write it (soon, with whatever else is queued)."""
        if not self._queued and not self._closed:
            self._queued = True
            self._flusher.schedule(self)

    def send_frame(self, data: bytes) -> None:
        if self._own is None:
            self._own = []
        self._own.append(data)
        self.wake()

    def send_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.send_frame(frame(message.encode(), OP_TEXT))
        else:
            self.send_frame(frame(message, OP_BINARY))

    def _take(self) -> bytes:
        chunks = self._own or []
        self._own = None
        if self.source is not None:
            chunks.extend(self.source())
        if not chunks:
            return b""
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def flush(self) -> None:
        """Write what is queued now, without waiting; a full socket buffer hands over to a drain task."""
        self._queued = False
        if self._closed or self._slow:
            return
        data = self._take()
        if not data:
            return
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError:
            self._lost()
            return
        self._flusher.writes += 1
        if written < len(data):
            self._unsent = memoryview(data)[written:]
            self._slow = True
            self._flusher.full += 1
            assert self._flusher.nursery is not None
            self._flusher.nursery.start_soon(self._drain)

    async def _drain(self) -> None:
        try:
            while not self._closed:
                if not self._unsent:
                    data = self._take()
                    if not data:
                        return
                    self._unsent = memoryview(data)
                await trio.lowlevel.wait_writable(self._fd)
                if self._closed:
                    return
                try:
                    written = os.write(self._fd, self._unsent)
                except BlockingIOError:
                    continue
                self._unsent = self._unsent[written:]
        except (OSError, trio.ClosedResourceError, trio.BrokenResourceError):
            self._lost()
        except Exception:  # as in Flusher.run: this connection ends, the flusher's nursery does not
            log.exception("writing to a WebSocket failed; closing it")
            self.abort()
        finally:
            self._slow = False
            self._unsent = b""
            self._flusher.full -= 1

    def _lost(self) -> None:
        self._closed = True
        self._own = None
        self._unsent = b""

    def abort(self) -> None:
        """Stop writing and close the socket now (its reader then ends)."""
        self._lost()
        self.stream.socket.close()

    @property
    def sending(self) -> bool:
        """Bytes are queued or waiting for the socket."""
        return bool(self._queued or self._slow or self._own)

    # ---- in -------------------------------------------------------------------------------

    async def receive(self) -> str | bytes | None:
        """The next whole message; None once the connection is closed (``close_code`` says how)."""
        while True:
            if self._ready:
                return self._ready.pop(0)
            if self.close_code is not None:
                return None
            self._process()
            if self._ready or self.close_code is not None:
                continue
            try:
                data = await self.stream.socket.recv(RECEIVE_BYTES)
            except (OSError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._parser.receive_data(None)
            else:
                self._parser.receive_data(data)
            self._process()

    def _process(self) -> None:
        for event in self._parser.events():
            if isinstance(event, TextMessage | BytesMessage):
                if self._parts is None:
                    self._parts = []
                self._parts.append(event.data)
                self._size += len(event.data)
                if self._size > MAX_MESSAGE_BYTES:
                    self._fail(1009, "message too big")
                    return
                if event.message_finished:
                    parts, self._parts, self._size = self._parts, None, 0
                    if isinstance(event, TextMessage):
                        message: str | bytes = parts[0] if len(parts) == 1 else "".join(parts)
                    else:
                        message = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
                    if self._ready is None:
                        self._ready = []
                    self._ready.append(message)
            elif isinstance(event, Ping):
                if self._parser.state is ConnectionState.OPEN:
                    self.send_frame(self._parser.send(event.response()))
            elif isinstance(event, CloseConnection):
                if self._parser.state is ConnectionState.REMOTE_CLOSING:
                    # the peer's close: answer with the same code (RFC 6455 5.5.1)
                    self.send_frame(self._parser.send(event.response()))
                    self.close_code, self.close_reason = event.code, event.reason or ""
                elif self._parser.state is ConnectionState.OPEN:
                    # a protocol error (bad frame, bad UTF-8): fail the connection with its code
                    self._fail(event.code, event.reason or "")
                else:
                    self.close_code, self.close_reason = event.code, event.reason or ""
                return

    def _fail(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        if self._parser.state is ConnectionState.OPEN:
            self.send_frame(self._parser.send(CloseConnection(code=code, reason=reason[:120])))

    # ---- closing ---------------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send what is queued and a close frame, wait (briefly) for the peer's, then close the socket."""
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            # what is queued goes first, the close frame last, nothing after it
            queued = self._take()
            self.source = None
            self._own = [queued] if queued else []
            if self._parser.state is ConnectionState.OPEN:
                self._own.append(self._parser.send(CloseConnection(code=code, reason=_clip(reason))))
            self.flush()
            while self.sending and not self._closed:
                await trio.sleep(0.005)
            # the server closes the TCP connection once the peer answered (RFC 6455 7.1.1)
            while self.close_code is None and not self._closed:
                if await self.receive() is None:
                    break
        self._closed = True
        with trio.CancelScope(shield=True):
            await self.stream.aclose()


def _clip(reason: str) -> str:
    """A close reason fits in a control frame: at most 123 bytes of UTF-8."""
    data = reason.encode()[:123]
    return data.decode(errors="ignore")

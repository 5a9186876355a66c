"""The load client's own protocol code: a lean RFC 6455 client for ``/ws`` and a lean HTTP/1.1 client.

:class:`LeanWS` is one task and a few small objects per connection (20,000 of them per run), set-up
that fails loudly, and a little less CPU per frame than trio-websocket (about 24 µs against 29 µs
received, most of it trio's wake-up per socket read). :class:`LeanHTTP` is one kept-alive
connection for JSON requests (httpx costs ~1 ms of client CPU a request).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import os
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import orjson
import trio

from carehub.bots.client import CallFailed

SUBPROTOCOL = "carehub.v1.json"

Frame = dict[str, Any]
Handler = Callable[["LeanWS", Frame, float], "Frame | None"]


class ServerClosed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed by the server (code {code})")
        self.code = code


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """One unfragmented frame as a client sends it: masked with a fresh key (RFC 6455 5.3)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = random.randbytes(4)
    return header + key + _mask(payload, key)


#: Linux's SO_TIMESTAMPNS (Python's socket module does not name it): each read also says when the
#: kernel received the bytes, so an answer's time is its arrival, not when this process, sharing the
#: CPUs with the hub, got round to reading it
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_STAMP_SPACE = socket.CMSG_SPACE(16)


def arrival(ancillary: list[tuple[int, int, bytes]]) -> float:
    """The monotonic time at which the kernel received what ``recvmsg`` read (now if it did not say)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return time.monotonic() - max(0.0, time.time() - (sec + nsec * 1e-9))
    return time.monotonic()


def ignore_frames(ws: LeanWS, frame: Frame, now: float) -> Frame | None:
    """The handler of connections that are only held (pings are answered before any handler)."""
    return None


class LeanWS:
    """One ``/ws`` connection: JSON text frames, app-level pings answered, frames handed to ``handler``."""

    __slots__ = ("_buf", "_frag", "_lock", "_queue", "acks", "bye", "close_code", "closed", "handler", "stream",
                 "tag")

    def __init__(self, stream: trio.SocketStream, rest: bytes) -> None:
        self.stream = stream
        stream.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._buf = bytearray(rest)
        self._frag: bytearray | None = None
        self._lock = trio.Lock()
        self._queue: collections.deque[tuple[Frame, float]] = collections.deque()
        self.handler: Handler = ignore_frames
        self.close_code: int | None = None
        self.closed = False
        self.bye: Frame | None = None
        self.tag: Any = None
        self.acks = 0

    @classmethod
    async def open(cls, host: str, port: int, src: str | None) -> LeanWS:
        stream = await trio.open_tcp_stream(host, port, local_address=src)
        try:
            key = base64.b64encode(random.randbytes(16)).decode()
            request = (
                f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
            )
            await stream.send_all(request.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(16384)
                if not chunk:
                    raise ConnectionError("connection closed during the WebSocket handshake")
                data += chunk
                if len(data) > 65536:
                    raise ConnectionError("oversized handshake response")
            head, _, rest = data.partition(b"\r\n\r\n")
            status = head.split(b"\r\n", 1)[0]
            if b" 101" not in status:
                raise ConnectionError(f"handshake refused: {status.decode(errors='replace')}")
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return cls(stream, rest)

    async def send(self, frame: Frame) -> None:
        await self._send_frame(1, orjson.dumps(frame))

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        await self.send_raw(client_frame(payload, opcode))

    def send_now(self, data: bytes) -> bytes:
        """Write whole frames (from :func:`client_frame`) without a checkpoint, as far as the socket takes them now;
        returns what is left for :meth:`send_raw` (all of it while another send is in progress)."""
        if self._lock.locked():
            return data
        try:
            return data[os.write(self.stream.socket.fileno(), data):]
        except BlockingIOError:
            return data

    async def send_raw(self, data: bytes) -> None:
        """Bytes of whole frames, built with :func:`client_frame`."""
        async with self._lock:
            await self.stream.send_all(data)

    async def _pump(self) -> None:
        """Read once from the socket; queue every complete message (control frames handled here), each with the
        time the kernel received it."""
        data, ancillary, _flags, _address = await self.stream.socket.recvmsg(65536, _STAMP_SPACE)
        now = arrival(ancillary)
        if not data:
            self.closed = True
            raise ServerClosed(self.close_code)
        buf = self._buf
        buf += data
        pos, n = 0, len(buf)
        pings: list[bytes] = []
        close = False
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, start = b1 & 0x7F, pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length, start = (buf[pos + 2] << 8) | buf[pos + 3], pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if b1 & 0x80:
                raise ConnectionError("the server sent a masked frame")
            end = start + length
            if end > n:
                break
            pos = end
            opcode = b0 & 0x0F
            if opcode in (1, 2):
                if b0 & 0x80:
                    self._queue.append((orjson.loads(buf[start:end]), now))
                else:
                    self._frag = bytearray(buf[start:end])
            elif opcode == 0 and self._frag is not None:
                self._frag += buf[start:end]
                if b0 & 0x80:
                    self._queue.append((orjson.loads(self._frag), now))
                    self._frag = None
            elif opcode == 8:
                self.close_code = (buf[start] << 8) | buf[start + 1] if length >= 2 else 1005
                close = True
                break
            elif opcode == 9:
                pings.append(bytes(buf[start:end]))
        del buf[:pos]
        for payload in pings:
            await self._send_frame(0xA, payload)
        if close:
            self.closed = True
            raise ServerClosed(self.close_code)

    async def expect(self, *ops: str) -> Frame:
        """Wait for a frame whose op is one of ``ops`` (set-up only; errors and bye raise)."""
        frame, _ = await self.expect_at(*ops)
        return frame

    async def expect_at(self, *ops: str) -> tuple[Frame, float]:
        """:meth:`expect`, and the time the kernel received that frame."""
        while True:
            while self._queue:
                frame, at = self._queue.popleft()
                op = frame.get("op")
                if op in ops:
                    return frame, at
                if op == "ping":
                    await self.send({"op": "pong", "t": frame.get("t")})
                elif op in ("error", "bye"):
                    raise CallFailed(str(frame.get("code")), str(frame.get("message") or frame.get("reason")))
            await self._pump()

    async def run(self) -> None:
        """Hand every frame to ``handler`` until the connection ends (raises ServerClosed)."""
        queue = self._queue
        while True:
            while queue:
                frame, now = queue.popleft()
                op = frame.get("op")
                if op == "ping":
                    await self.send({"op": "pong", "t": frame.get("t")})
                    continue
                if op == "bye":
                    self.bye = frame
                out = self.handler(self, frame, now)
                if out is not None:
                    await self.send(out)
            await self._pump()

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            with trio.move_on_after(0.5), contextlib.suppress(Exception):
                await self._send_frame(8, struct.pack("!H", 1000))
        await trio.aclose_forcefully(self.stream)


async def open_session(host: str, port: int, src: str | None, token: str, device: str,
                       topic: str | None = None) -> LeanWS:
    """Connect, authenticate (and subscribe to ``topic``)."""
    ws = await LeanWS.open(host, port, src)
    try:
        await ws.send({"op": "auth", "token": token, "device": device})
        await ws.expect("welcome")
        if topic is not None:
            await ws.send({"op": "subscribe", "topic": topic})
            await ws.expect("subscribed")
    except BaseException:
        await trio.aclose_forcefully(ws.stream)
        raise
    return ws


class LeanHTTP:
    """One kept-alive HTTP/1.1 connection for JSON POSTs (httpx costs ~1 ms of client CPU a request)."""

    __slots__ = ("_buf", "closed", "host", "stream")

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self._buf = bytearray()
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int, src: str | None) -> LeanHTTP:
        return cls(await trio.open_tcp_stream(host, port, local_address=src), f"{host}:{port}")

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            self.closed = True
            raise ConnectionError("the server closed the connection")
        self._buf += data

    async def post(self, path: str, body: bytes, authorization: str | None) -> tuple[int, bytes]:
        return await self.request("POST", path, body, authorization)

    async def request(self, method: str, path: str, body: bytes | None = None,
                      authorization: str | None = None) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if authorization:
            head += f"Authorization: {authorization}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        await self.stream.send_all(head.encode() + b"\r\n" + (body or b""))
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            await self._fill()
        lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[: end + 4]
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self._buf) < n:
                await self._fill()
            payload = bytes(self._buf[:n])
            del self._buf[:n]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = bytearray()
            while True:
                while (eol := self._buf.find(b"\r\n")) < 0:
                    await self._fill()
                size = int(bytes(self._buf[:eol]).split(b";")[0], 16)
                while len(self._buf) < eol + 2 + size + 2:
                    await self._fill()
                chunks += self._buf[eol + 2 : eol + 2 + size]
                del self._buf[: eol + 2 + size + 2]
                if size == 0:
                    break
            payload = bytes(chunks)
        else:
            raise ConnectionError("response without a length")
        if headers.get("connection", "").lower() == "close":
            self.closed = True
        return status, payload


"""CareHub's own server side of RFC 6455: the handshake, frames in through ``FrameReader``, out through one flusher.

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

Incoming frames are parsed by ``FrameReader`` (masking, fragments, UTF-8, control frames, close
codes; it replaced wsproto, whose generic event machinery was most of the cost of reading a small
frame); ``tests/http/test_autobahn.py`` runs Autobahn|Testsuite cases 1-10 against this code.
Compression (permessage-deflate) is not offered.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import collections
import contextlib
import hashlib
import logging
import math
import os
import select
import struct
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import trio

from carehub.hub.loop import LoopLoad, loop_load

log = logging.getLogger("carehub.websocket")

RECEIVE_BYTES = 65536
#: the hard cap on one message (the gateway answers a smaller limit with an error frame first)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CLOSE_TIMEOUT = 1.0
OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
#: RFC 6455 section 1.3
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

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
                 f"sec-websocket-accept: {accept_token(self.key)}"]
        if subprotocol is not None:
            lines.append(f"sec-websocket-protocol: {subprotocol}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def accept_token(key: bytes) -> str:
    return base64.b64encode(hashlib.sha1(key + ACCEPT_GUID).digest()).decode("ascii")


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


# ---- frames in ---------------------------------------------------------------------------

#: close codes a peer may send (RFC 6455 7.4; 1012/1013 from the IANA registry); 3000-4999 are anyone's
_PEER_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013})
NO_STATUS = 1005


class ProtocolError(Exception):
    """The peer broke RFC 6455: the connection fails with ``code`` (1002, 1007 or 1009)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _unmask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(n, "little")


class FrameReader:
    """A client's frames (RFC 6455 section 5) as whole messages, pings and its close.

    Hand-written rather than wsproto's generic parser: a frame here is a few slices and one XOR,
    and a burst of booking frames is mostly frame reading. Autobahn|Testsuite cases 1-10 run
    against it (tests/http/test_autobahn.py).
    """

    __slots__ = ("_buffer", "_decoder", "_op", "_parts", "_size")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._op: int | None = None  # the fragmented message in progress: OP_TEXT or OP_BINARY
        self._parts: list[Any] = []
        self._size = 0
        self._decoder: codecs.IncrementalDecoder | None = None

    def feed(self, data: bytes, out: list[tuple[int, Any]]) -> None:
        """Append to ``out`` what ``data`` completes: ``(OP_TEXT, str)``, ``(OP_BINARY, bytes)``,
        ``(OP_PING, payload)`` or ``(OP_CLOSE, (code, reason))`` (nothing is read after a close).
        Raises :class:`ProtocolError`."""
        if self._buffer:
            self._buffer += data
            view: bytes | bytearray = self._buffer
        else:
            view = data
        end = len(view)
        pos = 0
        closed = False
        while end - pos >= 2:
            b0, b1 = view[pos], view[pos + 1]
            if b0 & 0x70:
                raise ProtocolError(1002, "reserved bits set, but no extension was agreed")
            if not b1 & 0x80:
                raise ProtocolError(1002, "a client's frames must be masked")
            op = b0 & 0x0F
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                if end - head < 2:
                    break
                length = int.from_bytes(view[head:head + 2], "big")
                head += 2
            elif length == 127:
                if end - head < 8:
                    break
                length = int.from_bytes(view[head:head + 8], "big")
                head += 8
                if length >> 63:
                    raise ProtocolError(1002, "frame length with the most significant bit set")
            if op >= 0x8:
                if not b0 & 0x80:
                    raise ProtocolError(1002, "a control frame may not be fragmented")
                if length > 125:
                    raise ProtocolError(1002, "a control frame carries at most 125 bytes")
            elif self._size + length > MAX_MESSAGE_BYTES:
                raise ProtocolError(1009, "message too big")
            start = head + 4
            if end - start < length:
                break
            payload = _unmask(bytes(view[start:start + length]), bytes(view[head:start]))
            pos = start + length
            if self._frame(op, bool(b0 & 0x80), payload, out):
                closed = True
                break
        if closed:
            self._buffer = bytearray()  # nothing after a close frame counts
        elif view is data:
            if pos < end:
                self._buffer += data[pos:]  # the start of a frame still coming
        else:
            del self._buffer[:pos]

    def _frame(self, op: int, fin: bool, payload: bytes, out: list[tuple[int, Any]]) -> bool:
        """Handle one frame; True for the peer's close."""
        if op == OP_TEXT or op == OP_BINARY:
            if self._op is not None:
                raise ProtocolError(1002, "a new message began before the last one was finished")
            if fin:
                out.append((op, self._text(payload) if op == OP_TEXT else payload))
                return False
            self._op = op
            self._decoder = codecs.getincrementaldecoder("utf-8")() if op == OP_TEXT else None
            self._add(payload, False)
            return False
        if op == OP_CONTINUATION:
            if self._op is None:
                raise ProtocolError(1002, "a continuation frame without a message to continue")
            self._add(payload, fin)
            if fin:
                message: Any = "".join(self._parts) if self._op == OP_TEXT else b"".join(self._parts)
                out.append((self._op, message))
                self._op, self._parts, self._size, self._decoder = None, [], 0, None
            return False
        if op == OP_PING:
            out.append((OP_PING, payload))
            return False
        if op == OP_PONG:
            return False
        if op == OP_CLOSE:
            out.append((OP_CLOSE, self._close(payload)))
            return True
        raise ProtocolError(1002, f"unknown opcode {op:#x}")

    def _add(self, payload: bytes, fin: bool) -> None:
        self._size += len(payload)
        if self._decoder is not None:
            try:
                self._parts.append(self._decoder.decode(payload, fin))  # fails at the first bad byte
            except UnicodeDecodeError:
                raise ProtocolError(1007, "text message is not valid UTF-8") from None
        else:
            self._parts.append(payload)

    @staticmethod
    def _text(payload: bytes) -> str:
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(1007, "text message is not valid UTF-8") from None

    @staticmethod
    def _close(payload: bytes) -> tuple[int, str]:
        if not payload:
            return NO_STATUS, ""
        if len(payload) == 1:
            raise ProtocolError(1002, "a close frame's payload is empty or at least two bytes")
        code = int.from_bytes(payload[:2], "big")
        if code not in _PEER_CLOSE_CODES and not 3000 <= code <= 4999:
            raise ProtocolError(1002, f"invalid close code {code}")
        try:
            return code, payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(1007, "close reason is not valid UTF-8") from None


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; 1005 (the peer sent no code) is answered with an empty one."""
    if code == NO_STATUS:
        return frame(b"", OP_CLOSE)
    return frame(struct.pack("!H", code) + _clip(reason).encode(), OP_CLOSE)


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


class ReadPacer:
    """Bounds the reading done in one turn of the event loop.

    Trio runs every task that became ready in one batch. After a quiet moment a burst of frames on
    thousands of connections (a release of slots at 08:00) makes every reader ready at once, and
    the turn that reads them all takes hundreds of milliseconds, in which nothing else moves: the
    answer of a commit, the next step of a booking, the writes, a timer. Each of those steps then
    waits for such a turn, so the work already in the hub finishes only after all new work is read.

    Here a reader woken once ``turn_seconds`` of the turn are spent, or while others already wait,
    parks; each turn :meth:`run` lets the first ``per_turn`` parked readers go, in the order they came.
    The reading goes on at the same pace, but in short turns, between which in-flight work moves on.
    """

    def __init__(self, *, turn_seconds: float = 0.004, per_turn: int = 64) -> None:
        self.turn_seconds = turn_seconds
        self.per_turn = per_turn
        self._parked: collections.OrderedDict[trio.lowlevel.Task, None] = collections.OrderedDict()
        self._wake = trio.Event()
        self._load: LoopLoad | None = None  # while running
        #: readers that waited for a later turn (/metrics ``carehub_ws_reads_paced_total``)
        self.paced = 0

    def busy(self) -> bool:
        """Should a reader woken now wait for a later turn?"""
        return self._load is not None and (bool(self._parked) or self._load.turn_seconds() > self.turn_seconds)

    async def wait(self) -> None:
        """Wait for this reader's place in a later turn."""
        task = trio.lowlevel.current_task()
        self._parked[task] = None
        self.paced += 1
        self._wake.set()
        load = self._load
        assert load is not None
        load.backlog = len(self._parked)  # the hub's housekeeping waits meanwhile (carehub.hub.loop)

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            self._parked.pop(task, None)
            load.backlog = len(self._parked)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._load = load = loop_load()
        try:
            task_status.started()
            while True:
                if not self._parked:
                    await self._wake.wait()
                    self._wake = trio.Event()
                for _ in range(min(self.per_turn, len(self._parked))):
                    task, _ = self._parked.popitem(last=False)
                    trio.lowlevel.reschedule(task)
                load.backlog = len(self._parked)
                await trio.lowlevel.checkpoint()  # the next turn
        finally:
            self._load = None
            load.backlog = 0
            while self._parked:  # nobody would let them go any more
                trio.lowlevel.reschedule(self._parked.popitem(last=False)[0])


#: the longest the read poller's idle sweep waits for a quiet moment
BUSY_SWEEP_SECONDS = 5.0


class ReadPoller:
    """Reads, from one task, for every connection whose reader parked with it (signed-in ``/ws`` clients).

    A reader task per connection costs, per frame, a wake-up: Trio re-arms the descriptor in its
    one-shot epoll (a system call), reschedules the task and resumes its coroutine, ~25 µs on this
    hardware, more than reading and running a small frame. Here the descriptors of parked
    connections sit in one level-triggered epoll of our own (registered once, while parked); Trio
    wakes this task when any of them is readable, and it reads each ready connection and hands every
    message to the connection's handler, in this task (5-8 µs per frame in a socket-pair test). A
    message the handler cannot run without its task (one that waits, e.g. for the database), the
    peer's close, a broken connection or an error hands the connection back to its reader task.

    At most ``per_turn`` connections are read per turn of the event loop, so a burst is read in short
    turns between which the work already in the hub moves on (as the :class:`ReadPacer` does for
    the reader tasks).

    The poller also times parked connections out: every ``sweep_seconds`` (later while the loop is
    busy, at most :data:`BUSY_SWEEP_SECONDS`) it hands back, marked ``idled``, each connection it has
    read nothing from for its idle time. A timer per connection fired, for phones that signed in
    together, together: in the middle of the release they came for.
    """

    def __init__(self, *, per_turn: int = 64, sweep_seconds: float = 1.0) -> None:
        self.per_turn = per_turn
        self.sweep_seconds = sweep_seconds
        self._epoll: select.epoll | None = None
        self._parked: dict[int, WebSocket] = {}
        #: socket reads done here (/metrics ``carehub_ws_reads_polled_total``)
        self.reads = 0

    @property
    def running(self) -> bool:
        return self._epoll is not None

    def park(self, ws: WebSocket) -> None:
        assert self._epoll is not None
        self._epoll.register(ws._fd, select.EPOLLIN)
        self._parked[ws._fd] = ws

    def unpark(self, ws: WebSocket) -> bool:
        """Stop reading for ``ws`` (False: it was not parked)."""
        if self._parked.get(ws._fd) is not ws:
            return False
        del self._parked[ws._fd]
        if self._epoll is not None:
            try:
                self._epoll.unregister(ws._fd)
            except OSError:  # already closed: the kernel dropped it from the epoll
                pass
        return True

    def hand_back(self, ws: WebSocket) -> None:
        """Return ``ws`` to its reader task."""
        if self.unpark(ws):
            task, ws._parked_task = ws._parked_task, None
            if task is not None:
                trio.lowlevel.reschedule(task)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._epoll = epoll = select.epoll()
        load = loop_load()
        parked = self._parked
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sweep, load)
                task_status.started()
                await self._poll(epoll, load)
        finally:
            self._epoll = None
            load.polled_backlog = 0
            for ws in list(parked.values()):  # their tasks read for themselves from now on
                self.hand_back(ws)
            epoll.close()

    async def _poll(self, epoll: select.epoll, load: LoopLoad) -> None:
        parked = self._parked
        while True:
            await trio.lowlevel.wait_readable(epoll.fileno())
            while True:
                events = epoll.poll(0, self.per_turn)
                now = trio.current_time()
                for fd, _ in events:
                    ws = parked.get(fd)
                    if ws is None:  # cannot happen: every unpark unregisters; never spin on it
                        with contextlib.suppress(OSError):
                            epoll.unregister(fd)
                        continue
                    ws.read_at = now
                    self._read(ws)
                self.reads += len(events)
                if len(events) < self.per_turn:
                    break
                load.polled_backlog = len(parked)  # more may be ready: the hub's housekeeping waits
                await trio.lowlevel.checkpoint()
            load.polled_backlog = 0

    async def _sweep(self, load: LoopLoad) -> None:
        last = trio.current_time()
        while True:
            await trio.sleep(self.sweep_seconds)
            now = trio.current_time()
            if load.busy() and now - last < BUSY_SWEEP_SECONDS:
                continue  # frames are queued (a release): nobody is closed for idling a few seconds late
            last = now
            for ws in [ws for ws in self._parked.values() if now - ws.read_at > ws.idle_seconds]:
                ws.idled = True
                self.hand_back(ws)

    def _read(self, ws: WebSocket) -> None:
        try:
            try:
                data = os.read(ws._fd, RECEIVE_BYTES)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # lost without a close frame
                ws._state = _DONE
                ws.close_code = 1006
                self.hand_back(ws)
                return
            ws._drained = len(data) < RECEIVE_BYTES
            ws._feed(data)
            ready = ws._ready
            if ready:
                handler = ws._handler
                assert handler is not None
                for i, message in enumerate(ready):
                    if not handler(message) or ws._parked_task is None:
                        # the handler needs the task for this one (kept for receive()), or closed the connection
                        ws._ready = ready[i:] if ws._parked_task is not None else ready[i + 1:]
                        self.hand_back(ws)
                        return
                ready.clear()
            if ws.close_code is not None:
                self.hand_back(ws)
        except Exception as err:  # this connection's bug: its task raises it; every other connection goes on
            ws._error = err
            self.hand_back(ws)


_OPEN, _CLOSING, _DONE = 0, 1, 2  # closing: we sent our close frame and wait for the peer's


class WebSocket:
    """One accepted WebSocket: ``receive()`` whole messages; queue frames with ``send_*``; ``close()``.

    Outgoing bytes come from ``source`` (a callable returning frames queued elsewhere, e.g. the
    push ``Session``) and from frames this object queued itself (pongs, the close frame, echo).
    """

    __slots__ = (
        "_closed",
        "_drained",
        "_error",
        "_fd",
        "_flusher",
        "_handler",
        "_own",
        "_pacer",
        "_parked_task",
        "_poller",
        "_queued",
        "_reader",
        "_ready",
        "_slow",
        "_state",
        "_unsent",
        "close_code",
        "close_reason",
        "idle_seconds",
        "idled",
        "read_at",
        "source",
        "stream",
    )

    def __init__(self, stream: trio.SocketStream, flusher: Flusher, rest: bytes = b"",
                 pacer: ReadPacer | None = None, poller: ReadPoller | None = None) -> None:
        self.stream = stream
        self._pacer = pacer
        self._poller = poller
        self._handler: Callable[[str | bytes], bool] | None = None
        self._parked_task: trio.lowlevel.Task | None = None
        self._error: Exception | None = None
        #: while parked: when the poller last read for this connection (``trio.current_time()``) ...
        self.read_at = 0.0
        #: ... how long it may stay silent, and whether the poller handed it back for being silent longer
        self.idle_seconds = math.inf
        self.idled = False
        self._fd = stream.socket.fileno()
        self._reader = FrameReader()
        self._state = _OPEN
        self._flusher = flusher
        self._own: list[bytes] | None = None
        self._unsent: bytes | memoryview = b""
        self._queued = False
        self._slow = False
        self._closed = False
        #: the last read emptied the socket: wait until it is readable before the next
        self._drained = False
        self.source: Callable[[], list[bytes]] | None = None
        #: the close code the peer sent (1006: the connection was lost without one)
        self.close_code: int | None = None
        self.close_reason = ""
        self._ready: list[str | bytes] | None = None
        if rest:
            self._feed(rest)

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
        if self._poller is not None:
            self._poller.hand_back(self)  # before the descriptor is closed (and its number reused)
        self.stream.socket.close()

    @property
    def sending(self) -> bool:
        """Bytes are queued or waiting for the socket."""
        return bool(self._queued or self._slow or self._own)

    # ---- in -------------------------------------------------------------------------------

    def can_park(self) -> bool:
        """Would :meth:`serve_parked` park now (a poller runs, nothing is waiting to be received)?"""
        poller = self._poller
        return (poller is not None and poller.running and not self._ready and self.close_code is None
                and not self._closed)

    async def serve_parked(self, handler: Callable[[str | bytes], bool], idle_seconds: float = math.inf) -> bool:
        """Let the read poller read for this connection and run each message with ``handler`` in its task.

        Returns when a message needs this task (``handler`` returned False: the message is the next
        :meth:`receive` returns), the peer closed or the connection broke (:meth:`receive` says so), or
        at once unless :meth:`can_park`. An exception of ``handler`` is raised here. A cancellation
        ends the wait, and the poller's reading for it. True: nothing came for ``idle_seconds``.
        """
        if not self.can_park():
            return False
        poller = self._poller
        assert poller is not None
        self._handler = handler
        self._parked_task = trio.lowlevel.current_task()
        self.read_at = trio.current_time()
        self.idle_seconds = idle_seconds
        self.idled = False
        poller.park(self)

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            poller.unpark(self)
            self._parked_task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        self._handler = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        return self.idled

    async def receive(self) -> str | bytes | None:
        """The next whole message; None once the connection is closed (``close_code`` says how).

        Reads with ``os.read`` and waits with ``wait_readable`` only once a read found nothing (or less
        than a buffer): Trio's ``socket.recv`` tries a read before every wait, so each frame cost a
        read that failed, and its exception, on top of the one that succeeds.
        """
        while True:
            if self._ready:
                return self._ready.pop(0)
            if self.close_code is not None:
                return None
            if self._closed:  # aborted
                self._state = _DONE
                self.close_code = 1006
                return None
            try:
                drained = self._drained
                if drained:
                    await trio.lowlevel.wait_readable(self._fd)
                if self._pacer is not None and self._pacer.busy():
                    await self._pacer.wait()  # a burst: this read waits for a later turn of the loop
                elif not drained:
                    await trio.lowlevel.checkpoint()  # a peer that keeps the buffer full still takes turns
                if self._closed:  # aborted: the descriptor may already belong to another socket
                    raise trio.ClosedResourceError
                data = os.read(self._fd, RECEIVE_BYTES)
            except BlockingIOError:
                self._drained = True
                continue
            except (OSError, trio.ClosedResourceError):
                data = b""
            self._drained = len(data) < RECEIVE_BYTES
            if not data:  # lost without a close frame
                self._state = _DONE
                self.close_code = 1006
                return None
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        out: list[tuple[int, Any]] = []
        try:
            self._reader.feed(data, out)
        except ProtocolError as err:
            self._handle(out)  # what came complete before the bad frame still counts
            self._fail(err.code, err.reason)
            return
        self._handle(out)

    def _handle(self, out: list[tuple[int, Any]]) -> None:
        for op, value in out:
            if op == OP_TEXT or op == OP_BINARY:
                if self._ready is None:
                    self._ready = []
                self._ready.append(value)
            elif op == OP_PING:
                if self._state == _OPEN:
                    self.send_frame(frame(value, OP_PONG))
            else:  # the peer's close
                code, reason = value
                if self._state == _OPEN:
                    self.send_frame(close_frame(code, reason))  # answered with the same code (RFC 6455 5.5.1)
                self._state = _DONE
                self.close_code, self.close_reason = code, reason

    def _fail(self, code: int, reason: str) -> None:
        """The peer broke the protocol: say why in our close frame; nothing more is read."""
        self.close_code, self.close_reason = code, reason
        if self._state == _OPEN:
            self.send_frame(close_frame(code, reason))
        self._state = _DONE

    # ---- closing ---------------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send what is queued and a close frame, wait (briefly) for the peer's, then close the socket."""
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            # what is queued goes first, the close frame last, nothing after it
            queued = self._take()
            self.source = None
            self._own = [queued] if queued else []
            if self._state == _OPEN:
                # codes only a receiver may report (none came, the connection was lost) are sent as 1000
                self._own.append(close_frame(1000 if code in (1005, 1006, 1015) else code, reason))
                self._state = _CLOSING
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

"""One accepted WebSocket: reading (by its task, or by the read poller while parked), queued writes, closing."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Any

import trio

from .flusher import Flusher
from .frames import (
    OP_BINARY,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    ProtocolError,
    close_frame,
    frame,
)
from .pacer import ReadPacer
from .poller import ReadPoller

log = logging.getLogger("carehub.websocket")

RECEIVE_BYTES = 65536
CLOSE_TIMEOUT = 1.0


_OPEN, _CLOSING, _DONE = 0, 1, 2  # closing: we sent our close frame and wait for the peer's


class WebSocket:
    """One accepted WebSocket: ``receive()`` whole messages; queue frames with ``send_*``; ``close()``.

    Outgoing bytes come from ``source`` (a callable returning frames queued elsewhere, e.g. the
    push ``Session``) and from frames this object queued itself (pongs, the close frame, echo).

    Incoming bytes are read by the connection's task (:meth:`receive`), or, while the task waits in
    :meth:`serve_parked`, by the :class:`ReadPoller`, which calls :meth:`read_polled` when the socket
    is readable and :meth:`wake_parked` to give the connection back; nothing else of this object is
    the poller's business.
    """

    __slots__ = (
        "_closed",
        "_drained",
        "_error",
        "_flusher",
        "_handler",
        "_own",
        "_pacer",
        "_parked",
        "_poller",
        "_queued",
        "_reader",
        "_ready",
        "_slow",
        "_state",
        "_unsent",
        "close_code",
        "close_reason",
        "fd",
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
        #: while :meth:`serve_parked` waits: its task, parked here until the poller hands it back
        self._parked: trio.lowlevel.ParkingLot | None = None
        self._error: Exception | None = None
        #: while parked: when the poller last read for this connection (``trio.current_time()``) ...
        self.read_at = 0.0
        #: ... how long it may stay silent, and whether the poller handed it back for being silent longer
        self.idle_seconds = math.inf
        self.idled = False
        #: the socket's descriptor (read and written with ``os.read``/``os.write``; the poller's epoll key)
        self.fd = stream.socket.fileno()
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
            written = os.write(self.fd, data)
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
                await trio.lowlevel.wait_writable(self.fd)
                if self._closed:
                    return
                try:
                    written = os.write(self.fd, self._unsent)
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
        self._parked = lot = trio.lowlevel.ParkingLot()
        self.read_at = trio.current_time()
        self.idle_seconds = idle_seconds
        self.idled = False
        poller.park(self)
        try:
            await lot.park()
        finally:
            self._parked = None
            self._handler = None
            poller.unpark(self)  # a no-op once handed back; after a cancellation, the poller stops here
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        return self.idled

    def wake_parked(self, *, idled: bool = False) -> None:
        """The poller gives the connection back to its task (``idled``: nothing came for its idle time)."""
        lot = self._parked
        if lot is not None:
            self.idled = idled
            lot.unpark()

    def silent_for(self, now: float) -> float:
        """Seconds since the poller last read anything for this connection."""
        return now - self.read_at

    def read_polled(self, now: float) -> bool:
        """The poller found the socket readable: read it and run what came with the parked handler.

        True when the task must take over: a message the handler cannot run here (kept for
        :meth:`receive`), the peer's close, a lost connection, a closed connection, or an error
        (raised by :meth:`serve_parked`). Also True once the task stopped waiting (cancelled).
        """
        handler = self._handler
        if handler is None or not self._parked:
            return True
        self.read_at = now
        try:
            try:
                data = os.read(self.fd, RECEIVE_BYTES)
            except BlockingIOError:
                return False
            except OSError:
                data = b""
            if not data:  # lost without a close frame
                self._state = _DONE
                self.close_code = 1006
                return True
            self._drained = len(data) < RECEIVE_BYTES
            self._feed(data)
            ready = self._ready
            if ready:
                for i, message in enumerate(ready):
                    if not handler(message) or not self._parked:
                        # the handler needs the task for this one (kept for receive()), or closed the connection
                        self._ready = ready[i:] if self._parked else ready[i + 1:]
                        return True
                ready.clear()
            return self.close_code is not None
        except Exception as err:  # this connection's bug: its task raises it; every other connection goes on
            self._error = err
            return True

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
                    await trio.lowlevel.wait_readable(self.fd)
                if self._pacer is not None and self._pacer.busy():
                    await self._pacer.wait()  # a burst: this read waits for a later turn of the loop
                elif not drained:
                    await trio.lowlevel.checkpoint()  # a peer that keeps the buffer full still takes turns
                if self._closed:  # aborted: the descriptor may already belong to another socket
                    raise trio.ClosedResourceError
                data = os.read(self.fd, RECEIVE_BYTES)
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

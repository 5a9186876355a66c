"""RFC 6455 frames: ``FrameReader`` turns a client's bytes into messages, ``frame``/``close_frame`` build ours.

Hand-written rather than wsproto's generic parser: a frame here is a few slices and one XOR, and a
burst of booking frames is mostly frame reading. Autobahn|Testsuite cases 1-10 run against it
(tests/http/test_autobahn.py). Compression (permessage-deflate) is not offered.
"""

from __future__ import annotations

import codecs
import struct
from typing import Any

#: the hard cap on one message (the gateway answers a smaller limit with an error frame first)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

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


def frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One unfragmented, unmasked frame (what a server sends)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload



def _clip(reason: str) -> str:
    """A close reason fits in a control frame: at most 123 bytes of UTF-8."""
    data = reason.encode()[:123]
    return data.decode(errors="ignore")

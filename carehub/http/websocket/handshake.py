"""The opening handshake (RFC 6455 section 4): the upgrade request for our paths, the 101 answer, refusals."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable

import orjson

#: RFC 6455 section 1.3
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


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

"""The WebSocket handshake on CareHub's own listener (carehub/http/server.py, http/websocket/), byte by byte."""

from __future__ import annotations

import base64
import os
from typing import Any
from urllib.parse import urlsplit

import orjson
import trio

from .conftest import Server


def _upgrade(path: str = "/ws", *, version: str = "13", key: str | None = None, extra: str = "") -> bytes:
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", "Host: hub", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Version: {version}"]
    if key:
        lines.append(f"Sec-WebSocket-Key: {key}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def _masked(payload: bytes, opcode: int = 0x1) -> bytes:
    """One client frame (clients must mask)."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + body


async def _open(server: Server) -> trio.SocketStream:
    url = urlsplit(server.base)
    return await trio.open_tcp_stream(url.hostname or "127.0.0.1", url.port or 80)


async def _read_until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def _read_frame(stream: trio.SocketStream, buffered: bytes) -> tuple[int, bytes, bytes]:
    """(opcode, payload, what is left) of the next unmasked server frame."""
    data = buffered
    while True:
        if len(data) >= 2:
            length, start = data[1] & 0x7F, 2
            if length == 126 and len(data) >= 4:
                length, start = int.from_bytes(data[2:4], "big"), 4
            if length < 127 and len(data) >= start + length:
                return data[0] & 0x0F, data[start:start + length], data[start + length:]
        data += await stream.receive_some(65536)


async def _refused(server: Server, request: bytes) -> tuple[bytes, dict[str, Any]]:
    """The HTTP head and JSON body answering ``request`` (the server then closes the connection)."""
    with trio.fail_after(10):
        stream = await _open(server)
        await stream.send_all(request)
        answer = await _read_until_closed(stream)
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, orjson.loads(body)


async def test_an_upgrade_with_another_websocket_version_is_answered_426_naming_version_13(server: Server) -> None:
    head, body = await _refused(server, _upgrade(version="8"))
    assert head.startswith(b"HTTP/1.1 426")
    assert b"sec-websocket-version: 13" in head.lower()
    assert "version 13" in body["error"]["message"]


async def test_an_upgrade_without_a_key_is_answered_400_saying_what_is_missing(server: Server) -> None:
    head, body = await _refused(server, _upgrade(key=""))
    assert head.startswith(b"HTTP/1.1 400")
    assert "Sec-WebSocket-Key" in body["error"]["message"]


async def test_a_first_frame_sent_together_with_the_handshake_is_answered(server: Server) -> None:
    token = await server.token("patient1")
    with trio.fail_after(10):
        stream = await _open(server)
        frame = _masked(orjson.dumps({"op": "ping", "t": "before-the-answer"}))
        await stream.send_all(_upgrade() + frame)  # one write: the frame arrives with the request head
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        opcode, payload, rest = await _read_frame(stream, rest)
        assert opcode == 0x1 and orjson.loads(payload) == {"op": "pong", "t": "before-the-answer"}
        await stream.send_all(_masked(orjson.dumps({"op": "auth", "token": token[:20] + "x"})))
        frames = []
        while not frames or frames[-1][0] != 0x8:
            opcode, payload, rest = await _read_frame(stream, rest)
            frames.append((opcode, payload))
    assert orjson.loads(frames[0][1])["code"] == "auth_failed"
    assert int.from_bytes(frames[-1][1][:2], "big") == 4001


async def test_a_websocket_upgrade_after_an_http_request_on_the_same_connection_is_refused_with_1008(
    server: Server,
) -> None:
    with trio.fail_after(10):
        stream = await _open(server)
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            data += await stream.receive_some(65536)
        assert data.startswith(b"HTTP/1.1 200")
        await stream.send_all(_upgrade())
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")  # Hypercorn accepts, the app then refuses
        opcode, payload, _ = await _read_frame(stream, rest)
    assert opcode == 0x8
    assert int.from_bytes(payload[:2], "big") == 1008
    assert "new connection" in payload[2:].decode()


async def test_a_websocket_to_a_path_without_a_route_is_closed_with_1008_naming_the_path(server: Server) -> None:
    with trio.fail_after(10):
        stream = await _open(server)
        await stream.send_all(_upgrade("/ws/nowhere"))
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        opcode, payload, _ = await _read_frame(stream, rest)
    assert head.startswith(b"HTTP/1.1 101") and opcode == 0x8
    assert int.from_bytes(payload[:2], "big") == 1008
    assert "/ws/nowhere" in payload[2:].decode()

"""``FrameReader``: how a client's bytes, however TCP cuts them, become messages (conformance: test_autobahn.py)."""

from __future__ import annotations

import os
from typing import Any

from carehub.bots.bench import client_frame  # what the load client sends
from carehub.http.websocket import OP_BINARY, OP_TEXT, FrameReader


def test_a_frame_arriving_one_byte_at_a_time_is_read_once_whole() -> None:
    reader = FrameReader()
    data = client_frame("挂号 booking".encode())
    out: list[tuple[int, Any]] = []
    for i in range(len(data)):
        reader.feed(data[i:i + 1], out)
        assert out == ([] if i < len(data) - 1 else [(OP_TEXT, "挂号 booking")])


def test_frames_arriving_together_with_the_start_of_a_long_one_are_read_in_order() -> None:
    reader = FrameReader()
    long = os.urandom(70_000)
    data = client_frame(b'{"op": "ping"}') + client_frame(b"\x00\x01", OP_BINARY) + client_frame(long, OP_BINARY)
    out: list[tuple[int, Any]] = []
    reader.feed(data[:-1000], out)
    assert out == [(OP_TEXT, '{"op": "ping"}'), (OP_BINARY, b"\x00\x01")]
    reader.feed(data[-1000:], out)
    assert out[2:] == [(OP_BINARY, long)]

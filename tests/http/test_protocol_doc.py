"""docs/protocol.md and the typed frames of ``carehub/http/gateway/frames.py`` describe the same wire."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from carehub.channels.push import deliver_frame
from carehub.http.gateway import frames
from carehub.hub import Outbound, StreamItem
from carehub.hub.topics import Topics

PROTOCOL = Path(__file__).parents[2] / "docs" / "protocol.md"


def table(heading: str) -> dict[str, set[str]]:
    """The first table under ``## heading``: each op (a row may name two: ``a`` / ``b``) -> its fields."""
    text = PROTOCOL.read_text("utf-8")
    lines = text.split(f"## {heading}\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| op |"))
    rows = lines[start + 2:]
    out: dict[str, set[str]] = {}
    for row in rows:
        if not row.startswith("|"):
            break
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        fields_cell = re.sub(r"\([^)]*\)", "", cells[1])  # "(optional)", "(1-100 chars, default `default`)"
        fields = {re.split(r"[ :.{]", name)[0] for name in re.findall(r"`([^`]+)`", fields_cell)}
        for op in re.findall(r"`([^`]+)`", cells[0]):
            out[op] = fields
    return out


def struct_table(classes: tuple[type[msgspec.Struct], ...]) -> dict[str, set[str]]:
    return {str(cls.__struct_config__.tag): set(cls.__struct_fields__) for cls in classes}


def test_the_client_frames_are_the_ops_and_fields_of_the_protocols_client_table() -> None:
    assert struct_table(frames.CLIENT_FRAMES) == table("Frames from the client")


def test_the_server_frames_are_the_ops_and_fields_of_the_protocols_server_table() -> None:
    assert struct_table(frames.SERVER_FRAMES) == table("Frames from the server")


def test_the_unknown_op_message_names_every_client_op() -> None:
    err = frames.explain('{"op": "teleport"}', "json", True, ValueError())
    assert err.code == "unknown_op"
    named = set(err.message.split("ops are ", 1)[1].split(", "))
    assert named == set(table("Frames from the client"))


class Collect:
    def __init__(self) -> None:
        self.items: list[Outbound] = []

    def offer(self, item: Outbound) -> None:
        self.items.append(item)


def test_deliver_and_event_frames_built_outside_the_gateway_have_the_fields_of_their_structs() -> None:
    item = StreamItem("a1", 7, "m7", "chat.message", b"{}", dt.datetime.now(dt.UTC))
    assert set(deliver_frame(item).frame) == {"op", *frames.Deliver.__struct_fields__}
    topics, sub = Topics(), Collect()
    topics.subscribe("broadcast/hall", sub)
    topics.publish("broadcast/hall", "notice", {"text": "x"})
    assert set(sub.items[0].frame) == {"op", *frames.Event.__struct_fields__}
    assert sub.items[0].frame["op"] == "event" and deliver_frame(item).frame["op"] == "deliver"


@pytest.mark.parametrize(
    ("message", "signed_in", "code", "message_part"),
    [
        ("{not json", False, "bad_frame", "frame is not valid json"),
        ("[1]", False, "bad_frame", "a frame must be an object with an 'op' field"),
        ('{"op": 3}', False, "bad_frame", "a frame needs an 'op' string"),
        ('{"op": "call", "id": 1}', False, "not_authenticated", "send an auth frame before 'call'"),
        ('{"op": "auth"}', False, "bad_frame", "auth needs a 'token' string"),
        ('{"op": "auth", "token": "t", "device": ""}', False, "bad_frame", "auth 'device' must be a string of 1-100"),
        ('{"op": "auth", "token": 5}', True, "already_authenticated", "already authenticated"),
        ('{"op": "ack", "seq": -1}', True, "bad_frame", "ack needs 'seq'"),
        ('{"op": "ack", "seq": true}', True, "bad_frame", "ack needs 'seq'"),
        ('{"op": "call", "id": true, "to": "a/b", "type": "T"}', True, "bad_frame", "call needs an 'id'"),
        ('{"op": "call", "id": 1, "to": 5, "type": "T"}', True, "bad_frame", "call needs 'to'"),
        ('{"op": "command", "id": 1}', True, "bad_frame", "command needs a 'name'"),
        ('{"op": "subscribe", "topic": ""}', True, "bad_frame", "subscribe needs a 'topic' string"),
        ('{"op": "publish", "topic": "broadcast/x"}', True, "bad_frame", "publish needs 'topic' and 'type'"),
        ('{"op": "resume", "after": "x"}', True, "bad_frame", "resume 'after' must be a sequence number"),
    ],
)
def test_a_frame_the_structs_refuse_gets_the_code_and_message_clients_always_got(
    message: str, signed_in: bool, code: str, message_part: str,
) -> None:
    with pytest.raises(frames.FrameError) as refused:
        frames.FrameDecoder("json").decode(message, signed_in)
    assert refused.value.code == code and message_part in refused.value.message, refused.value.message


def test_a_valid_frame_decodes_to_its_struct_in_both_codecs() -> None:
    import msgpack

    body: dict[str, Any] = {"patient_id": "p1", "day": "2026-12-01"}
    frame = {"op": "command", "id": 7, "name": "booking.create", "body": body}
    want = frames.Command(7, "booking.create", body)
    assert frames.FrameDecoder("json").decode(msgspec.json.encode(frame).decode(), True) == want
    assert frames.FrameDecoder("msgpack").decode(msgpack.packb(frame), True) == want

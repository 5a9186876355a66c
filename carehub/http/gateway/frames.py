"""The ``/ws`` wire protocol as a closed set of typed frames (docs/protocol.md).

Every frame a client may send is one :data:`ClientFrame` struct, tagged by its ``op``, decoded
once (:class:`FrameDecoder`, JSON text or MessagePack binary) and dispatched with ``match``; a
frame the structs refuse is explained by :func:`explain`, which gives the same error code and
message clients got when every handler checked its own fields (``bad_frame``, ``unknown_op``,
``not_authenticated``, ``already_authenticated``). Only bad frames take that slower path.

Every frame the server sends is a :data:`ServerFrame` struct; :func:`wire` makes the mapping the
push session encodes (shallow: a reply's ``result`` is passed through as it is). ``deliver`` and
``event`` frames are built where they are fanned out (``carehub.channels.push.deliver_frame``,
the hub's topics); their fields are the :class:`Deliver` and :class:`Event` structs' fields
(``tests/http/test_protocol_doc.py`` checks both, and that these sets are docs/protocol.md's tables).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final

import msgpack
import msgspec
import orjson

# ---- frames from the client ----------------------------------------------------------------

Ref = int | str
Seq = Annotated[int, msgspec.Meta(ge=0)]


class Auth(msgspec.Struct, frozen=True, tag_field="op", tag="auth"):
    """Sign the connection in with a token; answered by ``welcome``, then the stream after ``resume_after``."""

    token: str
    device: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = "default"
    resume_after: Seq | None = None


class Call(msgspec.Struct, frozen=True, tag_field="op", tag="call"):
    """Ask an actor; the ``reply`` with the same ``id`` comes after the actor's change is committed."""

    id: Ref
    to: str
    type: str
    body: Any = None


class Command(msgspec.Struct, frozen=True, tag_field="op", tag="command"):
    """Run a REST route that is also a command (docs/protocol.md "Commands"); a ``reply`` with the same ``id``."""

    id: Ref
    name: str
    body: Any = None


class Ack(msgspec.Struct, frozen=True, tag_field="op", tag="ack"):
    """"I have everything up to ``seq``" (remembered per device)."""

    seq: Seq


class Resume(msgspec.Struct, frozen=True, tag_field="op", tag="resume"):
    """Send the stream again after ``after`` (default: the last ack)."""

    after: Seq | None = None


class Subscribe(msgspec.Struct, frozen=True, tag_field="op", tag="subscribe"):
    """Join a topic (``subscribed`` confirms)."""

    topic: Annotated[str, msgspec.Meta(min_length=1)]


class Unsubscribe(msgspec.Struct, frozen=True, tag_field="op", tag="unsubscribe"):
    """Leave a topic (``unsubscribed`` confirms)."""

    topic: Annotated[str, msgspec.Meta(min_length=1)]


class Publish(msgspec.Struct, frozen=True, tag_field="op", tag="publish"):
    """Publish to a topic; with an ``id`` a ``reply`` gives the subscriber count.

    ``id`` may be any value (it is echoed); ``coalesce`` counts only as a string, ``critical`` only as ``true``.
    """

    topic: str
    type: str
    body: Any = None
    id: Any = None
    coalesce: Any = None
    critical: Any = None


class Ping(msgspec.Struct, frozen=True, tag_field="op", tag="ping"):
    """Answered by ``pong`` with the same ``t``."""

    t: Any = None


class Pong(msgspec.Struct, frozen=True, tag_field="op", tag="pong"):
    """The answer to the server's ``ping``."""

    t: Any = None


ClientFrame = Auth | Call | Command | Ack | Resume | Subscribe | Unsubscribe | Publish | Ping | Pong
CLIENT_FRAMES: Final = (Auth, Call, Command, Ack, Resume, Subscribe, Unsubscribe, Publish, Ping, Pong)

# ---- frames from the server ----------------------------------------------------------------


class Welcome(msgspec.Struct, frozen=True, tag_field="op", tag="welcome"):
    """The connection is signed in: who, where the stream stands, the timers."""

    protocol: int
    account: dict[str, Any]
    stream: dict[str, int]
    heartbeat_ms: int
    idle_timeout_ms: int
    reconnect: dict[str, int]


class Reply(msgspec.Struct, frozen=True, tag_field="op", tag="reply"):
    """The answer to a ``call``, ``command`` or ``publish`` with an ``id``: ``result`` when ``ok``, else ``error``."""

    id: Any
    ok: bool
    #: a command's: the HTTP status its route answers with
    status: int | msgspec.UnsetType = msgspec.UNSET
    result: Any = msgspec.UNSET
    error: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class Deliver(msgspec.Struct, frozen=True, tag_field="op", tag="deliver"):
    """A message of the account's stream (built by ``carehub.channels.push.deliver_frame``)."""

    seq: int
    id: str
    type: str
    at: str
    body: Any


class Event(msgspec.Struct, frozen=True, tag_field="op", tag="event"):
    """A topic's event (built by the hub's topics, ``carehub.hub.topics``)."""

    topic: str
    type: str
    body: Any


class Error(msgspec.Struct, frozen=True, tag_field="op", tag="error"):
    """A frame was refused; the connection stays open unless the table in docs/protocol.md says otherwise."""

    code: str
    message: str
    #: the topic or call concerned
    ref: Any = msgspec.UNSET


class ServerPing(msgspec.Struct, frozen=True, tag_field="op", tag="ping"):
    """The heartbeat (sent by ``carehub.channels.push.PushChannel.watch``)."""

    t: Any


class ServerPong(msgspec.Struct, frozen=True, tag_field="op", tag="pong"):
    """The answer to a client's ``ping``."""

    t: Any


class Subscribed(msgspec.Struct, frozen=True, tag_field="op", tag="subscribed"):
    """``subscribe`` took effect."""

    topic: str


class Unsubscribed(msgspec.Struct, frozen=True, tag_field="op", tag="unsubscribed"):
    """``unsubscribe`` took effect."""

    topic: str


class Bye(msgspec.Struct, frozen=True, tag_field="op", tag="bye"):
    """The last frame before the server closes (on restart with its own ``reconnect_after_ms``)."""

    code: int
    reason: str
    reconnect_after_ms: int | msgspec.UnsetType = msgspec.UNSET
    at: str | msgspec.UnsetType = msgspec.UNSET


ServerFrame = (
    Welcome | Reply | Deliver | Event | Error | ServerPing | ServerPong | Subscribed | Unsubscribed | Bye
)
SERVER_FRAMES: Final = (Welcome, Reply, Deliver, Event, Error, ServerPing, ServerPong, Subscribed, Unsubscribed, Bye)


def wire(frame: ServerFrame) -> dict[str, Any]:
    """The mapping a push session encodes: ``op`` first, unset fields left out, values passed as they are."""
    out: dict[str, Any] = {"op": type(frame).__struct_config__.tag}
    for name in frame.__struct_fields__:
        value = getattr(frame, name)
        if value is not msgspec.UNSET:
            out[name] = value
    return out


# ---- decoding ------------------------------------------------------------------------------


class FrameError(Exception):
    """A frame refused with an ``error`` frame of this ``code`` (the connection stays open)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


OPS: Final = tuple(str(cls.__struct_config__.tag) for cls in CLIENT_FRAMES)
_OPS_TEXT = "auth, call, command, ack, resume, subscribe, unsubscribe, publish, ping, pong"
assert sorted(_OPS_TEXT.split(", ")) == sorted(OPS)


_JSON = msgspec.json.Decoder(ClientFrame)
_MSGPACK = msgspec.msgpack.Decoder(ClientFrame)


class FrameDecoder:
    """Decodes one connection's messages into :data:`ClientFrame` structs (one codec per connection)."""

    __slots__ = ("_decode", "_kind", "codec")

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self._decode: Callable[[Any], ClientFrame] = _JSON.decode if codec == "json" else _MSGPACK.decode
        #: the message type this codec's frames arrive as (text for JSON, binary for MessagePack)
        self._kind: type = str if codec == "json" else bytes

    def decode(self, message: str | bytes, signed_in: bool) -> ClientFrame:
        """The frame, or :class:`FrameError` saying what is wrong with it."""
        if type(message) is not self._kind:
            if self.codec == "json":
                raise FrameError("bad_frame", "this connection speaks JSON text frames; got a binary frame")
            raise FrameError("bad_frame", "this connection speaks MessagePack binary frames; got text")
        try:
            return self._decode(message)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            raise explain(message, self.codec, signed_in, err) from None


def explain(message: str | bytes, codec: str, signed_in: bool, err: Exception) -> FrameError:
    """Why a frame does not fit :data:`ClientFrame`, in the words clients have always been given.

    Read again as plain data and checked field by field in the order the handlers once did, so the
    code and message stay what they were (``not_authenticated`` before any field of a call, ...).
    """
    try:
        if codec == "json":
            frame = orjson.loads(message)
        else:
            frame = msgpack.unpackb(message, raw=False, strict_map_key=True)
    except (orjson.JSONDecodeError, ValueError, msgpack.UnpackException) as bad:
        return FrameError("bad_frame", f"frame is not valid {codec}: {bad}")
    if not isinstance(frame, dict):
        return FrameError("bad_frame", "a frame must be an object with an 'op' field")
    op = frame.get("op")
    if not isinstance(op, str):
        return FrameError("bad_frame", "a frame needs an 'op' string")
    if op not in OPS:
        return FrameError("unknown_op", f"unknown op {op!r}; ops are {_OPS_TEXT}")
    if op not in ("auth", "ping", "pong") and not signed_in:
        return FrameError("not_authenticated", f"send an auth frame before {op!r}")
    found = _field_error(op, frame, signed_in)
    return found or FrameError("bad_frame", f"{op}: {err}")


def _is_seq(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_ref(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def _field_error(op: str, frame: dict[str, Any], signed_in: bool) -> FrameError | None:
    def bad(message: str) -> FrameError:
        return FrameError("bad_frame", message)

    if op == "auth":
        if signed_in:
            return FrameError("already_authenticated", "this connection is already authenticated")
        device = frame.get("device", "default")
        if not isinstance(frame.get("token"), str):
            return bad("auth needs a 'token' string")
        if not isinstance(device, str) or not 1 <= len(device) <= 100:
            return bad("auth 'device' must be a string of 1-100 characters")
        if frame.get("resume_after") is not None and not _is_seq(frame["resume_after"]):
            return bad("auth 'resume_after' must be a sequence number >= 0")
    elif op == "resume":
        if frame.get("after") is not None and not _is_seq(frame["after"]):
            return bad("resume 'after' must be a sequence number >= 0")
    elif op == "ack":
        if not _is_seq(frame.get("seq")):
            return bad("ack needs 'seq', the highest sequence number received")
    elif op in ("call", "command"):
        if not _is_ref(frame.get("id")):
            return bad(f"{op} needs an 'id' (string or number) to match its reply")
        if op == "call" and not (isinstance(frame.get("to"), str) and isinstance(frame.get("type"), str)):
            return bad("call needs 'to' (an actor address) and 'type' (a message type)")
        if op == "command" and not isinstance(frame.get("name"), str):
            return bad("command needs a 'name' (see docs/protocol.md for the commands)")
    elif op in ("subscribe", "unsubscribe"):
        topic = frame.get("topic")
        if not isinstance(topic, str) or not topic:
            return bad(f"{op} needs a 'topic' string")
    elif op == "publish":
        if not (isinstance(frame.get("topic"), str) and isinstance(frame.get("type"), str)):
            return bad("publish needs 'topic' and 'type' strings")
    return None

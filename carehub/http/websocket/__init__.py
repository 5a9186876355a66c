"""CareHub's own server side of RFC 6455, one module per part (docs/gateway.md).

| module | part |
| --- | --- |
| ``handshake.py`` | the upgrade request, the 101 answer, refusals (``parse_upgrade``, ``HandshakeError``) |
| ``frames.py`` | frames in (``FrameReader``: masking, fragments, UTF-8, close codes), out (``frame``) |
| ``socket.py`` | ``WebSocket``: one connection; ``receive()``, ``serve_parked()``, queued writes, ``close()`` |
| ``flusher.py`` | ``Flusher``: one task writes every connection's queued frames |
| ``pacer.py`` | ``ReadPacer``: reader tasks woken in a burst read in short turns of the loop |
| ``poller.py`` | ``ReadPoller``: one task reads for every parked (signed-in) connection |

Why not Hypercorn for ``/ws`` (docs/benchmarks.md): through ASGI every frame to every connection
was one ``websocket.send`` message, Hypercorn's stream and protocol dispatch, a lock, a shielded
cancel scope and a wake-up of the connection's writer task, and each connection held four tasks
and the upgrade request's HTTP state. Here a connection is one task (parked while signed in) and a
few small objects; outgoing frames are queued on the connection and written by one ``Flusher``
task for the whole hub; only a connection whose socket buffer is full gets a task of its own until
it drains. ``tests/http/test_autobahn.py`` runs Autobahn|Testsuite cases 1-10 against this code.
Compression (permessage-deflate) is not offered.

The poller and a connection talk through ``WebSocket`` methods only (``fileno``, ``read_polled``,
``wake_parked``, ``silent_for``); parking (the pacer's queue, a parked reader) is Trio's
``ParkingLot``.
"""

from .flusher import Flusher
from .frames import (
    MAX_MESSAGE_BYTES,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    ProtocolError,
    close_frame,
    frame,
)
from .handshake import HandshakeError, Upgrade, accept_token, parse_upgrade
from .pacer import ReadPacer
from .poller import ReadPoller
from .socket import WebSocket

__all__ = [
    "MAX_MESSAGE_BYTES",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Flusher",
    "FrameReader",
    "HandshakeError",
    "ProtocolError",
    "ReadPacer",
    "ReadPoller",
    "Upgrade",
    "WebSocket",
    "accept_token",
    "close_frame",
    "frame",
    "parse_upgrade",
]

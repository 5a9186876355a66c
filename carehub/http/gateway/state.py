"""The gateway's own objects: its moving parts, its live connections and the ops figures, built once in ``app.py``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import trio

from carehub.channels.push import PushChannel, Session
from carehub.eventloop import Collector
from carehub.hub import Hub

from ..websocket import Flusher, ReadPacer, ReadPoller
from .streams import StreamOpener

if TYPE_CHECKING:
    from ..routing import Command
    from .connection import Connection


@dataclasses.dataclass
class GatewayStats:
    """Counters for ``/metrics`` and the ops page."""

    connections_opened: int = 0
    bad_frames: int = 0
    kicked_slow: int = 0


class Gateway:
    """The ``/ws`` gateway: the transport's shared parts, every live connection, the commands it runs.

    Built by :func:`carehub.app.open_app`, which also starts the flusher, pacer and poller (and
    ``carehub serve`` the collector). ``commands`` is filled by the router as routes that are also
    commands are declared (before the first connection).
    """

    def __init__(self, *, hub: Hub, push: PushChannel, flusher: Flusher, pacer: ReadPacer, poller: ReadPoller,
                 collector: Collector, streams: StreamOpener) -> None:
        self.hub = hub
        self.push = push
        #: reads where each signing-in connection's stream stands, for all signing in together (one task)
        self.streams = streams
        #: writes every connection's queued frames (one task)
        self.flusher = flusher
        #: holds reader tasks woken in a burst for later turns of the loop
        self.pacer = pacer
        #: reads for signed-in connections (one task)
        self.poller = poller
        #: Python's garbage collector at quiet moments (run by ``carehub serve`` only)
        self.collector = collector
        self.connections: dict[Session, Connection] = {}
        #: routes that are also commands on ``/ws``, by name
        self.commands: dict[str, Command] = {}
        self.stats = GatewayStats()
        #: set on shutdown: new connections are told to come back later
        self.draining = False
        self.ops = OpsBoard(self)

    def close_sessions(self, token_hashes: set[str], reason: str) -> None:
        """Close every connection opened with one of these (now revoked) tokens, with 4003."""
        from .connection import CLOSE_REVOKED

        for conn in list(self.connections.values()):
            if conn.principal is not None and conn.principal.token_hash in token_hashes:
                conn.kick(CLOSE_REVOKED, reason)

    def kick_slow(self, session: Session) -> None:
        """The push channel's slow-consumer rule fired for ``session``: close its connection with 4008."""
        from .connection import CLOSE_SLOW

        conn = self.connections.get(session)
        self.stats.kicked_slow += 1
        if conn is not None:
            conn.kick(CLOSE_SLOW, f"接收过慢, 请从 seq {session.acked_seq} 续传 (slow consumer)")
        else:
            session.close()

    async def drain(self) -> None:
        """Tell every client to come back later (each a different, jittered delay), then close."""
        from .connection import CLOSE_RESTART, bye_frame

        self.draining = True
        for conn in list(self.connections.values()):
            conn.close(CLOSE_RESTART, "server restarting", bye_frame("服务重启 (server restarting)"))
        with trio.move_on_after(3):
            while self.connections:
                await trio.sleep(0.05)


class OpsBoard:
    """The hub's figures for the ops dashboard (``GET /api/v1/ops/snapshot``, the ``ops`` topic)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        #: stored reminders and tells due now (read every 2 s by the app's maintenance task)
        self.reminders_due = 0

    def figures(self) -> dict[str, Any]:
        gateway = self._gateway
        hub, push = gateway.hub, gateway.push
        snap = hub.snapshot()
        snap["connections"] = len(push.sessions)
        snap["accounts_online"] = len(push.by_account)
        snap["topics"] = hub.topics.topic_count()
        snap["reminders_due"] = self.reminders_due
        snap["ws_bad_frames"] = gateway.stats.bad_frames
        snap["ws_kicked_slow"] = gateway.stats.kicked_slow
        snap["ws_sockets_full"] = gateway.flusher.full
        snap["pushed_total"] = push.pushed
        return snap

    def publish_now(self) -> None:
        """Push a fresh snapshot to the ``ops`` topic now (when anyone watches)."""
        topics = self._gateway.hub.topics
        if topics.subscriber_count("ops"):
            topics.publish("ops", "ops.snapshot", self.figures(), coalesce="snapshot")

    async def publish_every_second(self) -> None:
        """Push the dashboard figures to the ``ops`` topic once a second while anyone watches."""
        while True:
            await trio.sleep(1.0)
            self.publish_now()

"""WebSocket push: live connections per account and each connection's bounded send buffer.

Policy for a slow consumer (a phone on a bad network):

- The buffer holds at most ``limit`` frames.
- Low-priority frames (queue positions, dashboards, pings) with a ``coalesce`` key replace the
  one already waiting with the same key, so the phone gets the latest, not a backlog.
- When the buffer is full a low-priority frame is dropped; a critical one evicts the oldest
  low-priority frame; if there is none, the connection is marked stuck.
- A connection that stays stuck (or full) for ``stuck_seconds`` is closed with code 4008; the
  client resumes from its delivery stream, so nothing durable is lost.

Stream deliveries reach a connection in sequence order: an item that arrives ahead of a gap
(two commits finishing out of order) waits in a small reorder buffer; if the gap is not filled
quickly the missing items are read back from storage.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgpack
import orjson
import trio

from carehub.eventloop import loop_load
from carehub.hub import Outbound, Priority, StreamItem

CODECS = ("json", "msgpack")
#: While the hub's loop is busy (carehub.eventloop), the pass over every connection for heartbeats,
#: stuck consumers and stream gaps (~10 ms with 10,000 connections) runs at most this often, not every 0.25 s
BUSY_PASS_SECONDS = 2.0


class RawJSON:
    """A value that is already JSON (a stored message body): embedded as is, never re-parsed for JSON."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw


def _json_default(value: Any) -> Any:
    if isinstance(value, RawJSON):
        return orjson.Fragment(value.raw)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _msgpack_default(value: Any) -> Any:
    if isinstance(value, RawJSON):
        return orjson.loads(value.raw)
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_bytes(item: Outbound, codec: str) -> bytes:
    """The frame's payload in ``codec`` (the connection caches what it builds from it on the item)."""
    if codec == "json":
        return orjson.dumps(item.frame, default=_json_default)
    data: bytes = msgpack.packb(item.frame, use_bin_type=True, default=_msgpack_default)
    return data


def deliver_frame(item: StreamItem) -> Outbound:
    return Outbound(
        {
            "op": "deliver",
            "seq": item.seq,
            "id": item.msg_id,
            "type": item.type,
            "at": item.created_at.isoformat(),
            "body": RawJSON(item.body),
        }
    )


class Session:
    """One live connection's outgoing side."""

    def __init__(
        self, *, codec: str, limit: int, stuck_seconds: float, device: str = "", account_id: str | None = None
    ) -> None:
        self.codec = codec
        self.limit = limit
        self.stuck_seconds = stuck_seconds
        self.account_id = account_id
        self.device = device
        self.roles: frozenset[str] = frozenset()
        self._buffer: list[Outbound] = []
        self._waiting: dict[str, Outbound] = {}  # coalesce key -> frame in buffer
        #: called when a frame was queued or the session closed (the connection's writer takes them)
        self.notify: Callable[[], None] | None = None
        self.full_since: float | None = None
        self.stuck = False
        self.closed = False
        self.dropped = 0
        self.coalesced = 0
        # stream position
        self.streaming = False  # live pushes start after the first resume has caught up
        self.last_sent_seq = 0
        self.acked_seq = 0
        self.acked_saved = 0
        self._held: list[StreamItem] = []  # live items that arrived while catching up
        self._reorder: dict[int, StreamItem] = {}
        self.gap_since: float | None = None
        self.topics: set[str] = set()
        self.opened_at = time.monotonic()
        #: when the watch task pings this connection next (0: not yet seen by it)
        self.next_ping = 0.0

    # ---- the buffer ---------------------------------------------------------------------

    def offer(self, item: Outbound) -> None:
        if self.closed:
            return
        if item.coalesce is not None:
            waiting = self._waiting.get(item.coalesce)
            if waiting is not None:
                # keep its place in line, take the newer content
                waiting.frame = item.frame
                waiting.encoded = item.encoded
                self.coalesced += 1
                return
        if len(self._buffer) >= self.limit:
            if item.priority is Priority.LOW:
                self.dropped += 1
                self._mark_full()
                return
            if not self._evict_low():
                self.stuck = True
                self._mark_full()
                self._signal()
                return
        key = item.coalesce
        if key is not None:
            item = Outbound(item.frame, item.priority, key, item.encoded)
            self._waiting[key] = item
        self._buffer.append(item)
        self._signal()

    def _signal(self) -> None:
        if self.notify is not None:
            self.notify()

    def _evict_low(self) -> bool:
        for i, queued in enumerate(self._buffer):
            if queued.priority is Priority.LOW:
                del self._buffer[i]
                if queued.coalesce is not None:
                    self._waiting.pop(queued.coalesce, None)
                self.dropped += 1
                return True
        return False

    def _mark_full(self) -> None:
        if self.full_since is None:
            self.full_since = time.monotonic()

    @property
    def depth(self) -> int:
        return len(self._buffer)

    def has_room(self) -> bool:
        return len(self._buffer) < self.limit // 2

    def is_stuck(self, now: float) -> bool:
        """Stuck: a critical frame found no room, or the buffer stayed full too long."""
        if self.full_since is not None and len(self._buffer) < self.limit:
            self.full_since = None
        if self.stuck:
            return True
        return self.full_since is not None and now - self.full_since > self.stuck_seconds

    def take(self) -> list[Outbound]:
        """Every queued frame, in order (the connection writes them all at once)."""
        items = self._buffer
        if not items:
            return items
        self._buffer = []
        self._waiting.clear()
        return items

    def discard(self) -> None:
        """Drop what is queued (a connection closed for being too slow)."""
        self.take()

    def close(self) -> None:
        self.closed = True
        self._signal()

    # ---- the stream ---------------------------------------------------------------------

    def offer_stream(self, item: StreamItem) -> None:
        if not self.streaming:
            self._held.append(item)
            return
        if item.seq <= self.last_sent_seq:
            return  # already sent (a resume read it first)
        if item.seq != self.last_sent_seq + 1:
            self._reorder[item.seq] = item
            if self.gap_since is None:
                self.gap_since = time.monotonic()
            return
        self._send_stream(item)
        self._drain_reorder()

    def _send_stream(self, item: StreamItem) -> None:
        self.last_sent_seq = item.seq
        self.offer(deliver_frame(item))

    def _drain_reorder(self) -> None:
        while self._reorder:
            nxt = self._reorder.pop(self.last_sent_seq + 1, None)
            if nxt is None:
                return
            self._send_stream(nxt)
        self.gap_since = None

    def start_catch_up(self, after: int) -> None:
        self.streaming = False
        self._held = []
        self._reorder.clear()
        self.gap_since = None
        self.last_sent_seq = after

    def caught_up(self, backlog: Sequence[StreamItem]) -> None:
        """The stored backlog has been read; send it, then what arrived live meanwhile."""
        for item in backlog:
            if item.seq > self.last_sent_seq:
                self._send_stream(item)
        self.streaming = True
        held, self._held = self._held, []
        for item in sorted(held, key=lambda i: i.seq):
            self.offer_stream(item)

    def fill_gap(self, items: Sequence[StreamItem]) -> None:
        """Items read back from storage after a gap stayed open."""
        for item in items:
            if item.seq == self.last_sent_seq + 1:
                self._send_stream(item)
        self._drain_reorder()
        if not self._reorder:
            self.gap_since = None


class PushChannel:
    """Every live session by account: the hub's delivery sink."""

    def __init__(self) -> None:
        self.by_account: dict[str, set[Session]] = {}
        self.sessions: set[Session] = set()
        self.pushed = 0
        #: Latest ack per (account, device) seen on this node; storage has the durable copy.
        self._acks: dict[tuple[str, str], int] = {}

    def note_ack(self, session: Session) -> None:
        if session.account_id is None:
            return
        if len(self._acks) > 200_000:
            self._acks.clear()  # only a shortcut: storage still has each device's cursor
        key = (session.account_id, session.device)
        if session.acked_seq > self._acks.get(key, 0):
            self._acks[key] = session.acked_seq

    def acked(self, account_id: str, device: str) -> int:
        return self._acks.get((account_id, device), 0)

    def add(self, session: Session) -> None:
        self.sessions.add(session)

    def bind(self, session: Session, account_id: str) -> None:
        session.account_id = account_id
        self.by_account.setdefault(account_id, set()).add(session)

    def remove(self, session: Session) -> None:
        self.sessions.discard(session)
        if session.account_id is not None:
            group = self.by_account.get(session.account_id)
            if group is not None:
                group.discard(session)
                if not group:
                    del self.by_account[session.account_id]

    def delivered(self, items: Sequence[StreamItem]) -> None:
        for item in items:
            for session in self.by_account.get(item.account_id, ()):
                session.offer_stream(item)
                self.pushed += 1

    async def watch(
        self,
        *,
        heartbeat_seconds: float,
        read_gap: Callable[[Session], Awaitable[None]],
        kick: Callable[[Session], None],
        gap_wait_seconds: float = 0.5,
    ) -> None:
        """One task for all connections: heartbeats, stuck consumers, stream gaps.

        Each connection is pinged every ``heartbeat_seconds`` at a phase of its own (random when
        the task first sees it): 10,000 connections pinged in the same instant, and their 10,000
        pongs, held the hub up for ~3 s every heartbeat. While frames are queued the pass waits, at most
        ``BUSY_PASS_SECONDS``.
        """
        load = loop_load()
        last_pass = time.monotonic()
        async with trio.open_nursery() as nursery:
            while True:
                await trio.sleep(0.25)
                now = time.monotonic()
                if load.busy() and now - last_pass < BUSY_PASS_SECONDS:
                    continue  # frames are queued (a release): a pass over every connection can wait a little
                last_pass = now
                frame: Outbound | None = None
                for session in tuple(self.sessions):
                    # the attribute checks first: with 20,000 connections this loop runs 80,000 times a second
                    if (session.stuck or session.full_since is not None) and session.is_stuck(now):
                        kick(session)
                        continue
                    if session.next_ping == 0.0:
                        session.next_ping = now + random.uniform(0.0, heartbeat_seconds)
                    elif now >= session.next_ping:
                        session.next_ping = now + heartbeat_seconds
                        if frame is None:
                            frame = Outbound(
                                {"op": "ping", "t": dt.datetime.now(dt.UTC).isoformat()}, Priority.LOW, "\x00ping"
                            )
                        session.offer(frame)
                    if session.gap_since is not None and now - session.gap_since > gap_wait_seconds:
                        session.gap_since = now  # one read per wait period
                        nursery.start_soon(read_gap, session)

"""The send-buffer policy of one connection, as a table of cases (no I/O)."""

from __future__ import annotations

import datetime as dt
import functools

import trio

from carehub.channels.push import PushChannel, Session
from carehub.hub import Outbound, Priority, StreamItem


def position(n: int) -> Outbound:
    return Outbound({"op": "event", "type": "queue.position", "body": {"ahead": n}}, Priority.LOW, "queue/me")


def critical(n: int) -> Outbound:
    return Outbound({"op": "reply", "id": n})


def item(seq: int) -> StreamItem:
    return StreamItem("acct", seq, f"m{seq}", "t", b"{}", dt.datetime(2026, 11, 25, tzinfo=dt.UTC))


async def drain(session: Session) -> list[Outbound]:
    """What the connection's writer would take now, in order."""
    return session.take()


async def test_a_slow_phone_gets_the_latest_queue_position_not_a_backlog() -> None:
    session = Session(codec="json", limit=10, stuck_seconds=5)
    for ahead in (9, 8, 7, 6):
        session.offer(position(ahead))
    frames = await drain(session)
    assert [f.frame["body"]["ahead"] for f in frames] == [6]


async def test_low_priority_updates_are_dropped_before_anything_critical() -> None:
    session = Session(codec="json", limit=3, stuck_seconds=5)
    session.offer(Outbound({"op": "event", "n": 1}, Priority.LOW))
    session.offer(critical(1))
    session.offer(critical(2))
    session.offer(critical(3))  # evicts the low-priority event
    session.offer(Outbound({"op": "event", "n": 2}, Priority.LOW))  # no room: dropped
    assert [f.frame.get("id") for f in await drain(session)] == [1, 2, 3]
    assert session.dropped == 2
    assert not session.stuck


async def test_a_critical_frame_with_no_room_marks_the_connection_stuck() -> None:
    session = Session(codec="json", limit=2, stuck_seconds=5)
    for n in range(3):
        session.offer(critical(n))
    assert session.is_stuck(trio.current_time())


async def test_stream_items_arriving_out_of_order_go_out_in_order() -> None:
    session = Session(codec="json", limit=10, stuck_seconds=5)
    session.start_catch_up(0)
    session.caught_up([])
    session.offer_stream(item(2))
    assert session.depth == 0 and session.gap_since is not None
    session.offer_stream(item(1))
    session.offer_stream(item(1))  # a repeat is not sent twice
    assert [f.frame["seq"] for f in await drain(session)] == [1, 2]
    assert session.gap_since is None


async def test_live_items_that_arrive_during_catch_up_follow_the_backlog_without_repeats() -> None:
    session = Session(codec="json", limit=10, stuck_seconds=5)
    session.start_catch_up(3)
    session.offer_stream(item(6))  # committed while the backlog was being read
    session.offer_stream(item(5))
    session.caught_up([item(4), item(5)])
    assert [f.frame["seq"] for f in await drain(session)] == [4, 5, 6]


async def test_connections_are_pinged_at_phases_spread_over_the_heartbeat_not_all_at_once() -> None:
    """200 connections opened together: their pings come over the heartbeat period, one each."""
    push = PushChannel()
    sessions = [Session(codec="json", limit=10, stuck_seconds=60) for _ in range(200)]
    for session in sessions:
        push.add(session)
    first_ping: dict[int, float] = {}

    async def note_pings() -> None:
        while True:
            await trio.sleep(0.01)
            for i, session in enumerate(sessions):
                if i not in first_ping and session.depth:
                    first_ping[i] = trio.current_time()

    async def never(_: Session) -> None:
        pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(note_pings)
        nursery.start_soon(functools.partial(push.watch, heartbeat_seconds=2.0, read_gap=never, kick=lambda _: None))
        await trio.sleep(4.6)
        nursery.cancel_scope.cancel()
    pings = [[f.frame["op"] for f in await drain(s)] for s in sessions]
    assert all(p == ["ping"] for p in pings)  # every one pinged (an unread ping is replaced, not queued)
    times = sorted(first_ping.values())
    assert len(times) == 200 and times[-1] - times[0] > 1.0  # spread, not one burst

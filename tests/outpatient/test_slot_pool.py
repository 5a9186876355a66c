"""The slot pool's invariants under concurrency, quotas and holds (OUT-2, OUT-6, SCH-2)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import trio

from carehub.actors.slot_pool import Book, GetBooking, GetPool
from carehub.hub import Refusal

from ..servers import Server
from .helpers import beijing_now, open_session, plan


async def account(server: Server, login: str = "partner1") -> str:
    return str(await server.app.services.db.fetchval("SELECT id FROM accounts WHERE login = $1", login))


async def test_hundreds_of_concurrent_bookings_on_one_pool_take_exactly_the_free_slots(server: Server) -> None:
    """OUT-2: 300 patients race for 20 slots; exactly 20 succeed, the rest hear 'full', none twice."""
    day = beijing_now().date() + dt.timedelta(days=1)
    address = await open_session(server, "doctor1", plan(day, capacity=20))
    hub = server.app.services.hub
    partner = await account(server)
    booked: list[dict[str, object]] = []
    refused: list[str] = []

    async def one(i: int) -> None:
        try:
            booked.append(await hub.ask(address, Book(f"b{i:04d}", "am", f"P{i}", partner, "张*三", channel="partner")))
        except Refusal as err:
            refused.append(err.code)

    async with trio.open_nursery() as nursery:
        for i in range(300):
            nursery.start_soon(one, i)
    assert len(booked) == 20 and refused == ["full"] * 280
    assert sorted(int(str(b["slot_no"])) for b in booked) == list(range(20))
    rows = await server.app.services.db.fetchval("SELECT count(*) FROM bookings WHERE session_id LIKE $1", "%:am")
    assert rows == 20


async def test_a_channel_cannot_take_more_than_its_quota(server: Server) -> None:
    """SCH-2: kiosks may take 2 of the 10 slots; the third kiosk booking is refused, the app still books."""
    day = beijing_now().date() + dt.timedelta(days=1)
    address = await open_session(server, "doctor1", plan(day, capacity=10, quotas={"app": 8, "kiosk": 2}))
    hub = server.app.services.hub
    kiosk = await account(server)
    for i in range(2):
        await hub.ask(address, Book(f"k{i}", "am", f"P{i}", kiosk, "王*", channel="kiosk"))
    with pytest.raises(Refusal) as refused:
        await hub.ask(address, Book("k2", "am", "P2", kiosk, "王*", channel="kiosk"))
    assert refused.value.code == "full"
    await hub.ask(address, Book("a0", "am", "P3", kiosk, "李*", channel="app"))
    with pytest.raises(Refusal) as partner:
        await hub.ask(address, Book("p0", "am", "P4", kiosk, "赵*", channel="partner"))
    assert partner.value.code == "full"  # no partner quota at all in this rule


async def test_one_patient_cannot_hold_two_slots_with_the_same_doctor_on_one_day(server: Server) -> None:
    """SCH-2: the morning booking blocks an afternoon one with the same doctor."""
    day = beijing_now().date() + dt.timedelta(days=1)
    address = await open_session(server, "doctor1", plan(day))
    await open_session(server, "doctor1", plan(day, period="pm", start=dt.datetime.combine(
        day, dt.time(14, 0), dt.timezone(dt.timedelta(hours=8)))))
    hub = server.app.services.hub
    who = await account(server)
    await hub.ask(address, Book("x1", "am", "P1", who, "张*"))
    with pytest.raises(Refusal) as refused:
        await hub.ask(address, Book("x2", "pm", "P1", who, "张*"))
    assert refused.value.code == "duplicate_booking"


async def test_a_retried_booking_with_the_same_id_returns_the_same_slot(server: Server) -> None:
    day = beijing_now().date() + dt.timedelta(days=1)
    address = await open_session(server, "doctor1", plan(day))
    hub = server.app.services.hub
    who = await account(server)
    first = await hub.ask(address, Book("same", "am", "P1", who, "张*"))
    again = await hub.ask(address, Book("same", "am", "P1", who, "张*"))
    view = await hub.ask(address, GetPool())
    assert first == again and view["sessions"][0]["free"] == 9


async def test_an_unpaid_hold_is_released_when_its_reminder_fires(server: Server) -> None:
    """OUT-6: a held slot is free again after the hold time."""
    day = beijing_now().date() + dt.timedelta(days=1)
    address = await open_session(server, "doctor1", plan(day, capacity=1, fee_fen=1000, hold_seconds=1))
    hub = server.app.services.hub
    who = await account(server)
    held = await hub.ask(address, Book("h1", "am", "P1", who, "张*"))
    assert held["status"] == "held"
    with pytest.raises(Refusal):
        await hub.ask(address, Book("h2", "am", "P2", who, "王*"))
    with trio.fail_after(15):
        while (await hub.ask(address, GetPool()))["sessions"][0]["free"] == 0:
            await trio.sleep(0.2)
    again = await hub.ask(address, Book("h2", "am", "P2", who, "王*"))
    assert again["slot_no"] == 0


async def test_an_unpaid_hold_whose_time_passed_while_the_hub_was_down_is_released_on_restart(
    server_factory: Callable[..., Any],
) -> None:
    """OUT-6: the hold's reminder is durable: a hub stopped past the deadline frees the slot when it starts."""
    day = beijing_now().date() + dt.timedelta(days=1)
    async with server_factory() as srv:
        address = await open_session(srv, "doctor1", plan(day, capacity=1, fee_fen=1000, hold_seconds=2))
        who = await account(srv)
        held = await srv.app.services.hub.ask(address, Book("r1", "am", "P1", who, "张*"))
    assert held["status"] == "held"
    await trio.sleep(3)  # the hold ends while no hub runs
    async with server_factory() as srv:
        hub = srv.app.services.hub
        with trio.fail_after(15):
            while (await hub.ask(address, GetPool()))["sessions"][0]["free"] == 0:
                await trio.sleep(0.2)
        released = await hub.ask(address, GetBooking("r1"))
        again = await hub.ask(address, Book("r2", "am", "P2", who, "王*"))
    assert released["status"] == "released" and again["slot_no"] == 0

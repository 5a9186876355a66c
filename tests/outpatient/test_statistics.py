"""The admin console's statistics (SCH-8, STAT-1, STAT-4): what the routes count equals what is stored.

Bookings are made through the API where the journey matters (a booking, a cancellation, a paid
order); the attendance figures (seen, no-show) need visit days in the past, so those rows are
written into the slot pools' projection tables directly, as the pools would have.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest
import trio

from carehub.http.rest.statistics import BookingStatisticsView, PaymentStatisticsView, SessionStatisticsView
from carehub.storage.db import Database

from ..servers import Server
from .conftest import Hospital
from .helpers import beijing_now, book, open_session, plan

STATS = "/api/v1/admin/statistics"


async def stats(server: Server, what: str, **query: str) -> Any:
    async with server.http(await server.token("admin")) as http:
        response = await http.get(f"{STATS}/{what}", params=query)
    assert response.status_code == 200, response.text
    shape = {"bookings": BookingStatisticsView, "sessions": SessionStatisticsView, "payments": PaymentStatisticsView}
    msgspec.json.decode(response.content, type=shape[what])  # the declared answer, exactly
    return response.json()


def by_key(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in answer["rows"]}


async def test_bookings_made_through_the_api_are_counted_by_doctor_department_channel_and_day(
    server: Server,
) -> None:
    day = beijing_now().date() + dt.timedelta(days=1)
    await open_session(server, "doctor1", plan(day))
    await open_session(server, "doctor3", msgspec.structs.replace(plan(day), department_id="resp"))
    made = [await book(server, p, d, day) for p, d in
            (("patient1", "doctor1"), ("patient2", "doctor1"), ("patient3", "doctor3"))]
    assert all(r.status_code == 201 for r in made), [r.text for r in made]
    async with server.http(await server.token("patient2")) as http:
        cancel = await http.post(f"/api/v1/me/bookings/{made[1].json()['booking_id']}/cancel", json={})
        assert cancel.status_code == 200, cancel.text
    month = day.isoformat()[:7]
    doctor1, doctor3 = await server.account_id("doctor1"), await server.account_id("doctor3")

    doctors = by_key(await stats(server, "bookings", by="doctor", **{"from": month, "to": month}))
    assert doctors[doctor1]["name"] == "李建国"
    assert (doctors[doctor1]["bookings"], doctors[doctor1]["cancelled"]) == (2, 1)
    assert (doctors[doctor3]["bookings"], doctors[doctor3]["cancelled"]) == (1, 0)
    departments = by_key(await stats(server, "bookings", by="department", **{"from": month, "to": month}))
    assert departments["cardio"]["name"] == "心血管内科" and departments["cardio"]["bookings"] == 2
    assert departments["resp"]["bookings"] == 1
    channels = await stats(server, "bookings", by="channel", **{"from": month, "to": month})
    assert [(r["key"], r["bookings"]) for r in channels["rows"]] == [("app", 3), ("kiosk", 0), ("partner", 0)]
    days = await stats(server, "bookings", by="day", **{"from": month, "to": month})
    assert by_key(days)[day.isoformat()]["bookings"] == 3 and days["total"]["bookings"] == 3
    # the filters: one doctor, one department
    one = await stats(server, "bookings", by="day", doctor=doctor3, **{"from": month, "to": month})
    assert one["total"]["bookings"] == 1
    cardio = await stats(server, "bookings", by="doctor", department="cardio", **{"from": month, "to": month})
    assert [r["key"] for r in cardio["rows"]] == [doctor1]
    sessions = await stats(server, "sessions", **{"from": month, "to": month})
    assert {r["doctor_id"]: r["sessions"] for r in sessions["rows"]} == {doctor1: 1, doctor3: 1}


async def _put_bookings(db: Database, rows: list[tuple[str, str, str, str, dt.date, str]]) -> None:
    """Bookings (id, doctor, department, channel, day, status) as a slot pool would have projected them."""
    now = dt.datetime.now(dt.UTC)
    for booking_id, doctor, department, channel, day, status in rows:
        await db.execute(
            "INSERT INTO bookings (id, session_id, doctor_id, department_id, day, slot_no, slot_at, patient_id,"
            " account_id, channel, status, fee_fen, created_at, updated_at) VALUES"
            " ($1, $2, $3, $4, $5, 0, $6, 'p', 'a', $7, $8, 0, $6, $6)",
            booking_id, f"{doctor}:{day}:am", doctor, department, day, now, channel, status)


async def test_attendance_and_no_show_rate_by_day_and_month_with_every_day_of_the_range(server: Server) -> None:
    db = server.app.services.db  # the hub's own pool (a second asyncio loop beside the hub's is not safe)
    d = dt.date(2025, 3, 10)
    await _put_bookings(db, [
        ("b1", "doc-a", "cardio", "app", d, "seen"),
        ("b2", "doc-a", "cardio", "app", d, "checked_in"),
        ("b3", "doc-a", "cardio", "kiosk", d, "no_show"),
        ("b4", "doc-b", "resp", "partner", d, "cancelled"),
        ("b5", "doc-b", "resp", "app", d, "released"),  # an unpaid hold that expired: not a booking
        ("b6", "doc-b", "resp", "app", dt.date(2025, 4, 2), "no_show"),
    ])
    march = await stats(server, "bookings", by="day", **{"from": "2025-03", "to": "2025-03"})
    assert len(march["rows"]) == 31 and march["from"] == "2025-03-01" and march["to"] == "2025-03-31"
    tenth = by_key(march)["2025-03-10"]
    assert (tenth["bookings"], tenth["cancelled"], tenth["attended"], tenth["no_show"]) == (4, 1, 2, 1)
    assert tenth["no_show_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert by_key(march)["2025-03-11"] == {"key": "2025-03-11", "name": None, "bookings": 0, "cancelled": 0,
                                           "attended": 0, "no_show": 0, "no_show_rate": None}
    months = await stats(server, "bookings", by="month", **{"from": "2025-02", "to": "2025-04"})
    assert [(r["key"], r["bookings"], r["no_show"]) for r in months["rows"]] == [
        ("2025-02", 0, 0), ("2025-03", 4, 1), ("2025-04", 1, 1)]
    assert months["total"]["no_show_rate"] == pytest.approx(2 / 4)
    kiosk = await stats(server, "bookings", by="channel", channel="kiosk", **{"from": "2025-03", "to": "2025-04"})
    assert [(r["key"], r["no_show"]) for r in kiosk["rows"]] == [("kiosk", 1)]
    resp = await stats(server, "bookings", by="doctor", department="resp", **{"from": "2025-03", "to": "2025-04"})
    assert [(r["key"], r["bookings"], r["cancelled"], r["no_show"]) for r in resp["rows"]] == [("doc-b", 2, 1, 1)]
    # a range with nothing in it: zeros, not an error
    empty = await stats(server, "bookings", by="doctor", **{"from": "2024-01", "to": "2024-12"})
    assert empty["rows"] == [] and empty["total"]["bookings"] == 0 and empty["total"]["no_show_rate"] is None


async def test_sessions_per_doctor_count_held_and_cancelled_sessions_apart(server: Server) -> None:
    db = server.app.services.db
    start = dt.datetime(2025, 5, 6, 0, 0, tzinfo=dt.UTC)
    for sid, doctor, department, day, status in (
        ("s1", "doc-a", "cardio", dt.date(2025, 5, 6), "open"),
        ("s2", "doc-a", "cardio", dt.date(2025, 5, 7), "open"),
        ("s3", "doc-a", "cardio", dt.date(2025, 5, 8), "cancelled"),
        ("s4", "doc-b", "resp", dt.date(2025, 5, 8), "open"),
        ("s5", "doc-b", "resp", dt.date(2025, 6, 1), "open"),
    ):
        await db.execute(
            "INSERT INTO clinic_sessions (id, doctor_id, department_id, day, period, room, starts_at, ends_at,"
            " slot_minutes, capacity, booked, fee_fen, opens_at, status) VALUES"
            " ($1, $2, $3, $4, 'am', 'R', $5, $5, 10, 10, 0, 0, $5, $6)", sid, doctor, department, day, start, status)
    may = await stats(server, "sessions", **{"from": "2025-05", "to": "2025-05"})
    assert [(r["doctor_id"], r["department_name"], r["sessions"], r["cancelled"]) for r in may["rows"]] == [
        ("doc-a", "心血管内科", 2, 1), ("doc-b", "呼吸与危重症医学科", 1, 0)]
    assert may["total"] == {"sessions": 3, "cancelled": 1}
    resp = await stats(server, "sessions", department="resp", **{"from": "2025-05", "to": "2025-06"})
    assert [(r["doctor_id"], r["sessions"]) for r in resp["rows"]] == [("doc-b", 2)]


async def test_a_paid_order_is_counted_by_its_method_and_its_bookings_department(hospital: Hospital) -> None:
    server = hospital.server
    day = beijing_now().date() + dt.timedelta(days=1)
    await open_session(server, "doctor1", plan(day, fee_fen=1500))
    booked = await book(server, "patient1", "doctor1", day)
    assert booked.status_code == 201, booked.text
    booking_id = booked.json()["booking_id"]
    async with server.http(await server.token("patient1")) as http:
        started = await http.post(f"/api/v1/me/bookings/{booking_id}/pay", json={"method": "self"})
        assert started.status_code == 200, started.text
        month = day.isoformat()[:7]
        before = await stats(server, "payments", **{"from": month, "to": month})
        assert before["total"]["orders"] == 0  # created, not paid: not counted
        async with hospital.sim() as sim:
            await sim.post(f"/_sim/orders/{started.json()['order']['out_trade_no']}/pay", json={})
        with trio.fail_after(15):
            while (await http.get(f"/api/v1/me/bookings/{booking_id}")).json()["status"] != "booked":
                await trio.sleep(0.1)
    # the slot pool writes the booking's day, doctor, department and channel with its order
    row = await server.app.services.db.fetchrow(
        "SELECT day, doctor_id, department_id, channel FROM payment_orders WHERE booking_id = $1", booking_id)
    assert dict(row) == {"day": day, "doctor_id": await server.account_id("doctor1"), "department_id": "cardio",
                         "channel": "app"}
    paid = await stats(server, "payments", **{"from": month, "to": month})
    assert paid["rows"][0] == {"method": "self", "orders": 1, "total_fen": 1500, "insurance_fen": 0, "cash_fen": 1500,
                               "refunded_fen": 0, "net_fen": 1500}
    assert [r["method"] for r in paid["rows"]] == ["self", "insurance", "mixed"]
    other = await stats(server, "payments", department="resp", **{"from": month, "to": month})
    assert other["total"]["orders"] == 0
    app = await stats(server, "payments", channel="app", **{"from": month, "to": month})
    assert app["total"]["net_fen"] == 1500


@pytest.mark.parametrize(("query", "status"), [
    ({"from": "2025-13"}, 422),
    ({"from": "25-01"}, 422),
    ({"from": "2025-06", "to": "2025-05"}, 422),
    ({"from": "2023-01", "to": "2025-01"}, 422),  # 25 months
    ({"channel": "fax"}, 422),
    ({"by": "week"}, 422),
    ({"department": "x' OR 1=1 --"}, 422),
])
async def test_a_question_that_cannot_be_answered_is_refused_in_chinese(
    server: Server, query: dict[str, str], status: int,
) -> None:
    async with server.http(await server.token("admin")) as http:
        response = await http.get(f"{STATS}/bookings", params=query)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid" and any("\u4e00" <= c <= "\u9fff" for c in error["message"])


async def test_statistics_are_for_staff_who_may_see_booking_records(server: Server) -> None:
    async with server.http() as anonymous:
        assert (await anonymous.get(f"{STATS}/bookings")).status_code == 401
    for what in ("bookings", "sessions", "payments"):
        async with server.http(await server.token("patient1")) as http:
            assert (await http.get(f"{STATS}/{what}")).status_code == 403
    # the default range is the current month (Asia/Shanghai)
    answer = await stats(server, "bookings")
    assert answer["from"] == beijing_now().date().replace(day=1).isoformat() and answer["by"] == "day"

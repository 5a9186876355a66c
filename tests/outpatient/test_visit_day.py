"""Visit day: booking over HTTP, check-in by QR, the waiting queue and its live positions (OUT-8, OUT-11, OUT-12)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import trio

from carehub.actors.slot_pool import BEIJING, session_id
from carehub.bots.client import CallFailed, connect

from ..servers import Server
from .helpers import beijing_now, book, open_session, plan, self_patient


def today_start(minutes_ahead: int) -> dt.datetime:
    start = (beijing_now() + dt.timedelta(minutes=minutes_ahead)).replace(second=0, microsecond=0)
    if start.date() != beijing_now().date():
        pytest.skip("too close to midnight in Beijing for a same-day session")
    return start


async def booked_today(
    server: Server, logins: list[str], *, minutes_ahead: int = 5
) -> tuple[str, list[dict[str, Any]]]:
    start = today_start(minutes_ahead)
    await open_session(server, "doctor1", plan(start.date(), period="night", start=start, capacity=20))
    bookings = []
    for login in logins:
        response = await book(server, login, "doctor1", start.date(), "night")
        assert response.status_code == 201, response.text
        bookings.append(response.json())
    return session_id(await server.account_id("doctor1"), start.date(), "night"), bookings


async def check_in(server: Server, login: str, booking_id: str) -> Any:
    async with server.http(await server.token(login)) as http:
        code = (await http.get(f"/api/v1/me/bookings/{booking_id}")).json()["visit_code"]
        return await http.post(f"/api/v1/me/bookings/{booking_id}/check-in", json={"code": code})


async def test_a_patient_cannot_book_twice_with_the_same_doctor(server: Server) -> None:
    """SCH-2 over HTTP: the second booking is a 409 with the reason."""
    day = beijing_now().date() + dt.timedelta(days=2)
    await open_session(server, "doctor1", plan(day))
    first = await book(server, "patient1", "doctor1", day)
    second = await book(server, "patient1", "doctor1", day)
    assert first.status_code == 201 and second.status_code == 409
    assert second.json()["error"]["code"] == "duplicate_booking" and "重复" in second.json()["error"]["message"]


async def test_checking_in_inside_the_window_joins_the_queue_and_twice_is_harmless(server: Server) -> None:
    """OUT-11: the signed visit code checks the patient in; a second scan changes nothing."""
    session, (booking,) = await booked_today(server, ["patient1"])
    first = await check_in(server, "patient1", booking["booking_id"])
    second = await check_in(server, "patient1", booking["booking_id"])
    assert first.status_code == 200 and first.json()["status"] == "checked_in"
    assert second.status_code == 200 and second.json()["status"] == "checked_in"
    async with server.http(await server.token("patient1")) as http:
        position = (await http.get(f"/api/v1/me/bookings/{booking['booking_id']}/queue")).json()
    assert position["status"] == "waiting" and position["position"] == 1 and position["topic"] == f"queue/{session}"


async def test_checking_in_outside_the_window_is_refused(server: Server) -> None:
    """OUT-11: three hours before the slot the code is refused with the window's times."""
    _, (booking,) = await booked_today(server, ["patient1"], minutes_ahead=180)
    response = await check_in(server, "patient1", booking["booking_id"])
    assert response.status_code == 409 and response.json()["error"]["code"] == "outside_window"


async def test_a_forged_visit_code_is_refused(server: Server) -> None:
    _, (booking,) = await booked_today(server, ["patient1"])
    async with server.http(await server.token("patient1")) as http:
        code = (await http.get(f"/api/v1/me/bookings/{booking['booking_id']}")).json()["visit_code"]
        forged = code[:-3] + ("AAA" if not code.endswith("AAA") else "BBB")
        response = await http.post(f"/api/v1/me/bookings/{booking['booking_id']}/check-in", json={"code": forged})
    assert response.status_code == 422 and response.json()["error"]["code"] == "bad_code"


async def test_queue_order_after_skip_and_recall(server: Server) -> None:
    """OUT-12: a skipped patient moves back behind the next ones; a recall calls them at once."""
    logins = ["patient1", "patient2", "patient3", "patient4"]
    _, bookings = await booked_today(server, logins)
    ids = [b["booking_id"] for b in bookings]
    for login, b in zip(logins, bookings, strict=True):
        assert (await check_in(server, login, b["booking_id"])).status_code == 200
    async with server.http(await server.token("doctor1")) as doctor:
        called = (await doctor.post("/api/v1/doctor/queue/night/next")).json()
        assert called["calling"]["booking_id"] == ids[0]
        skipped = (await doctor.post("/api/v1/doctor/queue/night/skip")).json()
        assert [w["booking_id"] for w in skipped["waiting"]] == [ids[1], ids[2], ids[3], ids[0]]
        recalled = (await doctor.post("/api/v1/doctor/queue/night/recall", json={"booking_id": ids[0]})).json()
        assert recalled["calling"]["booking_id"] == ids[0]
        assert [w["booking_id"] for w in recalled["waiting"]] == [ids[1], ids[2], ids[3]]
        nxt = (await doctor.post("/api/v1/doctor/queue/night/next")).json()
    assert nxt["calling"]["booking_id"] == ids[1] and nxt["seen"] == 1


async def test_waiting_patients_see_their_new_position_over_the_websocket(server: Server) -> None:
    """OUT-12: after a call, every waiting patient's socket gets the new positions."""
    logins = ["patient1", "patient2", "patient3"]
    session, bookings = await booked_today(server, logins)
    for login, b in zip(logins, bookings, strict=True):
        await check_in(server, login, b["booking_id"])
    async with connect(server.base, await server.token("patient3")) as ws:
        await ws.subscribe(f"queue/{session}")
        assert (await ws.next_event())["op"] == "subscribed"
        async with server.http(await server.token("doctor1")) as doctor:
            assert (await doctor.post("/api/v1/doctor/queue/night/next")).status_code == 200
        with trio.fail_after(5):
            while True:
                event = await ws.next_event()
                positions = event["body"]["positions"]
                if event["type"] == "queue.positions" and event["body"]["calling"]:
                    break
    mine = positions[bookings[2]["booking_id"]]
    assert mine["position"] == 2 and bookings[0]["booking_id"] not in positions


async def test_the_called_patient_gets_a_durable_notice_and_the_hall_screen_shows_the_call(server: Server) -> None:
    """MSG-7 / OUT-12: 'please come in' goes to the patient's stream; the display feed lists the call."""
    _, (booking,) = await booked_today(server, ["patient2"])
    await check_in(server, "patient2", booking["booking_id"])
    async with server.http(await server.token("doctor1")) as doctor:
        await doctor.post("/api/v1/doctor/queue/night/next")
    async with server.http(await server.token("patient2")) as http:
        stream = (await http.get("/api/v1/me/stream")).json()
        feed = (await http.get("/api/v1/display/cardio/calls")).json()
    types = [item["type"] for item in stream["items"]]
    assert "queue.called" in types
    assert feed["calls"][0]["room"] == "心内科3诊室" and "*" in feed["calls"][0]["label"]
    # ... and it is a notice in the inbox, with a deep link to the booking and the department for NAV-2
    (called,) = await server.notices("patient2", "queue.called")
    assert "心内科3诊室" in called["body"] and called["link"].startswith(f"/h5/bookings/{booking['booking_id']}")
    assert called["nav"] == "https://nav.example.cn/hospital/route?to=cardio"  # NAV-2, CAREHUB_NAV_URL


async def test_patients_near_their_turn_get_a_notice_once(server: Server) -> None:
    """MSG-7: the first three waiting are told they are near their turn, in the inbox and on their channels,
    and a later move of the line does not tell them again."""
    logins = ["patient1", "patient2", "patient3", "patient4"]
    _, bookings = await booked_today(server, logins)
    for login, b in zip(logins, bookings, strict=True):
        await check_in(server, login, b["booking_id"])
    for login in logins[:3]:
        (near,) = await server.notices(login, "queue.near")
        assert "前面还有" in near["body"] and "心内科3诊室" in near["body"]
    async with server.http(await server.token("doctor1")) as doctor:
        assert (await doctor.post("/api/v1/doctor/queue/night/next")).status_code == 200
    (fourth,) = await server.notices("patient4", "queue.near")  # now third in line
    await trio.sleep(0.5)
    for login in logins[1:3]:
        assert len(await server.notices(login, "queue.near")) == 1
    assert "前面还有2位" in fourth["body"]


async def test_the_visit_assistant_shows_the_current_step(server: Server) -> None:
    """OUT-8: booked (free clinic) -> paid step; after check-in -> checked_in."""
    _, (booking,) = await booked_today(server, ["patient1"])
    async with server.http(await server.token("patient1")) as http:
        before = (await http.get("/api/v1/me/visits/today")).json()["visits"]
        await check_in(server, "patient1", booking["booking_id"])
        after = (await http.get("/api/v1/me/visits/today")).json()["visits"]
    assert [v["current"] for v in before] == ["paid"] and [v["current"] for v in after] == ["checked_in"]
    assert dt.datetime.fromisoformat(after[0]["slot_at"]).astimezone(BEIJING).date() == beijing_now().date()


async def test_a_booking_with_a_malformed_patient_id_is_refused_with_a_message(server: Server) -> None:
    async with server.http(await server.token("patient1")) as http:
        response = await http.post("/api/v1/me/bookings", json={
            "patient_id": "\u0000", "doctor_id": "x", "day": "2030-01-01", "period": "am"})
    assert response.status_code == 422 and response.json()["error"]["message"]


async def test_a_booking_sent_over_the_websocket_is_made_like_one_sent_over_http(server: Server) -> None:
    """OUT-2 on /ws: the booking command answers 201 with the booking, which the booking list then shows."""
    day = beijing_now().date() + dt.timedelta(days=2)
    await open_session(server, "doctor1", plan(day))
    token = await server.token("patient2")
    async with connect(server.base, token) as client:
        _, listed = await client.command("patients.list")
        patient = next(p["id"] for p in listed["patients"] if p["relation"] == "self")
        status, booking = await client.command("booking.create", {
            "patient_id": patient, "doctor_id": await server.account_id("doctor1"), "day": day.isoformat(),
            "period": "am"})
    async with server.http(token) as http:
        mine = (await http.get("/api/v1/me/bookings")).json()["bookings"]
    assert status == 201 and booking["status"] == "booked"  # a free session: booked at once
    assert [b["booking_id"] for b in mine] == [booking["booking_id"]]


async def test_once_a_session_is_full_a_booking_over_the_websocket_is_told_so_as_over_http(server: Server) -> None:
    """OUT-2 at a release: the sold-out answer on /ws (given at once, from the board) is the one HTTP gives."""
    day = beijing_now().date() + dt.timedelta(days=2)
    await open_session(server, "doctor1", plan(day, capacity=1))
    first = await book(server, "patient1", "doctor1", day)
    over_http = await book(server, "patient2", "doctor1", day)  # the pool answers "full": the board learns it
    patient = await self_patient(server, "patient3")
    async with connect(server.base, await server.token("patient3")) as client:
        with pytest.raises(CallFailed) as over_ws:
            await client.command("booking.create", {
                "patient_id": patient, "doctor_id": await server.account_id("doctor1"), "day": day.isoformat(),
                "period": "am"})
    assert first.status_code == 201
    error = over_http.json()["error"]
    assert (over_http.status_code, error["code"]) == (409, "full")
    assert (over_ws.value.status, over_ws.value.code, over_ws.value.message) == (409, "full", error["message"])


async def test_a_second_booking_over_the_websocket_is_refused_with_the_reason_and_status(server: Server) -> None:
    """SCH-2 on /ws: the same refusal as over HTTP, with its status."""
    day = beijing_now().date() + dt.timedelta(days=2)
    await open_session(server, "doctor1", plan(day))
    first = await book(server, "patient1", "doctor1", day)
    async with connect(server.base, await server.token("patient1")) as client:
        with pytest.raises(CallFailed) as refused:
            await client.command("booking.create", {
                "patient_id": first.json()["patient_id"], "doctor_id": await server.account_id("doctor1"),
                "day": day.isoformat(), "period": "am"})
    assert first.status_code == 201
    assert (refused.value.code, refused.value.status) == ("duplicate_booking", 409) and "重复" in refused.value.message


@pytest.mark.parametrize("via", ["ws", "http"])
async def test_a_burst_of_bookings_beyond_the_pool_gate_is_answered_request_by_request(
    server: Server, via: str
) -> None:
    """OUT-2 at a release: 320 requests at one pool of 2 slots (five times its gate of 64), as booking frames
    on /ws (queued without a task) or HTTP requests (parked tasks): exactly 2 are booked and every other
    request is answered, "full" or "already booked", none left waiting."""
    day = beijing_now().date() + dt.timedelta(days=3)
    await open_session(server, "doctor1", plan(day, capacity=2))
    doctor = await server.account_id("doctor1")
    answers: list[str] = []

    async def device(login: str, patient: str) -> None:
        body = {"patient_id": patient, "doctor_id": doctor, "day": day.isoformat(), "period": "am"}
        token = await server.token(login)

        async def over_ws(client: Any) -> None:
            try:
                status, _ = await client.command("booking.create", body)
                answers.append(str(status))
            except CallFailed as err:
                answers.append(err.code)

        async def over_http(http: Any) -> None:
            response = await http.post("/api/v1/me/bookings", json=body)
            created = response.status_code == 201
            answers.append("201" if created else response.json()["error"]["code"])

        async with connect(server.base, token) if via == "ws" else server.http(token) as conn:
            async with trio.open_nursery() as nursery:
                for _ in range(16):  # the most one /ws connection may have in flight
                    nursery.start_soon(over_ws if via == "ws" else over_http, conn)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for login in ("patient1", "patient2", "patient3", "patient4"):
                patient = await self_patient(server, login)
                for _ in range(5):  # five devices of each family
                    nursery.start_soon(device, login, patient)
    held = await server.app.services.db.fetchval(
        "SELECT count(*) FROM bookings WHERE doctor_id = $1 AND day = $2 AND status IN ('held', 'booked')", doctor, day)
    assert len(answers) == 320 and answers.count("201") == 2 == held
    assert set(answers) - {"201"} <= {"full", "duplicate_booking"} and "full" in answers

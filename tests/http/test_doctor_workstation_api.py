"""The doctor workstation's own reads and the hall screen's long poll (DOC-1, DOC-27, OUT-12; issue 17).

``GET /api/v1/doctor/sessions`` lists the doctor's open sessions; ``GET /api/v1/doctor/waiting/<period>``
is the queue with each patient's masked name, sex and age; ``GET /api/v1/display/<department>/calls/wait``
answers a hall screen as soon as a call newer than ``after`` is made.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import trio

from ..directory.test_declared_answers import declared, exactly
from ..outpatient.helpers import beijing_now, book, open_session, plan
from ..servers import Server


async def checked_in_today(server: Server, logins: list[str]) -> dt.date:
    start = (beijing_now() + dt.timedelta(minutes=5)).replace(second=0, microsecond=0)
    if start.date() != beijing_now().date():
        pytest.skip("too close to midnight in Beijing for a same-day session")
    await open_session(server, "doctor1", plan(start.date(), period="night", start=start, capacity=20))
    for login in logins:
        booked = await book(server, login, "doctor1", start.date(), "night")
        assert booked.status_code == 201, booked.text
        booking_id = booked.json()["booking_id"]
        async with server.http(await server.token(login)) as http:
            code = (await http.get(f"/api/v1/me/bookings/{booking_id}")).json()["visit_code"]
            checked = await http.post(f"/api/v1/me/bookings/{booking_id}/check-in", json={"code": code})
            assert checked.status_code == 200, checked.text
    return start.date()


async def test_the_doctor_sees_own_sessions_and_the_waiting_list_with_sex_and_age(server: Server) -> None:
    day = await checked_in_today(server, ["patient1", "patient4"])
    async with server.http(await server.token("doctor1")) as http:
        sessions = (await http.get("/api/v1/doctor/sessions")).json()["sessions"]
        line = await http.get("/api/v1/doctor/waiting/night")
    doctor = await server.account_id("doctor1")
    assert f"{doctor}:{day.isoformat()}:night" in {s["session_id"] for s in sessions}
    assert line.status_code == 200, line.text
    view: dict[str, Any] = line.json()
    assert view["topic"] == f"queue/{doctor}:{day.isoformat()}:night"
    people = {w["label"]: (w["sex"], w["age"]) for w in view["waiting"]}
    # 张三 born 1980-01-01 (ID 110101198001010109), 赵六 born 1955-04-04: masked names only
    assert set(people) == {"张*", "赵*"}, people
    assert people["张*"][0] == "女" and people["赵*"][0] == "女", people  # even 17th digits of their ID numbers
    assert people["张*"][1] == day.year - 1980 - (0 if (day.month, day.day) >= (1, 1) else 1)
    assert people["赵*"][1] == day.year - 1955 - (0 if (day.month, day.day) >= (4, 4) else 1)
    assert "张三" not in line.text and "赵六" not in line.text


async def test_only_doctors_read_a_waiting_list_and_bad_input_is_a_4xx_in_chinese(server: Server) -> None:
    async with server.http(await server.token("patient1")) as http:
        refused = await http.get("/api/v1/doctor/waiting/am")
    assert refused.status_code == 403
    async with server.http(await server.token("doctor2")) as http:
        odd = await http.get("/api/v1/doctor/waiting/x:y")
        bad_day = await http.get("/api/v1/doctor/waiting/am", params={"day": "someday"})
        many = await http.get("/api/v1/doctor/sessions", params={"days": "999"})
    assert odd.status_code == 404 and "时段" in odd.json()["error"]["message"]
    assert bad_day.status_code == 400 and "日期" in bad_day.json()["error"]["message"]
    assert many.status_code == 400


async def test_a_waiting_hall_screen_is_answered_as_soon_as_the_doctor_calls(server: Server) -> None:
    await checked_in_today(server, ["patient1", "patient4"])
    async with server.http() as screen:
        first = (await screen.get("/api/v1/display/cardio/calls/wait")).json()
        assert first["calls"] == []
        after = dt.datetime.now(dt.UTC).isoformat()
        answer: dict[str, Any] = {}

        async def wait() -> None:
            got = await screen.get("/api/v1/display/cardio/calls/wait", params={"after": after, "wait": 20})
            answer.update(got.json(), at=trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.sleep(1.0)
            assert not answer, "nothing newer yet: the screen waits"
            async with server.http(await server.token("doctor1")) as http:
                called = await http.post("/api/v1/doctor/queue/night/next")
                assert called.status_code == 200, called.text
            pressed = trio.current_time()
    assert answer["calls"][0]["label"] == "张*" and "诊室" in answer["calls"][0]["room"]
    assert answer["rooms"] == [{"room": "心内科3诊室", "doctor_name": "李建国", "calling": "张*", "next": ["赵*"],
                                "waiting": 1}]
    assert answer["at"] - pressed < 1.0


async def test_a_bad_after_is_a_400_in_chinese(server: Server) -> None:
    async with server.http() as screen:
        bad = await screen.get("/api/v1/display/cardio/calls/wait", params={"after": "yesterday"})
        nul = await screen.get("/api/v1/display/%00/calls/wait")
        long = await screen.get("/api/v1/display/" + "x" * 40 + "/calls/wait")
    assert bad.status_code == 400 and "ISO" in bad.json()["error"]["message"]
    assert nul.status_code in (400, 404) and long.status_code == 404 and "科室" in long.json()["error"]["message"]


async def test_a_draining_hub_lets_its_waiting_screens_go_at_once(server: Server) -> None:
    """A restart is not held up by hall screens: draining answers their long polls within a moment."""
    after = dt.datetime.now(dt.UTC).isoformat()
    answered: list[float] = []
    async with server.http() as screen:

        async def wait() -> None:
            got = await screen.get("/api/v1/display/cardio/calls/wait", params={"after": after, "wait": 20})
            assert got.status_code == 200
            answered.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.sleep(0.5)
            assert not answered
            server.app.services.gateway.draining = True
            drained = trio.current_time()
    assert answered[0] - drained < 1.0


async def test_the_doctor_queue_and_roster_routes_answer_their_declared_shapes(server: Server) -> None:
    """The workstation's 候诊叫号 and 我的排班 pages read these: each answer decodes as its ``response=``
    type and encodes back to the same JSON (OUT-12, DOC-27)."""
    day = await checked_in_today(server, ["patient1", "patient4"])
    queue = "/api/v1/doctor/queue/<period>"
    kinds = {action: declared(server, "POST" if action else "GET", queue + action)
             for action in ("", "/next", "/skip", "/recall", "/seen", "/priority")}
    async with server.http(await server.token("doctor1")) as http:
        line = exactly(await http.get("/api/v1/doctor/queue/night"), kinds[""])
        assert [w.label for w in line.waiting] == ["张*", "赵*"] and line.calling is None
        called = exactly(await http.post("/api/v1/doctor/queue/night/next"), kinds["/next"])
        assert called.calling is not None and called.calling.label == "张*"
        skipped = exactly(await http.post("/api/v1/doctor/queue/night/skip"), kinds["/skip"])
        assert skipped.calling is None and [(w.label, w.skips) for w in skipped.waiting] == [("赵*", 0), ("张*", 1)]
        first = skipped.waiting[1].booking_id
        recalled = exactly(await http.post("/api/v1/doctor/queue/night/recall", json={"booking_id": first}),
                           kinds["/recall"])
        assert recalled.calling is not None and recalled.calling.booking_id == first
        other = recalled.waiting[0].booking_id
        ahead = exactly(await http.post("/api/v1/doctor/queue/night/priority", json={"booking_id": other}),
                        kinds["/priority"])
        assert ahead.waiting[0].priority
        seen = exactly(await http.post("/api/v1/doctor/queue/night/seen"), kinds["/seen"])
        assert seen.calling is None and seen.seen == 1 and seen.rules.max_skips >= 0
        later = (day + dt.timedelta(days=5)).isoformat()
        extra = {"kind": "extra", "reason": "夜间加诊",
                 "sessions": [{"day": later, "period": "night", "room": "夜诊1诊室"}]}
        submitted = exactly(await http.post("/api/v1/doctor/rosters", json=extra),
                            declared(server, "POST", "/api/v1/doctor/rosters"), status=201)
        mine = exactly(await http.get("/api/v1/doctor/rosters"), declared(server, "GET", "/api/v1/doctor/rosters"))
    assert submitted.status == "submitted" and submitted.sessions[0].room == "夜诊1诊室"
    assert [r.id for r in mine.rosters] == [submitted.id]

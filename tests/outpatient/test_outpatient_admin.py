"""The admin console's outpatient routes (carehub/http/rest/outpatient_admin.py): sessions listed in every
status, a session cancelled or handed to a substitute at once with the count of patients told, booking
records a page at a time, the no-show rule read back; every answer has the shape its route declares.

SCH-2, SCH-3, SCH-6, SCH-7, SCH-10, SCH-12 (issue 17, the 门诊管理 pages).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from ..servers import Server
from .helpers import beijing_now, book, self_patient
from .test_schedule_and_blacklist import approve_roster, free_clinic


def declared(server: Server, method: str, path: str) -> Any:
    """The answer type a route declares (``response=``)."""
    spec = next(s for s in server.app.router.specs if s.method == method and s.path == path)
    assert spec.response is not None, f"{method} {path} declares no answer"
    return spec.response


async def admin_get(server: Server, path: str, **params: Any) -> Any:
    async with server.http(await server.token("admin")) as admin:
        response = await admin.get(path, params=params)
    assert response.status_code == 200, response.text
    return response


async def open_with_bookings(server: Server, doctor_login: str, day: dt.date, patients: list[str],
                             period: str = "am") -> str:
    await free_clinic(server, doctor_login)
    await approve_roster(server, doctor_login, [{"day": day.isoformat(), "period": period, "room": "7诊室"}])
    for login in patients:
        assert (await book(server, login, doctor_login, day, period)).status_code == 201
    return f"{await server.account_id(doctor_login)}:{day.isoformat()}:{period}"


async def test_cancelling_a_session_answers_how_many_patients_were_told_and_records_an_approved_roster(
    server: Server,
) -> None:
    day = beijing_now().date() + dt.timedelta(days=2)
    session_id = await open_with_bookings(server, "doctor4", day, ["patient1", "patient2", "patient3"])
    listed = await admin_get(server, "/api/v1/admin/sessions", **{"from": day.isoformat(), "days": 1})
    before = next(s for s in listed.json()["sessions"] if s["session_id"] == session_id)
    assert (before["status"], before["booked"], before["room"]) == ("open", 3, "7诊室")

    async with server.http(await server.token("admin")) as admin:
        cancelled = await admin.post(f"/api/v1/admin/sessions/{session_id}/cancel", json={"reason": "医生生病"})
        again = await admin.post(f"/api/v1/admin/sessions/{session_id}/cancel", json={"reason": "医生生病"})
        blank = await admin.post(f"/api/v1/admin/sessions/{session_id}/substitute",
                                 json={"reason": " ", "substitute_id": await server.account_id("doctor5")})
    assert cancelled.status_code == 200, cancelled.text
    answer = declared(server, "POST", "/api/v1/admin/sessions/<session_id>/cancel")
    body = msgspec.json.decode(cancelled.content, type=answer)
    assert body.told == 3 and body.session.status == "cancelled" and body.session.booked == 0
    assert (body.roster.kind, body.roster.status, body.roster.reason) == ("cancel", "approved", "医生生病")
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_state"
    assert blank.status_code == 409  # the session is no longer open
    async with server.http(await server.token("patient2")) as patient:
        mine = (await patient.get("/api/v1/me/bookings")).json()["bookings"]
    assert mine[0]["status"] == "cancelled"
    notices = await server.notices("patient2", "booking.cancelled")
    assert "医生生病" in notices[0]["body"]
    listed = await admin_get(server, "/api/v1/admin/sessions", **{"from": day.isoformat(), "days": 1})
    msgspec.json.decode(listed.content, type=declared(server, "GET", "/api/v1/admin/sessions"))
    assert next(s for s in listed.json()["sessions"] if s["session_id"] == session_id)["status"] == "cancelled"


async def test_a_substitute_takes_an_open_session_and_its_patients_are_told(server: Server) -> None:
    day = beijing_now().date() + dt.timedelta(days=3)
    session_id = await open_with_bookings(server, "doctor1", day, ["patient1", "patient4"], period="pm")
    substitute = await server.account_id("doctor2")
    async with server.http(await server.token("admin")) as admin:
        no_reason = await admin.post(f"/api/v1/admin/sessions/{session_id}/cancel", json={"reason": "  "})
        itself = await admin.post(f"/api/v1/admin/sessions/{session_id}/substitute",
                                  json={"reason": "外出会诊", "substitute_id": await server.account_id("doctor1")})
        missing = await admin.post("/api/v1/admin/sessions/nobody:2030-01-01:am/cancel", json={"reason": "x"})
        handed = await admin.post(f"/api/v1/admin/sessions/{session_id}/substitute",
                                  json={"reason": "外出会诊", "substitute_id": substitute})
    assert no_reason.status_code == 422 and "原因" in no_reason.json()["error"]["message"]
    assert itself.status_code == 422 and "本人" in itself.json()["error"]["message"]
    assert missing.status_code == 404
    assert handed.status_code == 200, handed.text
    body = handed.json()
    assert body["told"] == 2
    assert body["session"]["status"] == "open" and body["session"]["substitute_name"] == "王晓燕"
    assert body["roster"]["kind"] == "substitute" and body["roster"]["substitute_name"] == "王晓燕"
    notices = await server.notices("patient4", "booking.substituted")
    assert "王晓燕" in notices[0]["body"]


async def test_an_approved_cancel_roster_says_how_many_were_told_and_rosters_name_their_doctors(
    server: Server,
) -> None:
    day = beijing_now().date() + dt.timedelta(days=2)
    await open_with_bookings(server, "doctor3", day, ["patient1", "patient2"])
    result = await approve_roster(server, "doctor3", [{"day": day.isoformat(), "period": "am"}], kind="cancel",
                                  reason="学术会议")
    msgspec.convert(result, type=declared(server, "POST", "/api/v1/admin/rosters/<roster_id>/decide"))
    assert result["told"] == 2 and result["doctor_name"] == "张明"
    listed = await admin_get(server, "/api/v1/admin/rosters", status="approved")
    rosters = msgspec.json.decode(listed.content, type=declared(server, "GET", "/api/v1/admin/rosters")).rosters
    assert {r.kind for r in rosters} == {"regular", "cancel"} and all(r.doctor_name == "张明" for r in rosters)


async def test_booking_records_come_a_page_at_a_time_with_the_total_the_filters_find(server: Server) -> None:
    """SCH-7: pages do not overlap and together are exactly the filtered records."""
    day = beijing_now().date() + dt.timedelta(days=1)
    await open_with_bookings(server, "doctor5", day, ["patient1", "patient2", "patient3"])
    await open_with_bookings(server, "doctor6", day, ["patient4"])
    doctor = await server.account_id("doctor5")
    query = {"doctor": doctor, "from": day.isoformat(), "to": day.isoformat(), "limit": 2}
    first = await admin_get(server, "/api/v1/admin/bookings", **query)
    second = await admin_get(server, "/api/v1/admin/bookings", **query, offset=2)
    kind = declared(server, "GET", "/api/v1/admin/bookings")
    pages = [msgspec.json.decode(p.content, type=kind) for p in (first, second)]
    assert [p.total for p in pages] == [3, 3] and [len(p.bookings) for p in pages] == [2, 1]
    ids = {b.booking_id for p in pages for b in p.bookings}
    in_db = await server.app.services.db.fetch("SELECT id FROM bookings WHERE doctor_id = $1 AND day = $2", doctor, day)
    assert ids == {r["id"] for r in in_db}
    patient = await self_patient(server, "patient2")
    theirs = (await admin_get(server, "/api/v1/admin/bookings", patient=patient)).json()
    assert theirs["total"] == 1 and theirs["bookings"][0]["patient_id"] == patient
    assert theirs["bookings"][0]["patient_name"] == "李*"  # 李四, masked as staff lists show names
    async with server.http(await server.token("admin")) as admin:
        backwards = await admin.get("/api/v1/admin/bookings", params={"from": "2030-01-02", "to": "2030-01-01"})
        bad_day = await admin.get("/api/v1/admin/bookings", params={"from": "yesterday"})
    assert backwards.status_code == 422 and "结束日期" in backwards.json()["error"]["message"]
    assert bad_day.status_code == 400


async def test_the_no_show_rule_in_force_is_read_back_with_who_set_it_and_the_change_is_audited(
    server: Server,
) -> None:
    kind = declared(server, "GET", "/api/v1/admin/no-show-rule")
    start = msgspec.json.decode((await admin_get(server, "/api/v1/admin/no-show-rule")).content, type=kind)
    assert (start.max_no_shows, start.window_days, start.ban_days, start.enabled) == (3, 90, 30, True)
    async with server.http(await server.token("admin")) as admin:
        saved = await admin.put("/api/v1/admin/no-show-rule", json={
            "max_no_shows": 2, "window_days": 60, "ban_days": 14, "enabled": False})
        refused = await admin.put("/api/v1/admin/no-show-rule", json={
            "max_no_shows": 0, "window_days": 60, "ban_days": 14})
    assert saved.status_code == 200, saved.text
    now = msgspec.json.decode((await admin_get(server, "/api/v1/admin/no-show-rule")).content, type=kind)
    assert (now.max_no_shows, now.window_days, now.ban_days, now.enabled) == (2, 60, 14, False)
    assert now.updated_by == await server.account_id("admin") and now.updated_by_name
    assert refused.status_code == 422
    audit = await server.app.services.identity.audit.search(action="blacklist.rule")
    assert audit and audit[0].actor_id == now.updated_by


async def test_a_slot_rule_and_the_blacklist_answer_their_declared_shapes(server: Server) -> None:
    doctor = await server.account_id("doctor2")
    rule = await admin_get(server, f"/api/v1/admin/doctors/{doctor}/slot-rule")
    msgspec.json.decode(rule.content, type=declared(server, "GET", "/api/v1/admin/doctors/<doctor_id>/slot-rule"))
    entries = await admin_get(server, "/api/v1/admin/blacklist", all="1")
    msgspec.json.decode(entries.content, type=declared(server, "GET", "/api/v1/admin/blacklist"))
    async with server.http(await server.token("patient1")) as patient:
        refused = await patient.get("/api/v1/admin/sessions")
    assert refused.status_code == 403

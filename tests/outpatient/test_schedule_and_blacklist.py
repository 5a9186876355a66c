"""Rosters with approval, session cancellation reaching every patient, the no-show blacklist (SCH-3..6, SCH-10)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import trio

from carehub.actors.slot_pool import CloseSession, pool_address

from ..servers import Server
from .helpers import beijing_now, book, self_patient


async def approve_roster(server: Server, doctor_login: str, sessions: list[dict[str, Any]], kind: str = "regular",
                         **extra: Any) -> dict[str, Any]:
    doctor = await server.account_id(doctor_login)
    async with server.http(await server.token("admin")) as admin:
        submitted = await admin.post("/api/v1/admin/rosters", json={
            "kind": kind, "sessions": sessions, "doctor_id": doctor, **extra})
        assert submitted.status_code == 201, submitted.text
        decided = await admin.post(f"/api/v1/admin/rosters/{submitted.json()['id']}/decide", json={"approve": True})
        assert decided.status_code == 200, decided.text
        return dict(decided.json())


async def free_clinic(server: Server, doctor_login: str) -> None:
    doctor = await server.account_id(doctor_login)
    async with server.http(await server.token("admin")) as admin:
        response = await admin.put(f"/api/v1/admin/doctors/{doctor}/slot-rule", json={"fee_fen": 0})
        assert response.status_code == 200, response.text


async def test_an_approved_roster_opens_sessions_patients_can_find(server: Server) -> None:
    """SCH-3, OUT-3: approval generates the slots; the search lists them with free counts."""
    day = beijing_now().date() + dt.timedelta(days=3)
    await approve_roster(server, "doctor2", [{"day": day.isoformat(), "period": "am", "room": "2诊室"}])
    async with server.http() as http:
        found = (await http.get("/api/v1/sessions", params={"from": day.isoformat(), "days": 1})).json()
    doctor = await server.account_id("doctor2")
    session = next(s for s in found["sessions"] if s["doctor_id"] == doctor)
    assert session["free"] == session["capacity"] == 24 and session["room"] == "2诊室"


async def test_a_rejected_roster_comes_back_with_the_reason(server: Server) -> None:
    day = beijing_now().date() + dt.timedelta(days=3)
    async with server.http(await server.token("doctor3")) as doctor:
        submitted = (await doctor.post("/api/v1/doctor/rosters", json={
            "kind": "extra", "sessions": [{"day": day.isoformat(), "period": "night"}]})).json()
    async with server.http(await server.token("admin")) as admin:
        rejected = await admin.post(f"/api/v1/admin/rosters/{submitted['id']}/decide",
                                    json={"approve": False, "reason": "夜诊诊室不足"})
    async with server.http(await server.token("doctor3")) as doctor:
        mine = (await doctor.get("/api/v1/doctor/rosters")).json()["rosters"]
    assert rejected.status_code == 200 and mine[0]["status"] == "rejected"
    assert mine[0]["decision_reason"] == "夜诊诊室不足"


async def test_cancelling_a_session_tells_every_booked_patient_in_app_and_by_sms(server: Server) -> None:
    """SCH-6: on approval every booked patient gets a notice in their stream and an SMS."""
    await free_clinic(server, "doctor4")
    day = beijing_now().date() + dt.timedelta(days=2)
    await approve_roster(server, "doctor4", [{"day": day.isoformat(), "period": "am"}])
    logins = ["patient1", "patient2", "patient3"]
    for login in logins:
        assert (await book(server, login, "doctor4", day)).status_code == 201
    result = await approve_roster(server, "doctor4", [{"day": day.isoformat(), "period": "am"}], kind="cancel",
                                  reason="学术会议")
    assert len(result["results"][0]["cancelled"]) == 3
    for login in logins:
        async with server.http(await server.token(login)) as http:
            mine = (await http.get("/api/v1/me/bookings")).json()["bookings"]
        notice = (await server.notices(login, "booking.cancelled"))[0]
        assert "学术会议" in notice["body"] and mine[0]["status"] == "cancelled"
        # no outside channel is configured here: the notice is delivered in the app only
        assert notice["status"] == "in_app"


async def test_no_shows_fill_the_blacklist_and_an_admin_can_lift_it(server: Server) -> None:
    """SCH-10: after the session closes the no-show counts; at the limit booking is refused with the end
    date; an admin lifts the entry with a reason (audited) and booking works again."""
    await free_clinic(server, "doctor5")
    async with server.http(await server.token("admin")) as admin:
        assert (await admin.put("/api/v1/admin/no-show-rule", json={
            "max_no_shows": 1, "window_days": 90, "ban_days": 30})).status_code == 200
    day = beijing_now().date() + dt.timedelta(days=1)
    await approve_roster(server, "doctor5", [{"day": day.isoformat(), "period": "am"},
                                              {"day": (day + dt.timedelta(days=1)).isoformat(), "period": "am"}])
    assert (await book(server, "patient1", "doctor5", day)).status_code == 201
    doctor = await server.account_id("doctor5")
    closed = await server.app.services.hub.ask(pool_address(doctor, day), CloseSession("am"))
    assert len(closed["no_shows"]) == 1
    patient = await self_patient(server, "patient1")
    with trio.fail_after(10):
        while not await server.app.services.outpatient.bookings.blacklisted(patient, dt.datetime.now(dt.UTC)):
            await trio.sleep(0.1)
    refused = await book(server, "patient1", "doctor5", day + dt.timedelta(days=1))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "blacklisted"
    assert "前不能预约" in refused.json()["error"]["message"]
    async with server.http(await server.token("admin")) as admin:
        entry = (await admin.get("/api/v1/admin/blacklist")).json()["entries"][0]
        lifted = await admin.post(f"/api/v1/admin/blacklist/{entry['id']}/lift", json={"reason": "患者已说明情况"})
    assert lifted.status_code == 200
    assert (await book(server, "patient1", "doctor5", day + dt.timedelta(days=1))).status_code == 201
    audit = await server.app.services.identity.audit.search(action="blacklist.remove")
    assert audit and audit[0].target == f"blacklist/{entry['id']}"


async def test_the_hold_time_and_check_in_window_of_a_slot_rule_reach_the_sessions_it_opens(server: Server) -> None:
    """SCH-2, OUT-6, OUT-11: an admin's hold minutes and check-in window are kept and applied."""
    doctor = await server.account_id("doctor5")
    async with server.http(await server.token("admin")) as admin:
        saved = await admin.put(f"/api/v1/admin/doctors/{doctor}/slot-rule", json={
            "hold_minutes": 5, "checkin_before_minutes": 240, "checkin_after_minutes": 10})
        kept = (await admin.get(f"/api/v1/admin/doctors/{doctor}/slot-rule")).json()
    assert saved.status_code == 200, saved.text
    assert (kept["hold_minutes"], kept["checkin_before_minutes"], kept["checkin_after_minutes"]) == (5, 240, 10)
    day = beijing_now().date() + dt.timedelta(days=2)
    await approve_roster(server, "doctor5", [{"day": day.isoformat(), "period": "am"}])
    booked = (await book(server, "patient1", "doctor5", day)).json()
    held_for = dt.datetime.fromisoformat(booked["hold_until"]) - dt.datetime.fromisoformat(booked["created_at"])
    assert held_for == dt.timedelta(minutes=5)


async def test_an_approval_a_slot_pool_refuses_is_a_409_that_can_be_retried_and_a_decided_roster_stays_decided(
    server: Server,
) -> None:
    """SCH-3, SCH-6: the pool's refusal comes back as 409 roster_incomplete (before #16: the pool's own code
    with 409); the roster stays submitted, and a roster once decided answers 409 already_decided."""
    day = beijing_now().date() + dt.timedelta(days=5)
    await approve_roster(server, "doctor3", [{"day": day.isoformat(), "period": "am", "capacity": 20}])
    doctor = await server.account_id("doctor3")
    async with server.http(await server.token("admin")) as admin:
        smaller = await admin.post("/api/v1/admin/rosters", json={
            "kind": "extra", "doctor_id": doctor,
            "sessions": [{"day": day.isoformat(), "period": "am", "capacity": 5}]})
        roster = smaller.json()["id"]
        refused = await admin.post(f"/api/v1/admin/rosters/{roster}/decide", json={"approve": True})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "roster_incomplete"
        assert "审批未完成" in refused.json()["error"]["message"]
        rejected = await admin.post(f"/api/v1/admin/rosters/{roster}/decide", json={"approve": False, "reason": "改期"})
        assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
        again = await admin.post(f"/api/v1/admin/rosters/{roster}/decide", json={"approve": True})
        assert again.status_code == 409 and again.json()["error"] == {
            "code": "already_decided", "message": "该申请已处理过 (already decided)"}

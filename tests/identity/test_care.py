"""Care relationship: a doctor reads a patient's data only while linked, or by a logged break-glass."""

from __future__ import annotations

import datetime as dt

from ..servers import Server


async def self_patient(server: Server, login: str) -> str:
    async with server.http(await server.token(login)) as http:
        patients = (await http.get("/api/v1/me/patients")).json()["patients"]
    return str(next(p["id"] for p in patients if p["relation"] == "self"))


async def test_a_doctor_without_a_care_relationship_is_refused_and_it_is_audited(server: Server) -> None:
    patient = await self_patient(server, "patient1")
    async with server.http(await server.token("doctor1")) as http:
        response = await http.get(f"/api/v1/doctor/patients/{patient}")
    assert response.status_code == 404 and "张三" not in response.text
    denied = await server.app.services.identity.audit.search(action="record.read", outcome="denied")
    assert denied and denied[0].target == f"patient/{patient}/profile"


async def test_a_linked_doctor_reads_the_profile_until_the_link_ends(server: Server) -> None:
    patient = await self_patient(server, "patient1")
    doctor = await server.account_id("doctor1")
    care = server.app.services.care
    now = dt.datetime.now(dt.UTC)
    await care.link(doctor, patient, "consultation", "c-1", until=now + dt.timedelta(hours=1))
    async with server.http(await server.token("doctor1")) as http:
        during = await http.get(f"/api/v1/doctor/patients/{patient}")
        await care.link(doctor, patient, "consultation", "c-1", until=now - dt.timedelta(seconds=1))
        after = await http.get(f"/api/v1/doctor/patients/{patient}")
    assert during.status_code == 200 and during.json()["name"] == "张三"
    assert during.json()["id_number"].count("*") == 11
    assert after.status_code == 404


async def test_break_glass_needs_a_reason_opens_access_and_alerts_ops(server: Server) -> None:
    patient = await self_patient(server, "patient2")
    async with server.http(await server.token("doctor2")) as http:
        no_reason = await http.post(f"/api/v1/doctor/patients/{patient}/break-glass", json={"reason": "看看"})
        opened = await http.post(
            f"/api/v1/doctor/patients/{patient}/break-glass", json={"reason": "急诊抢救，患者昏迷无法联系家属"}
        )
        read = await http.get(f"/api/v1/doctor/patients/{patient}")
    assert no_reason.status_code == 422
    assert opened.status_code == 200 and read.status_code == 200
    assert any("break-glass" in a["text"] for a in server.app.services.hub.snapshot()["alarms"])
    logged = await server.app.services.identity.audit.search(action="record.break_glass")
    assert logged and logged[0].detail["reason"].startswith("急诊抢救")


async def test_a_doctor_reading_an_unknown_patient_learns_nothing(server: Server) -> None:
    async with server.http(await server.token("doctor1")) as http:
        response = await http.get("/api/v1/doctor/patients/does-not-exist")
    assert response.status_code == 404

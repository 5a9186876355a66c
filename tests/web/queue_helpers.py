"""Arranging a clinic day for the page tests over the hub's own API: a session of a demo doctor
starting in a few minutes, patients who book and check in with their visit code.

The doctor's account id comes from the public directory, so the doctor's staff sign-in (TOTP,
one code per 30 s step) is left to the page.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from carehub.actors.slot_pool import OpenSession, pool_address

from ..outpatient.helpers import beijing_now, plan, self_patient
from ..servers import Server

DOCTOR_NAMES = {"doctor1": "李建国", "doctor2": "王晓燕"}


async def doctor_id(server: Server, login: str) -> str:
    async with server.http() as http:
        doctors = (await http.get("/api/v1/doctors", params={"department": "cardio"})).json()["doctors"]
    found: dict[str, Any] = next(d for d in doctors if d["name"] == DOCTOR_NAMES[login])
    return str(found.get("id") or found["account_id"])


async def open_tonight(server: Server, login: str, *, minutes_ahead: int = 5) -> dt.date:
    """A same-day session of ``login`` (period ``night``) starting in ``minutes_ahead`` minutes."""
    start = (beijing_now() + dt.timedelta(minutes=minutes_ahead)).replace(second=0, microsecond=0)
    if start.date() != beijing_now().date():
        pytest.skip("too close to midnight in Beijing for a same-day session")
    doctor = await doctor_id(server, login)
    session = plan(start.date(), period="night", start=start, capacity=20)
    opening = OpenSession(session, doctor_name=DOCTOR_NAMES[login])
    await server.app.services.hub.ask(pool_address(doctor, start.date()), opening)
    return start.date()


async def book_and_check_in(server: Server, patient_login: str, doctor_login: str, day: dt.date) -> str:
    patient = await self_patient(server, patient_login)
    doctor = await doctor_id(server, doctor_login)
    async with server.http(await server.token(patient_login)) as http:
        booked = await http.post("/api/v1/me/bookings", json={
            "patient_id": patient, "doctor_id": doctor, "day": day.isoformat(), "period": "night"})
        assert booked.status_code == 201, booked.text
        booking_id = str(booked.json()["booking_id"])
        code = (await http.get(f"/api/v1/me/bookings/{booking_id}")).json()["visit_code"]
        checked = await http.post(f"/api/v1/me/bookings/{booking_id}/check-in", json={"code": code})
        assert checked.status_code == 200, checked.text
    return booking_id

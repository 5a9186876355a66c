"""Opening sessions and booking in outpatient tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from carehub.actors.slot_pool import BEIJING, OpenSession, SessionPlan, pool_address

from ..servers import Server


def beijing_now() -> dt.datetime:
    return dt.datetime.now(BEIJING)


def plan(
    day: dt.date, *, period: str = "am", capacity: int = 10, fee_fen: int = 0, start: dt.datetime | None = None,
    quotas: dict[str, int] | None = None, hold_seconds: int = 900, slot_minutes: int = 10,
) -> SessionPlan:
    starts_at = start or dt.datetime.combine(day, dt.time(8, 0), BEIJING)
    return SessionPlan(
        period=period, department_id="cardio", room="心内科3诊室", starts_at=starts_at, slot_minutes=slot_minutes,
        capacity=capacity, fee_fen=fee_fen, opens_at=starts_at - dt.timedelta(days=7),
        quotas=quotas or {"app": capacity, "kiosk": capacity, "partner": capacity}, hold_seconds=hold_seconds,
    )


async def open_session(server: Server, doctor_login: str, session: SessionPlan) -> str:
    """Open a session as roster approval does (a system message to the doctor's slot pool)."""
    doctor = await server.account_id(doctor_login)
    day = session.starts_at.astimezone(BEIJING).date()
    address = pool_address(doctor, day)
    await server.app.services.hub.ask(address, OpenSession(session, doctor_name="李建国"))
    return address


async def self_patient(server: Server, login: str) -> str:
    async with server.http(await server.token(login)) as http:
        patients = (await http.get("/api/v1/me/patients")).json()["patients"]
    return str(next(p["id"] for p in patients if p["relation"] == "self"))


async def book(server: Server, login: str, doctor_login: str, day: dt.date, period: str = "am",
               **extra: Any) -> Any:
    patient = await self_patient(server, login)
    doctor = await server.account_id(doctor_login)
    async with server.http(await server.token(login)) as http:
        return await http.post("/api/v1/me/bookings", json={
            "patient_id": patient, "doctor_id": doctor, "day": day.isoformat(), "period": period, **extra})

"""The doctor's desk (DOC-1, DOC-27): what the workstation reads besides the queue's moves.

The waiting queue actor knows each patient only by the masked name the hall screen shows
(``张*``); the desk also shows sex and age (from the resident ID number, via the patient's
record). Booking -> patient comes from the bookings projection of that day; sex and age are kept
in memory per patient (neither changes during a clinic day; the copy is dropped whole when it
grows large). The full name stays behind the care-relationship profile route.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from carehub.actors.slot_pool import BEIJING, PERIODS, session_id
from carehub.actors.waiting_queue import GetQueue
from carehub.hub import Caller, Hub
from carehub.identity.patients import Patients

from .booking import Bookings
from .errors import BookingRefused

#: the fields of a queue entry the desk shows (with ``sex`` and ``age``)
ENTRY_FIELDS = ("booking_id", "label", "slot_no", "slot_at", "checked_in_at", "revisit", "priority", "skips")
PEOPLE_KEPT = 10_000


class Workstation:
    def __init__(self, bookings: Bookings, patients: Patients, hub: Hub) -> None:
        self.bookings = bookings
        self.patients = patients
        self.hub = hub
        self._people: dict[str, tuple[str | None, int | None]] = {}

    @staticmethod
    def today() -> dt.date:
        return dt.datetime.now(BEIJING).date()

    async def sessions(self, doctor_id: str, days: int) -> list[dict[str, Any]]:
        """The doctor's open sessions from today for ``days`` days."""
        return await self.bookings.sessions(department_id=None, doctor_id=doctor_id, name=None, specialty=None,
                                            day_from=self.today(), days=days)

    async def waiting_list(self, caller: Caller, day: dt.date, period: str) -> dict[str, Any]:
        """The caller's own line of ``day``/``period``, each entry with sex and age."""
        if period not in PERIODS:
            raise BookingRefused(f"没有这个出诊时段, 时段为 {'、'.join(PERIODS)} (no such period)", code="not_found")
        doctor = caller.account_id
        if doctor is None:
            raise BookingRefused("候诊队列属于一位医生 (a queue belongs to a doctor)", code="forbidden")
        session = session_id(doctor, day, period)
        address = f"queue/{session}"
        if not self.hub.authorize(address, GetQueue(), caller):  # type: ignore[arg-type]
            raise BookingRefused("只能查看自己的候诊队列 (not your queue)", code="forbidden")
        line: dict[str, Any] = await self.hub.ask(address, GetQueue(), caller=caller)
        booked = await self.bookings.search(day_from=day, day_to=day, channel=None, patient_id=None,
                                            doctor_id=doctor, department_id=None, status=None, limit=1000)
        patient_of = {b["booking_id"]: b["patient_id"] for b in booked}

        async def entry(e: dict[str, Any]) -> dict[str, Any]:
            sex, age = await self._sex_and_age(patient_of.get(e["booking_id"]))
            return {**{f: e[f] for f in ENTRY_FIELDS}, "sex": sex, "age": age}

        return {
            "session_id": session, "topic": address, "room": line["room"], "doctor_name": line["doctor_name"],
            "calling": None if line["calling"] is None else await entry(line["calling"]),
            "waiting": [await entry(w) for w in line["waiting"]], "missed": [await entry(w) for w in line["missed"]],
            "seen": line["seen"], "version": line["version"],
        }

    async def _sex_and_age(self, patient_id: str | None) -> tuple[str | None, int | None]:
        if patient_id is None:
            return None, None
        known = self._people.get(patient_id)
        if known is None:
            profile = await self.patients.profile_for_care(patient_id)
            if len(self._people) >= PEOPLE_KEPT:
                self._people.clear()
            known = self._people[patient_id] = (profile["sex"], profile["age"])
        return known


__all__ = ["Workstation"]

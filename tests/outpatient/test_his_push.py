"""Every booking reaches the HIS as a FHIR Appointment (OUT-2, SCH-12)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .conftest import Hospital
from .helpers import beijing_now, book
from .test_bills import until
from .test_schedule_and_blacklist import approve_roster, free_clinic


async def test_a_booking_reaches_the_his_as_an_appointment_naming_the_patient(hospital: Hospital) -> None:
    server = hospital.server
    await free_clinic(server, "doctor2")
    day = beijing_now().date() + dt.timedelta(days=2)
    await approve_roster(server, "doctor2", [{"day": day.isoformat(), "period": "am"}])
    booked = await book(server, "patient1", "doctor2", day)
    assert booked.status_code == 201, booked.text
    booking_id = booked.json()["booking_id"]

    async def stored() -> dict[str, Any] | None:
        async with hospital.his_admin() as his:
            for a in (await his.get("/_sim/appointments")).json()["appointments"]:
                if any(i.get("value") == booking_id for i in a["resource"].get("identifier", [])):
                    return dict(a["resource"])
        return None

    appointment = await until(stored)
    names = {p["actor"]["reference"].split("/")[0]: p["actor"].get("display") for p in appointment["participant"]}
    assert appointment["status"] == "booked" and names["Patient"] == "张三"

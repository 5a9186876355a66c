"""Doctors: a patient's data within a care relationship; the workstation's own views (DOC-1, DOC-27).

The queue's moves (call next, skip, recall, seen) and the roster requests are outpatient routes
(``carehub/http/rest/outpatient.py``); here are the two reads the workstation needs besides:
the doctor's own sessions of the coming days, and the waiting list with each patient's masked
name, sex and age (the queue actor knows only the masked name).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from quart import request

from carehub.actors.slot_pool import BEIJING, PERIODS
from carehub.actors.waiting_queue import GetQueue
from carehub.hub import Caller, Hub
from carehub.identity.care import CareAccess
from carehub.identity.patients import Patients
from carehub.outpatient import Outpatient

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator
from .args import client_ip, int_arg


class BreakGlass(msgspec.Struct, forbid_unknown_fields=True):
    reason: str


class MySession(msgspec.Struct):
    """One of the doctor's open clinic sessions."""

    session_id: str
    day: str
    period: str
    room: str
    department_id: str
    starts_at: str
    capacity: int
    free: int


class MySessionsView(msgspec.Struct):
    sessions: list[MySession]


class WaitingPatient(msgspec.Struct):
    """A patient in the doctor's line: the masked name (as on the hall screen), sex and age."""

    booking_id: str
    label: str
    sex: str | None
    age: int | None
    slot_no: int
    slot_at: str
    checked_in_at: str
    revisit: bool
    priority: bool
    skips: int


class WaitingListView(msgspec.Struct):
    session_id: str
    #: the live topic of this line (``queue.positions`` after every change)
    topic: str
    room: str
    doctor_name: str
    calling: WaitingPatient | None
    waiting: list[WaitingPatient]
    missed: list[WaitingPatient]
    seen: int
    version: int


def _day_arg() -> dt.date:
    raw = request.args.get("day")
    if raw is None:
        return dt.datetime.now(BEIJING).date()
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_request", "日期格式应为 YYYY-MM-DD (query parameter 'day')") from None


def register(r: RouteDecorator, *, care: CareAccess, patients: Patients, hub: Hub, outpatient: Outpatient) -> None:
    #: patient -> (sex, age): what the waiting list adds to the queue's masked names. Neither changes
    #: during a clinic day; the copy is dropped whole when it grows large.
    people: dict[str, tuple[str | None, int | None]] = {}

    async def sex_and_age(patient_id: str | None) -> tuple[str | None, int | None]:
        if patient_id is None:
            return None, None
        known = people.get(patient_id)
        if known is None:
            profile = await patients.profile_for_care(patient_id)
            if len(people) > 10_000:
                people.clear()
            known = people[patient_id] = (profile["sex"], profile["age"])
        return known

    @r("GET", "/api/v1/doctor/sessions", summary="Doctor: my open clinic sessions from today",
       permission="clinic.queue", tag="queue", query=("days",), response=MySessionsView)
    async def my_sessions(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        days = int_arg("days", 7, 1, 31)
        rows = await outpatient.bookings.sessions(
            department_id=None, doctor_id=ctx.principal.account_id, name=None, specialty=None,
            day_from=dt.datetime.now(BEIJING).date(), days=days)
        return {"sessions": [{f: row[f] for f in MySession.__struct_fields__} for row in rows]}

    @r("GET", "/api/v1/doctor/waiting/<period>", summary="Doctor: my waiting list with sex and age (DOC-1)",
       permission="clinic.queue", tag="queue", query=("day",), response=WaitingListView)
    async def waiting_list(ctx: RequestContext, period: str) -> Any:
        assert ctx.principal is not None
        me = ctx.principal.account_id
        if period not in PERIODS:
            raise ApiError(404, "not_found", f"没有这个出诊时段, 时段为 {'、'.join(PERIODS)} (no such period)")
        day = _day_arg()
        address = f"queue/{me}:{day.isoformat()}:{period}"
        caller = Caller(me, frozenset(ctx.principal.roles))
        if not hub.authorize(address, GetQueue(), caller):  # type: ignore[arg-type]
            raise ApiError(403, "forbidden", "只能查看自己的候诊队列")
        line = await hub.ask(address, GetQueue(), caller=caller)
        booked = await outpatient.bookings.search(day_from=day, day_to=day, channel=None, patient_id=None,
                                                  doctor_id=me, department_id=None, status=None, limit=1000)
        patient_of = {b["booking_id"]: b["patient_id"] for b in booked}

        async def row(entry: dict[str, Any]) -> dict[str, Any]:
            sex, age = await sex_and_age(patient_of.get(entry["booking_id"]))
            return {**{f: entry[f] for f in WaitingPatient.__struct_fields__ if f in entry}, "sex": sex, "age": age}

        return {
            "session_id": line["session_id"], "topic": f"queue/{line['session_id']}", "room": line["room"],
            "doctor_name": line["doctor_name"],
            "calling": None if line["calling"] is None else await row(line["calling"]),
            "waiting": [await row(w) for w in line["waiting"]], "missed": [await row(w) for w in line["missed"]],
            "seen": line["seen"], "version": line["version"],
        }

    @r("GET", "/api/v1/doctor/patients/<patient_id>", summary="A patient's profile (needs a care relationship)",
       permission="patient.read", tag="doctor")
    async def doctor_patient(ctx: RequestContext, patient_id: str) -> Any:
        assert ctx.principal is not None
        roles = sorted(ctx.principal.roles)
        if not await care.check_read(ctx.principal.account_id, roles, patient_id, "profile", client_ip()):
            # 404, not 403: a doctor outside the care relationship does not learn the patient exists
            raise ApiError(404, "not_in_your_care", "您名下没有这位患者 (no patient of yours with this id)")
        return await patients.profile_for_care(patient_id)

    @r("POST", "/api/v1/doctor/patients/<patient_id>/break-glass",
       summary="Emergency access for one hour, with a reason (audited, ops alerted)",
       permission="patient.read", body=BreakGlass, tag="doctor")
    async def break_glass(ctx: RequestContext, body: BreakGlass, patient_id: str) -> Any:
        assert ctx.principal is not None
        if len(body.reason.strip()) < 10:
            message = "请说明紧急调阅的理由（至少10个字）(give a reason of at least 10 characters)"
            raise ApiError(422, "invalid", message)
        await patients.profile_for_care(patient_id)  # 404 for unknown patients
        until = await care.break_glass(
            ctx.principal.account_id, sorted(ctx.principal.roles), patient_id, body.reason.strip(), client_ip()
        )
        alarm = f"break-glass: {ctx.principal.login} opened patient {patient_id}: {body.reason}"
        hub.alarm("warning", alarm)
        return {"until": until.isoformat()}

"""Doctors: a patient's data within a care relationship; the workstation's own views (DOC-1, DOC-27).

The queue's moves (call next, skip, recall, seen) and the roster requests are outpatient routes
(``carehub/http/rest/outpatient.py``); here are the two reads the workstation needs besides
(:class:`carehub.outpatient.workstation.Workstation`): the doctor's own sessions of the coming
days, and the waiting list with each patient's masked name, sex and age.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from quart import request

from carehub.hub import Caller, Hub
from carehub.identity.care import CareAccess
from carehub.identity.patients import Patients
from carehub.outpatient import Outpatient
from carehub.outpatient.workstation import Workstation

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


def _day_arg() -> dt.date | None:
    raw = request.args.get("day")
    if raw is None:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_request", "日期格式应为 YYYY-MM-DD (query parameter 'day')") from None


def register(r: RouteDecorator, *, care: CareAccess, patients: Patients, hub: Hub, outpatient: Outpatient) -> None:
    desk = Workstation(outpatient.bookings, patients, hub)

    @r("GET", "/api/v1/doctor/sessions", summary="Doctor: my open clinic sessions from today",
       permission="clinic.queue", tag="queue", query=("days",), response=MySessionsView)
    async def my_sessions(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        rows = await desk.sessions(ctx.principal.account_id, int_arg("days", 7, 1, 31))
        return {"sessions": [{f: row[f] for f in MySession.__struct_fields__} for row in rows]}

    @r("GET", "/api/v1/doctor/waiting/<period>", summary="Doctor: my waiting list with sex and age (DOC-1)",
       permission="clinic.queue", tag="queue", query=("day",), response=WaitingListView)
    async def waiting_list(ctx: RequestContext, period: str) -> Any:
        assert ctx.principal is not None
        caller = Caller(ctx.principal.account_id, frozenset(ctx.principal.roles))
        return await desk.waiting_list(caller, _day_arg() or desk.today(), period)

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

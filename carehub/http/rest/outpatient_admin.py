"""Outpatient administration: slot rules, rosters and their approval, session cancel and substitute,
booking records, the no-show rule and the blacklist (SCH-2..7, SCH-10, SCH-12; the admin console's
门诊管理 pages, issue 17).

Everything is under ``/api/v1/admin``: ``admin.schedule`` for slot rules, rosters and sessions,
``admin.bookings`` for booking records, the no-show rule and the blacklist. Handlers hold no rule
and no SQL: they parse, ask :class:`carehub.outpatient.Outpatient` and shape the answer; every
route declares its answer (``response=``) for the OpenAPI document.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from quart import request

from carehub.actors.slot_pool import BEIJING
from carehub.outpatient import Outpatient
from carehub.outpatient.schedule import RosterRequest, RosterSession, SlotRule

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator, json_response
from .args import int_arg

#: ids as CareHub makes them (a session id is ``doctor:day:period``)
Id = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,80}$")]
#: a reason people read later (decisions, cancellations, lifting an entry): no NUL characters
Reason = Annotated[str, msgspec.Meta(pattern=r"^[^\x00]*$", max_length=500)]

# ---- request bodies ----------------------------------------------------------------------------


class DecisionBody(msgspec.Struct, forbid_unknown_fields=True):
    approve: bool
    reason: Reason = ""


class LiftBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason


class NoShowRuleBody(msgspec.Struct, forbid_unknown_fields=True):
    max_no_shows: int
    window_days: int
    ban_days: int
    enabled: bool = True


class CancelSessionBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason


class SubstituteBody(msgspec.Struct, forbid_unknown_fields=True):
    substitute_id: Id
    reason: Reason


# ---- answers -------------------------------------------------------------------------------------


class RosterView(msgspec.Struct):
    """A roster request and its decision (times ISO 8601; ``sessions`` as submitted)."""

    id: str
    doctor_id: str
    doctor_name: str
    department_id: str
    kind: str
    status: str
    sessions: list[RosterSession]
    substitute_id: str | None
    substitute_name: str | None
    reason: str
    submitted_by: str
    submitted_at: str
    decided_by: str | None
    decided_at: str | None
    decision_reason: str | None


class RostersView(msgspec.Struct):
    rosters: list[RosterView]


class DecidedView(RosterView):
    """A decided roster; an approval adds each slot pool's answer and, for a cancellation, leave or
    substitution, how many booked patients were told."""

    results: list[dict[str, Any]] = msgspec.field(default_factory=list)
    told: int | None = None


class ManagedSessionView(msgspec.Struct):
    """A clinic session as the console lists it: every status, booked count, the substitute."""

    session_id: str
    doctor_id: str
    doctor_name: str
    department_id: str
    day: str
    period: str
    room: str
    starts_at: str
    ends_at: str
    capacity: int
    booked: int
    fee_fen: int
    status: str
    substitute_id: str | None
    substitute_name: str | None


class ManagedSessionsView(msgspec.Struct):
    sessions: list[ManagedSessionView]


class SessionChangedView(msgspec.Struct):
    """A session cancelled or handed to a substitute: the roster that records it, the session now, and
    ``told``: how many booked patients were told (in the app and by SMS)."""

    roster: RosterView
    session: ManagedSessionView
    told: int


class BookingRecordView(msgspec.Struct):
    booking_id: str
    session_id: str
    doctor_id: str
    doctor_name: str
    department_id: str
    room: str
    day: str
    slot_no: int
    slot_at: str
    patient_id: str
    #: masked (``张**``); None: the patient record is gone
    patient_name: str | None
    account_id: str
    channel: str
    status: str
    fee_fen: int
    created_at: str
    note: str | None


class BookingsPageView(msgspec.Struct):
    """One page of booking records (newest first) and how many the filters find in all."""

    bookings: list[BookingRecordView]
    total: int
    limit: int
    offset: int


class BlacklistEntryView(msgspec.Struct):
    id: str
    patient_id: str
    #: masked (``张**``); None: the patient record is gone
    patient_name: str | None
    since: str
    until: str
    reason: str
    created_by: str
    removed_at: str | None
    removed_by: str | None
    removal_reason: str | None


class BlacklistView(msgspec.Struct):
    entries: list[BlacklistEntryView]


class LiftedView(msgspec.Struct):
    lifted: str


class NoShowRuleView(msgspec.Struct):
    """``max_no_shows`` no-shows within ``window_days`` days ban booking for ``ban_days`` days."""

    max_no_shows: int
    window_days: int
    ban_days: int
    enabled: bool
    updated_at: str
    updated_by: str
    #: None: set by the system (the migration's default)
    updated_by_name: str | None


def _day_arg(name: str) -> dt.date | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"日期格式为 YYYY-MM-DD (query parameter {name!r})") from None


def _text_arg(name: str) -> str | None:
    raw = request.args.get(name) or None
    if raw is not None and (len(raw) > 80 or "\x00" in raw):
        raise ApiError(400, "bad_request", f"查询条件过长或含有非法字符 (query parameter {name!r})")
    return raw


def register(r: RouteDecorator, *, outpatient: Outpatient) -> None:
    schedule = outpatient.schedule
    bookings = outpatient.bookings

    # ---- slot rules (SCH-2) ------------------------------------------------------------------

    @r("GET", "/api/v1/admin/doctors/<doctor_id>/slot-rule", summary="A doctor's slot rule",
       permission="admin.schedule", tag="schedule", response=SlotRule)
    async def get_rule(ctx: RequestContext, doctor_id: str) -> Any:
        return msgspec.to_builtins(await schedule.rule(doctor_id))

    @r("PUT", "/api/v1/admin/doctors/<doctor_id>/slot-rule", summary="Set a doctor's slot rule",
       permission="admin.schedule", body=SlotRule, tag="schedule", response=SlotRule)
    async def put_rule(ctx: RequestContext, body: SlotRule, doctor_id: str) -> Any:
        assert ctx.principal is not None
        return msgspec.to_builtins(await schedule.set_rule(doctor_id, body, ctx.principal.account_id))

    # ---- rosters and their approval (SCH-3..6) -------------------------------------------------

    @r("POST", "/api/v1/admin/rosters", summary="Submit a roster or change for a doctor",
       permission="admin.schedule", body=RosterRequest, tag="schedule", response=RosterView, status=201)
    async def admin_roster(ctx: RequestContext, body: RosterRequest) -> Any:
        assert ctx.principal is not None
        if not body.doctor_id:
            raise ApiError(422, "invalid", "请选择医生 (doctor_id is required)")
        view = await schedule.submit(body, ctx.principal.account_id, doctor_id=body.doctor_id)
        return json_response(view, 201)

    @r("GET", "/api/v1/admin/rosters", summary="Roster requests, newest first", permission="admin.schedule",
       tag="schedule", query=("status", "doctor"), response=RostersView)
    async def admin_rosters(ctx: RequestContext) -> Any:
        return {"rosters": await schedule.rosters(status=_text_arg("status"), doctor_id=_text_arg("doctor"))}

    @r("POST", "/api/v1/admin/rosters/<roster_id>/decide", summary="Approve (opens/changes sessions) or reject",
       permission="admin.schedule", body=DecisionBody, tag="schedule", response=DecidedView)
    async def decide(ctx: RequestContext, body: DecisionBody, roster_id: str) -> Any:
        assert ctx.principal is not None
        if body.approve:
            return await schedule.approve(roster_id, ctx.principal.account_id)
        return await schedule.reject(roster_id, ctx.principal.account_id, body.reason)

    # ---- sessions: a doctor cannot come (SCH-6, SCH-12) ----------------------------------------

    @r("GET", "/api/v1/admin/sessions", summary="Clinic sessions in every status, by day, doctor, department",
       permission="admin.schedule", tag="schedule", query=("from", "days", "doctor", "department"),
       response=ManagedSessionsView)
    async def admin_sessions(ctx: RequestContext) -> Any:
        day_from = _day_arg("from") or dt.datetime.now(BEIJING).date()
        return {"sessions": await schedule.sessions(
            day_from=day_from, days=int_arg("days", 7, 1, 31), doctor_id=_text_arg("doctor"),
            department_id=_text_arg("department"))}

    @r("POST", "/api/v1/admin/sessions/<session_id>/cancel",
       summary="Cancel an open session: every booked patient is told and refunded (answers how many)",
       permission="admin.schedule", body=CancelSessionBody, tag="schedule", response=SessionChangedView)
    async def cancel_session(ctx: RequestContext, body: CancelSessionBody, session_id: str) -> Any:
        assert ctx.principal is not None
        return await schedule.change_session(session_id, "cancel", ctx.principal.account_id, reason=body.reason)

    @r("POST", "/api/v1/admin/sessions/<session_id>/substitute",
       summary="Hand an open session to a substitute doctor: every booked patient is told (answers how many)",
       permission="admin.schedule", body=SubstituteBody, tag="schedule", response=SessionChangedView)
    async def substitute_session(ctx: RequestContext, body: SubstituteBody, session_id: str) -> Any:
        assert ctx.principal is not None
        return await schedule.change_session(session_id, "substitute", ctx.principal.account_id, reason=body.reason,
                                             substitute_id=body.substitute_id)

    # ---- booking records (SCH-7) -------------------------------------------------------------

    @r("GET", "/api/v1/admin/bookings", summary="Booking records by time, channel, patient, doctor, department",
       permission="admin.bookings", tag="booking",
       query=("from", "to", "channel", "patient", "doctor", "department", "status", "limit", "offset"),
       response=BookingsPageView)
    async def admin_bookings(ctx: RequestContext) -> Any:
        return await bookings.search_page(
            day_from=_day_arg("from"), day_to=_day_arg("to"), channel=_text_arg("channel"),
            patient_id=_text_arg("patient"), doctor_id=_text_arg("doctor"), department_id=_text_arg("department"),
            status=_text_arg("status"), limit=int_arg("limit", 100, 1, 1000), offset=int_arg("offset", 0, 0, 1_000_000))

    # ---- the no-show rule and the blacklist (SCH-10) -------------------------------------------

    @r("GET", "/api/v1/admin/blacklist", summary="No-show blacklist (active entries; all=1: every entry)",
       permission="admin.bookings", tag="booking", query=("all",), response=BlacklistView)
    async def blacklist(ctx: RequestContext) -> Any:
        return {"entries": await bookings.blacklist(active_only=request.args.get("all") not in ("1", "true"))}

    @r("POST", "/api/v1/admin/blacklist/<entry_id>/lift", summary="Lift a blacklist entry, with a reason (audited)",
       permission="admin.bookings", body=LiftBody, tag="booking", response=LiftedView)
    async def lift(ctx: RequestContext, body: LiftBody, entry_id: str) -> Any:
        assert ctx.principal is not None
        await bookings.lift(entry_id, ctx.principal.account_id, body.reason)
        return {"lifted": entry_id}

    @r("GET", "/api/v1/admin/no-show-rule", summary="The no-show rule in force", permission="admin.bookings",
       tag="booking", response=NoShowRuleView)
    async def get_no_show_rule(ctx: RequestContext) -> Any:
        return await bookings.no_show_rule()

    @r("PUT", "/api/v1/admin/no-show-rule", summary="Set the no-show rule (e.g. 3 in 90 days -> 30 days; audited)",
       permission="admin.bookings", body=NoShowRuleBody, tag="booking", response=NoShowRuleView)
    async def no_show_rule(ctx: RequestContext, body: NoShowRuleBody) -> Any:
        assert ctx.principal is not None
        await bookings.set_no_show_rule(
            max_no_shows=body.max_no_shows, window_days=body.window_days, ban_days=body.ban_days,
            enabled=body.enabled, by=ctx.principal.account_id)
        return await bookings.no_show_rule()

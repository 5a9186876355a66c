"""Slot rules, rosters and schedule changes with approval (SCH-2..6, SCH-9, DOC-27).

A roster is a request: a doctor (or an admin on their behalf) submits sessions; an admin
approves or rejects it with a reason. Approval is what changes the slot pools:

=============  ==============================================================================
kind           on approval
=============  ==============================================================================
regular/extra  open each session (slots from the doctor's slot rule) in its slot pool
add_slots      add same-day extra slots to an open session
cancel/leave   cancel each session: every booked patient is told (in-app and SMS) and refunded
substitute     another doctor sees the session's patients; every booked patient is told
=============  ==============================================================================

Approval asks each pool in turn; every step is idempotent, so approving again after a failure
finishes the job. Every submission and decision is audited.

When a doctor cannot come, an admin changes one open session at once (:meth:`Schedule.change_session`):
a cancel or substitute roster submitted and approved by that admin, so the change has the same
record, audit and notices as an approved request; the answer says how many patients were told.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

import msgspec
import orjson

from carehub.actors.slot_pool import (
    BEIJING,
    PERIODS,
    AddSlots,
    CancelSession,
    OpenSession,
    SessionPlan,
    SessionStatus,
    SubstituteSession,
    pool_address,
)
from carehub.hub import Hub, InvalidTransition, Lifecycle, Refusal
from carehub.storage.audit import AuditEntry, AuditLog
from carehub.storage.outpatient import ScheduleStore

from .errors import ScheduleRefused

KINDS = ("regular", "extra", "add_slots", "cancel", "leave", "substitute")
PERIOD_START = {"am": dt.time(8, 0), "pm": dt.time(13, 30), "night": dt.time(18, 0)}
PERIOD_HOURS = {"am": 4.0, "pm": 4.0, "night": 3.0}


class RosterStatus(enum.StrEnum):
    """Where a roster request is: submitted, then approved (its sessions changed) or rejected, once."""

    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


#: a roster is decided once: approved (which changes the slot pools) or rejected with a reason
ROSTER: Lifecycle[RosterStatus] = Lifecycle("roster", {
    RosterStatus.SUBMITTED: {"approve": RosterStatus.APPROVED, "reject": RosterStatus.REJECTED},
})
ALREADY_DECIDED = "该申请已处理过 (already decided)"


class SlotRule(msgspec.Struct, forbid_unknown_fields=True):
    slot_minutes: int = 10
    daily_max: int = 60
    quota_app: int = 30
    quota_kiosk: int = 10
    quota_partner: int = 10
    open_days_ahead: int = 7
    open_time: str = "08:00"
    fee_fen: int = 2500
    one_per: str = "doctor_day"
    hold_minutes: int = 15
    #: check-in opens this long before the slot and closes this long after it (OUT-11)
    checkin_before_minutes: int = 60
    checkin_after_minutes: int = 30

    def check(self) -> None:
        if self.slot_minutes not in (5, 10, 15, 30):
            raise ScheduleRefused("每号时长只能是 5、10、15 或 30 分钟")
        if not 1 <= self.daily_max <= 500:
            raise ScheduleRefused("每日最大号源为 1-500")
        if min(self.quota_app, self.quota_kiosk, self.quota_partner) < 0:
            raise ScheduleRefused("渠道配额不能为负数")
        if not 0 <= self.open_days_ahead <= 90:
            raise ScheduleRefused("提前放号天数为 0-90")
        try:
            dt.time.fromisoformat(self.open_time)
        except ValueError:
            raise ScheduleRefused("放号时间格式为 HH:MM") from None
        if not 0 <= self.fee_fen <= 1_000_000:
            raise ScheduleRefused("挂号费超出范围")
        if self.one_per not in ("doctor_day", "session"):
            raise ScheduleRefused("one_per 只能是 doctor_day 或 session")
        if not 1 <= self.hold_minutes <= 120:
            raise ScheduleRefused("未支付保留时长为 1-120 分钟")
        if not 0 <= self.checkin_before_minutes <= 1440 or not 0 <= self.checkin_after_minutes <= 240:
            raise ScheduleRefused("签到时间窗为号源时间前 0-1440 分钟至后 0-240 分钟")


class RosterSession(msgspec.Struct, forbid_unknown_fields=True):
    day: dt.date
    period: str
    room: str = ""
    start: str | None = None  # HH:MM, Beijing time; default by period
    capacity: int | None = None  # default: the rule's slots for the period
    count: int | None = None  # add_slots only


class RosterRequest(msgspec.Struct, forbid_unknown_fields=True):
    kind: str
    sessions: list[RosterSession]
    reason: str = ""
    doctor_id: str | None = None  # admins submit for a doctor
    substitute_id: str | None = None


class Schedule:
    def __init__(self, hub: Hub, audit: AuditLog, *, store: ScheduleStore) -> None:
        self.store = store
        self.hub = hub
        self.audit = audit

    # ---- slot rules ------------------------------------------------------------------------

    async def rule(self, doctor_id: str) -> SlotRule:
        row = await self.store.rule(doctor_id)
        if row is None:
            return SlotRule()
        return SlotRule(**{f: row[f] for f in SlotRule.__struct_fields__})

    async def set_rule(self, doctor_id: str, rule: SlotRule, actor_id: str) -> SlotRule:
        rule.check()
        await self._doctor(doctor_id)
        now = dt.datetime.now(dt.UTC)
        await self.store.set_rule(doctor_id, {f: getattr(rule, f) for f in SlotRule.__struct_fields__}, now,
                                  actor_id)
        await self.audit.append(AuditEntry(action="schedule.rule", target=f"doctor/{doctor_id}", actor_id=actor_id,
                                           detail={"rule": msgspec.json.encode(rule).decode()}))
        return rule

    async def _doctor(self, doctor_id: str) -> dict[str, Any]:
        row = await self.store.doctor(doctor_id)
        if row is None:
            raise ScheduleRefused("没有这位医生 (no such doctor)", code="not_found")
        return row

    # ---- rosters ---------------------------------------------------------------------------

    async def submit(self, request: RosterRequest, submitter: str, *, doctor_id: str) -> dict[str, Any]:
        if request.kind not in KINDS:
            raise ScheduleRefused(f"申请类型只能是 {', '.join(KINDS)}")
        if not 1 <= len(request.sessions) <= 200:
            raise ScheduleRefused("每次申请包含 1-200 个出诊时段")
        for s in request.sessions:
            if s.period not in PERIODS:
                raise ScheduleRefused(f"时段只能是 {', '.join(PERIODS)}")
            if request.kind == "add_slots" and not (s.count and 1 <= s.count <= 100):
                raise ScheduleRefused("加号数量为 1-100")
        if request.kind == "substitute" and not request.substitute_id:
            raise ScheduleRefused("替诊申请需要指定替诊医生 (substitute_id)")
        if request.kind in ("cancel", "leave", "substitute") and not request.reason.strip():
            raise ScheduleRefused("停诊、请假和替诊需要填写原因")
        doctor = await self._doctor(doctor_id)
        if request.substitute_id:
            await self._doctor(request.substitute_id)
        roster_id = uuid.uuid4().hex[:16]
        now = dt.datetime.now(dt.UTC)
        await self.store.add_roster({
            "id": roster_id, "doctor_id": doctor_id, "department_id": doctor["department_id"], "kind": request.kind,
            "status": RosterStatus.SUBMITTED, "sessions": msgspec.json.encode(request.sessions).decode(),
            "substitute_id": request.substitute_id, "reason": request.reason[:500], "submitted_by": submitter,
            "submitted_at": now,
        })
        await self.audit.append(AuditEntry(action="schedule.submit", target=f"roster/{roster_id}", actor_id=submitter,
                                           detail={"kind": request.kind, "doctor": doctor_id,
                                                   "sessions": len(request.sessions)}))
        return await self.roster(roster_id)

    async def roster(self, roster_id: str) -> dict[str, Any]:
        return _roster_view(await self._roster(roster_id))

    async def _roster(self, roster_id: str) -> dict[str, Any]:
        row = await self.store.roster(roster_id)
        if row is None:
            raise ScheduleRefused("没有这个排班申请 (no such roster)", code="not_found")
        return row

    async def rosters(self, *, status: str | None = None, doctor_id: str | None = None) -> list[dict[str, Any]]:
        rows = await self.store.rosters(status=status, doctor_id=doctor_id)
        return [_roster_view(r) for r in rows]

    async def reject(self, roster_id: str, actor_id: str, reason: str) -> dict[str, Any]:
        if not reason.strip():
            raise ScheduleRefused("驳回需要填写原因")
        row = await self._roster(roster_id)  # 404 when missing
        rejected = ROSTER.step(RosterStatus(row["status"]), "reject", message=ALREADY_DECIDED, code="already_decided")
        if not await self.store.decide(roster_id, was=RosterStatus.SUBMITTED, status=rejected, by=actor_id,
                                       at=dt.datetime.now(dt.UTC), reason=reason[:500]):
            # decided by someone else since it was read: refused from the state it is in now
            now_in = RosterStatus((await self._roster(roster_id))["status"])
            raise InvalidTransition(now_in, "reject", message=ALREADY_DECIDED, code="already_decided")
        await self.audit.append(AuditEntry(action="schedule.reject", target=f"roster/{roster_id}", actor_id=actor_id,
                                           detail={"reason": reason[:200]}))
        return await self.roster(roster_id)

    async def approve(self, roster_id: str, actor_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
        row = await self._roster(roster_id)
        approved = ROSTER.step(RosterStatus(row["status"]), "approve", message=ALREADY_DECIDED, code="already_decided")
        now = now or dt.datetime.now(dt.UTC)
        sessions = msgspec.json.decode(row["sessions"].encode(), type=list[RosterSession])
        doctor = await self._doctor(row["doctor_id"])
        results = []
        try:
            if row["kind"] in ("regular", "extra"):
                rule = await self.rule(row["doctor_id"])
                per_day: dict[dt.date, int] = {}
                plans = [self.plan(rule, s, doctor["department_id"]) for s in sessions]
                for plan, s in zip(plans, sessions, strict=True):
                    per_day[s.day] = per_day.get(s.day, 0) + plan.capacity
                over = [d for d, n in per_day.items() if n > rule.daily_max]
                if over:
                    raise ScheduleRefused(f"{over[0]} 的号源数超过每日最大号源 {rule.daily_max}")
                for plan, s in zip(plans, sessions, strict=True):
                    results.append(await self.hub.ask(
                        pool_address(row["doctor_id"], s.day),
                        OpenSession(plan, doctor_name=doctor["display_name"])))
            else:
                substitute = await self._doctor(row["substitute_id"]) if row["substitute_id"] else None
                for s in sessions:
                    address = pool_address(row["doctor_id"], s.day)
                    message: msgspec.Struct
                    if row["kind"] == "add_slots":
                        message = AddSlots(s.period, s.count or 0)
                    elif row["kind"] in ("cancel", "leave"):
                        reason = row["reason"] or ("医生请假" if row["kind"] == "leave" else "停诊")
                        message = CancelSession(s.period, reason)
                    else:
                        assert substitute is not None
                        message = SubstituteSession(s.period, substitute["id"], substitute["display_name"],
                                                    row["reason"])
                    try:
                        results.append(await self.hub.ask(address, message))
                    except Refusal as err:
                        if row["kind"] in ("cancel", "leave") and err.code == "not_found":
                            results.append({"skipped": f"{s.day} {s.period}: 无出诊"})
                            continue
                        raise
        except Refusal as err:
            # every pool refusal here was a 409 (its own code, "invalid" or "not_found", says 422/404 elsewhere)
            raise ScheduleRefused(f"审批未完成, 可修正后再次审批: {err.message}", code="roster_incomplete") from None
        # a second approval running beside this one did the same idempotent steps: either may record it
        await self.store.decide(roster_id, was=RosterStatus.SUBMITTED, status=approved, by=actor_id, at=now)
        await self.audit.append(AuditEntry(action="schedule.approve", target=f"roster/{roster_id}", actor_id=actor_id,
                                           detail={"kind": row["kind"], "sessions": len(sessions)}))
        return {**await self.roster(roster_id), "results": results, "told": _told(row["kind"], results)}

    # ---- sessions --------------------------------------------------------------------------

    async def sessions(self, *, day_from: dt.date, days: int, doctor_id: str | None = None,
                       department_id: str | None = None) -> list[dict[str, Any]]:
        """Clinic sessions of ``days`` days from ``day_from`` in every status (open, cancelled, closed)."""
        if not 1 <= days <= 31:
            raise ScheduleRefused("一次最多查看 31 天的出诊")
        rows = await self.store.sessions(day_from=day_from, day_to=day_from + dt.timedelta(days=days - 1),
                                         doctor_id=doctor_id, department_id=department_id)
        return [_session_view(r) for r in rows]

    async def change_session(self, session_id: str, kind: str, actor_id: str, *, reason: str,
                             substitute_id: str | None = None) -> dict[str, Any]:
        """A doctor cannot come: cancel an open session (every booked patient told and refunded) or hand it
        to ``substitute_id`` (every booked patient told). Recorded as a roster the admin submits and
        approves at once; answers the roster, the session as it is now and ``told``, the patients told."""
        if kind not in ("cancel", "substitute"):
            raise ScheduleRefused("只能停诊或替诊")
        session = await self.store.session(session_id)
        if session is None:
            raise ScheduleRefused("没有这个出诊 (no such session)", code="not_found")
        if session["status"] != SessionStatus.OPEN:
            raise ScheduleRefused("该出诊已停诊或已结束 (the session is not open)", code="invalid_state")
        if substitute_id is not None and substitute_id == session["doctor_id"]:
            raise ScheduleRefused("替诊医生不能是本人")
        request = RosterRequest(kind, [RosterSession(session["day"], session["period"], session["room"])],
                                reason=reason, doctor_id=session["doctor_id"], substitute_id=substitute_id)
        submitted = await self.submit(request, actor_id, doctor_id=session["doctor_id"])
        approved = await self.approve(submitted["id"], actor_id)
        now = await self.store.session(session_id)
        assert now is not None
        told = approved.pop("told")
        approved.pop("results")
        return {"roster": approved, "session": _session_view(now), "told": told}

    def plan(self, rule: SlotRule, s: RosterSession, department_id: str) -> SessionPlan:
        start = dt.time.fromisoformat(s.start) if s.start else PERIOD_START[s.period]
        starts_at = dt.datetime.combine(s.day, start, BEIJING)
        capacity = s.capacity or min(rule.daily_max, int(PERIOD_HOURS[s.period] * 60 // rule.slot_minutes))
        if not 1 <= capacity <= 500:
            raise ScheduleRefused("每个时段号源为 1-500")
        open_at = dt.time.fromisoformat(rule.open_time)
        opens_at = dt.datetime.combine(s.day - dt.timedelta(days=rule.open_days_ahead), open_at, BEIJING)
        return SessionPlan(
            period=s.period, department_id=department_id, room=s.room or "诊室", starts_at=starts_at,
            slot_minutes=rule.slot_minutes, capacity=capacity, fee_fen=rule.fee_fen, opens_at=opens_at,
            quotas={"app": rule.quota_app, "kiosk": rule.quota_kiosk, "partner": rule.quota_partner},
            hold_seconds=rule.hold_minutes * 60, one_per=rule.one_per,
            checkin_before_minutes=rule.checkin_before_minutes, checkin_after_minutes=rule.checkin_after_minutes,
        )


def _told(kind: str, results: list[dict[str, Any]]) -> int | None:
    """How many booked patients an approved cancellation or substitution told (None: other kinds)."""
    if kind in ("cancel", "leave"):
        return sum(len(r.get("cancelled", ())) for r in results)
    if kind == "substitute":
        return sum(len(r.get("notified", ())) for r in results)
    return None


def _session_view(row: Any) -> dict[str, Any]:
    return {
        "session_id": row["id"], "doctor_id": row["doctor_id"], "doctor_name": row["doctor_name"],
        "department_id": row["department_id"], "day": row["day"].isoformat(), "period": row["period"],
        "room": row["room"], "starts_at": row["starts_at"].isoformat(), "ends_at": row["ends_at"].isoformat(),
        "capacity": row["capacity"], "booked": row["booked"], "fee_fen": row["fee_fen"], "status": row["status"],
        "substitute_id": row["substitute_id"], "substitute_name": row["substitute_name"],
    }


def _roster_view(row: Any) -> dict[str, Any]:
    view = dict(row)
    view["sessions"] = orjson.loads(row["sessions"])
    for key in ("submitted_at", "decided_at"):
        if view[key] is not None:
            view[key] = view[key].isoformat()
    return view

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
"""

from __future__ import annotations

import datetime as dt
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
    SubstituteSession,
    pool_address,
)
from carehub.hub import Hub, Refusal
from carehub.storage.audit import AuditEntry, AuditLog
from carehub.storage.db import Database

KINDS = ("regular", "extra", "add_slots", "cancel", "leave", "substitute")
PERIOD_START = {"am": dt.time(8, 0), "pm": dt.time(13, 30), "night": dt.time(18, 0)}
PERIOD_HOURS = {"am": 4.0, "pm": 4.0, "night": 3.0}


class ScheduleError(Exception):
    def __init__(self, message: str, *, status: int = 422, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


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
    #: check-in opens this long before the slot and closes this long after it (OUT-8)
    checkin_before_minutes: int = 60
    checkin_after_minutes: int = 30

    def check(self) -> None:
        if self.slot_minutes not in (5, 10, 15, 30):
            raise ScheduleError("每号时长只能是 5、10、15 或 30 分钟")
        if not 1 <= self.daily_max <= 500:
            raise ScheduleError("每日最大号源为 1-500")
        if min(self.quota_app, self.quota_kiosk, self.quota_partner) < 0:
            raise ScheduleError("渠道配额不能为负数")
        if not 0 <= self.open_days_ahead <= 90:
            raise ScheduleError("提前放号天数为 0-90")
        try:
            dt.time.fromisoformat(self.open_time)
        except ValueError:
            raise ScheduleError("放号时间格式为 HH:MM") from None
        if not 0 <= self.fee_fen <= 1_000_000:
            raise ScheduleError("挂号费超出范围")
        if self.one_per not in ("doctor_day", "session"):
            raise ScheduleError("one_per 只能是 doctor_day 或 session")
        if not 1 <= self.hold_minutes <= 120:
            raise ScheduleError("未支付保留时长为 1-120 分钟")
        if not 0 <= self.checkin_before_minutes <= 1440 or not 0 <= self.checkin_after_minutes <= 240:
            raise ScheduleError("签到时间窗为号源时间前 0-1440 分钟至后 0-240 分钟")


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
    def __init__(self, db: Database, hub: Hub, audit: AuditLog) -> None:
        self.db = db
        self.hub = hub
        self.audit = audit

    # ---- slot rules ------------------------------------------------------------------------

    async def rule(self, doctor_id: str) -> SlotRule:
        row = await self.db.fetchrow("SELECT * FROM slot_rules WHERE doctor_id = $1", doctor_id)
        if row is None:
            return SlotRule()
        return SlotRule(**{f: row[f] for f in SlotRule.__struct_fields__})

    async def set_rule(self, doctor_id: str, rule: SlotRule, actor_id: str) -> SlotRule:
        rule.check()
        await self._doctor(doctor_id)
        now = dt.datetime.now(dt.UTC)
        fields = list(SlotRule.__struct_fields__)
        values = [getattr(rule, f) for f in fields]
        updated = await self.db.execute(
            f"UPDATE slot_rules SET {', '.join(f'{f} = ${i + 2}' for i, f in enumerate(fields))},"
            f" updated_at = ${len(fields) + 2}, updated_by = ${len(fields) + 3} WHERE doctor_id = $1",
            doctor_id, *values, now, actor_id,
        )
        if updated.endswith(" 0"):
            await self.db.execute(
                f"INSERT INTO slot_rules (doctor_id, {', '.join(fields)}, updated_at, updated_by)"
                f" VALUES ({', '.join(f'${i + 1}' for i in range(len(fields) + 3))})",
                doctor_id, *values, now, actor_id,
            )
        await self.audit.append(AuditEntry(action="schedule.rule", target=f"doctor/{doctor_id}", actor_id=actor_id,
                                           detail={"rule": msgspec.json.encode(rule).decode()}))
        return rule

    async def _doctor(self, doctor_id: str) -> dict[str, Any]:
        row = await self.db.fetchrow(
            "SELECT a.id, a.display_name, d.department_id FROM doctors d JOIN accounts a ON a.id = d.account_id"
            " WHERE a.id = $1 AND NOT a.disabled", doctor_id,
        )
        if row is None:
            raise ScheduleError("没有这位医生 (no such doctor)", status=404, code="not_found")
        return dict(row)

    # ---- rosters ---------------------------------------------------------------------------

    async def submit(self, request: RosterRequest, submitter: str, *, doctor_id: str) -> dict[str, Any]:
        if request.kind not in KINDS:
            raise ScheduleError(f"申请类型只能是 {', '.join(KINDS)}")
        if not 1 <= len(request.sessions) <= 200:
            raise ScheduleError("每次申请包含 1-200 个出诊时段")
        for s in request.sessions:
            if s.period not in PERIODS:
                raise ScheduleError(f"时段只能是 {', '.join(PERIODS)}")
            if request.kind == "add_slots" and not (s.count and 1 <= s.count <= 100):
                raise ScheduleError("加号数量为 1-100")
        if request.kind == "substitute" and not request.substitute_id:
            raise ScheduleError("替诊申请需要指定替诊医生 (substitute_id)")
        if request.kind in ("cancel", "leave", "substitute") and not request.reason.strip():
            raise ScheduleError("停诊、请假和替诊需要填写原因")
        doctor = await self._doctor(doctor_id)
        if request.substitute_id:
            await self._doctor(request.substitute_id)
        roster_id = uuid.uuid4().hex[:16]
        now = dt.datetime.now(dt.UTC)
        await self.db.execute(
            "INSERT INTO rosters (id, doctor_id, department_id, kind, status, sessions, substitute_id, reason,"
            " submitted_by, submitted_at) VALUES ($1, $2, $3, $4, 'submitted', $5, $6, $7, $8, $9)",
            roster_id, doctor_id, doctor["department_id"], request.kind,
            msgspec.json.encode(request.sessions).decode(), request.substitute_id, request.reason[:500], submitter, now,
        )
        await self.audit.append(AuditEntry(action="schedule.submit", target=f"roster/{roster_id}", actor_id=submitter,
                                           detail={"kind": request.kind, "doctor": doctor_id,
                                                   "sessions": len(request.sessions)}))
        return await self.roster(roster_id)

    async def roster(self, roster_id: str) -> dict[str, Any]:
        row = await self.db.fetchrow("SELECT * FROM rosters WHERE id = $1", roster_id)
        if row is None:
            raise ScheduleError("没有这个排班申请 (no such roster)", status=404, code="not_found")
        return _roster_view(row)

    async def rosters(self, *, status: str | None = None, doctor_id: str | None = None) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT * FROM rosters WHERE ($1::varchar IS NULL OR status = $1)"
            " AND ($2::varchar IS NULL OR doctor_id = $2)"
            " ORDER BY submitted_at DESC LIMIT 200", status, doctor_id,
        )
        return [_roster_view(r) for r in rows]

    async def reject(self, roster_id: str, actor_id: str, reason: str) -> dict[str, Any]:
        if not reason.strip():
            raise ScheduleError("驳回需要填写原因")
        done = await self.db.execute(
            "UPDATE rosters SET status = 'rejected', decided_by = $2, decided_at = $3, decision_reason = $4"
            " WHERE id = $1 AND status = 'submitted'", roster_id, actor_id, dt.datetime.now(dt.UTC), reason[:500],
        )
        if done.endswith(" 0"):
            await self.roster(roster_id)  # 404 when missing
            raise ScheduleError("该申请已处理过 (already decided)", status=409, code="already_decided")
        await self.audit.append(AuditEntry(action="schedule.reject", target=f"roster/{roster_id}", actor_id=actor_id,
                                           detail={"reason": reason[:200]}))
        return await self.roster(roster_id)

    async def approve(self, roster_id: str, actor_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
        row = await self.db.fetchrow("SELECT * FROM rosters WHERE id = $1", roster_id)
        if row is None:
            raise ScheduleError("没有这个排班申请 (no such roster)", status=404, code="not_found")
        if row["status"] != "submitted":
            raise ScheduleError("该申请已处理过 (already decided)", status=409, code="already_decided")
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
                    raise ScheduleError(f"{over[0]} 的号源数超过每日最大号源 {rule.daily_max}")
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
            raise ScheduleError(f"审批未完成, 可修正后再次审批: {err.message}", status=409, code=err.code) from None
        await self.db.execute(
            "UPDATE rosters SET status = 'approved', decided_by = $2, decided_at = $3"
            " WHERE id = $1 AND status = 'submitted'",
            roster_id, actor_id, now,
        )
        await self.audit.append(AuditEntry(action="schedule.approve", target=f"roster/{roster_id}", actor_id=actor_id,
                                           detail={"kind": row["kind"], "sessions": len(sessions)}))
        return {**await self.roster(roster_id), "results": results}

    def plan(self, rule: SlotRule, s: RosterSession, department_id: str) -> SessionPlan:
        start = dt.time.fromisoformat(s.start) if s.start else PERIOD_START[s.period]
        starts_at = dt.datetime.combine(s.day, start, BEIJING)
        capacity = s.capacity or min(rule.daily_max, int(PERIOD_HOURS[s.period] * 60 // rule.slot_minutes))
        if not 1 <= capacity <= 500:
            raise ScheduleError("每个时段号源为 1-500")
        open_at = dt.time.fromisoformat(rule.open_time)
        opens_at = dt.datetime.combine(s.day - dt.timedelta(days=rule.open_days_ahead), open_at, BEIJING)
        return SessionPlan(
            period=s.period, department_id=department_id, room=s.room or "诊室", starts_at=starts_at,
            slot_minutes=rule.slot_minutes, capacity=capacity, fee_fen=rule.fee_fen, opens_at=opens_at,
            quotas={"app": rule.quota_app, "kiosk": rule.quota_kiosk, "partner": rule.quota_partner},
            hold_seconds=rule.hold_minutes * 60, one_per=rule.one_per,
            checkin_before_minutes=rule.checkin_before_minutes, checkin_after_minutes=rule.checkin_after_minutes,
        )


def _roster_view(row: Any) -> dict[str, Any]:
    view = dict(row)
    view["sessions"] = orjson.loads(row["sessions"])
    for key in ("submitted_at", "decided_at"):
        if view[key] is not None:
            view[key] = view[key].isoformat()
    return view

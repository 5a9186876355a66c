"""Statistics for the admin console (SCH-8, STAT-1, STAT-4): bookings, attendance, no-shows, sessions, payments.

Every figure is counted by **visit day** (the booking's clinic day, Asia/Shanghai), over a range of
whole months, optionally for one department, doctor and channel:

- ``bookings``: bookings that were made, i.e. every status but ``released`` (an unpaid hold that
  expired never became a booking); ``cancelled`` among them; ``attended`` = ``checked_in`` or
  ``seen``; ``no_show`` = recorded as not come; ``no_show_rate`` = no_show / (attended + no_show),
  the share of the visits that were due and not kept (None while none was due).
- ``sessions``: clinic sessions per doctor (``open`` ones held, ``cancelled`` ones apart).
- ``payments``: payment orders that were paid (paid, refunding or refunded), per method (self-pay,
  insurance, mixed), with the amounts in fen; ``net_fen`` = total - refunded.

The rules of the filters live here (months ``YYYY-MM``, at most :data:`MAX_MONTHS`, a known
channel); the counting is :class:`carehub.storage.outpatient.statistics.StatisticsStore`'s.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from carehub.actors.slot_pool import BEIJING, CHANNELS
from carehub.errors import Invalid
from carehub.storage.outpatient.statistics import BOOKING_DIMENSIONS, StatisticsFilter, StatisticsStore

#: the longest range one question may cover
MAX_MONTHS = 24
#: what bookings may be grouped by: the store's dimensions, and months (days folded)
BOOKINGS_BY = ("day", "month", "department", "doctor", "channel")
METHODS = ("self", "insurance", "mixed")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class StatisticsRefused(Invalid):
    """A statistics question that cannot be answered as asked (code ``invalid``)."""


def _month(text: str, what: str) -> dt.date:
    match = _MONTH.match(text)
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
        raise StatisticsRefused(f"{what}必须是 YYYY-MM 格式的月份 (month {text[:20]!r} is not YYYY-MM)")
    return dt.date(int(match.group(1)), int(match.group(2)), 1)


def _month_end(first: dt.date) -> dt.date:
    nxt = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return nxt - dt.timedelta(days=1)


def _id(value: str | None, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not _ID.match(value):
        raise StatisticsRefused(f"{what}编号不正确 ({what} id {value[:64]!r} is malformed)")
    return value


def _counts(by_status: dict[str, int]) -> dict[str, Any]:
    attended = by_status.get("checked_in", 0) + by_status.get("seen", 0)
    no_show = by_status.get("no_show", 0)
    due = attended + no_show
    return {
        "bookings": sum(n for s, n in by_status.items() if s != "released"),
        "cancelled": by_status.get("cancelled", 0),
        "attended": attended,
        "no_show": no_show,
        "no_show_rate": round(no_show / due, 4) if due else None,
    }


class Statistics:
    def __init__(self, store: StatisticsStore, *, today: Callable[[], dt.date] | None = None) -> None:
        self.store = store
        self.today = today or (lambda: dt.datetime.now(BEIJING).date())

    def filter(self, *, month_from: str | None = None, month_to: str | None = None, department: str | None = None,
               doctor: str | None = None, channel: str | None = None) -> StatisticsFilter:
        """The question's filter; months default to the current one (Asia/Shanghai)."""
        this_month = self.today().replace(day=1)
        first = _month(month_from, "起始月份") if month_from else None
        last = _month(month_to, "结束月份") if month_to else None
        first = first or last or this_month
        last = last or max(first, this_month)
        if last < first:
            raise StatisticsRefused("结束月份不能早于起始月份 (the range ends before it starts)")
        months = (last.year - first.year) * 12 + last.month - first.month + 1
        if months > MAX_MONTHS:
            raise StatisticsRefused(f"统计范围最多 {MAX_MONTHS} 个月 (at most {MAX_MONTHS} months at once)")
        if channel in ("", None):
            channel = None
        elif channel not in CHANNELS:
            raise StatisticsRefused(f"预约渠道只能是 {'、'.join(CHANNELS)} (unknown channel)")
        return StatisticsFilter(first, _month_end(last), _id(department, "科室"), _id(doctor, "医生"), channel)

    async def bookings(self, by: str, f: StatisticsFilter) -> dict[str, Any]:
        """Bookings, attendance and no-shows per ``by`` (day, month, department, doctor, channel)."""
        if by not in BOOKINGS_BY:
            raise StatisticsRefused(f"分组只能是 {'、'.join(BOOKINGS_BY)} (unknown grouping {by[:20]!r})")
        dimension = "day" if by == "month" else by
        assert dimension in BOOKING_DIMENSIONS
        rows = await self.store.bookings_by(dimension, f)
        statuses: dict[str, dict[str, int]] = {}
        names: dict[str, str | None] = {}
        total: dict[str, int] = {}
        for r in rows:
            key = r["key"][:7] if by == "month" else r["key"]
            per = statuses.setdefault(key, {})
            per[r["status"]] = per.get(r["status"], 0) + r["n"]
            total[r["status"]] = total.get(r["status"], 0) + r["n"]
            names[key] = r["name"]
        if by in ("day", "month"):
            keys = self._calendar(by, f)  # every day or month of the range, none left out
        elif by == "channel":
            keys = list(CHANNELS) if f.channel is None else [f.channel]
        else:
            keys = sorted(statuses, key=lambda k: (-_counts(statuses[k])["bookings"], k))
        return {
            "from": f.day_from.isoformat(), "to": f.day_to.isoformat(), "by": by,
            "rows": [{"key": k, "name": names.get(k), **_counts(statuses.get(k, {}))} for k in keys],
            "total": _counts(total),
        }

    async def sessions(self, f: StatisticsFilter) -> dict[str, Any]:
        """Clinic sessions per doctor, most first."""
        per: dict[str, dict[str, Any]] = {}
        for r in await self.store.sessions_by_doctor(f):
            row = per.setdefault(r["doctor_id"], {
                "doctor_id": r["doctor_id"], "doctor_name": r["doctor_name"], "department_id": r["department_id"],
                "department_name": r["department_name"], "sessions": 0, "cancelled": 0,
            })
            row["cancelled" if r["status"] == "cancelled" else "sessions"] += r["n"]
        rows = sorted(per.values(), key=lambda row: (-row["sessions"], row["doctor_id"]))
        return {
            "from": f.day_from.isoformat(), "to": f.day_to.isoformat(), "rows": rows,
            "total": {"sessions": sum(r["sessions"] for r in rows), "cancelled": sum(r["cancelled"] for r in rows)},
        }

    async def payments(self, f: StatisticsFilter) -> dict[str, Any]:
        """Paid orders per payment method (every method listed, zeros included)."""
        found = {r["method"]: r for r in await self.store.payments_by_method(f)}
        keys = ("orders", "total_fen", "insurance_fen", "cash_fen", "refunded_fen")
        rows = []
        for method in (*METHODS, *sorted(set(found) - set(METHODS))):
            r = found.get(method, {})
            row = {"method": method, **{k: int(r.get(k, 0)) for k in keys}}
            row["net_fen"] = row["total_fen"] - row["refunded_fen"]
            rows.append(row)
        total = {k: sum(r[k] for r in rows) for k in (*keys, "net_fen")}
        return {"from": f.day_from.isoformat(), "to": f.day_to.isoformat(), "rows": rows, "total": total}

    @staticmethod
    def _calendar(by: str, f: StatisticsFilter) -> list[str]:
        out: list[str] = []
        day = f.day_from
        while day <= f.day_to:
            if by == "day":
                out.append(day.isoformat())
                day += dt.timedelta(days=1)
            else:
                out.append(day.isoformat()[:7])
                day = _month_end(day) + dt.timedelta(days=1)
        return out


__all__ = ["BOOKINGS_BY", "MAX_MONTHS", "METHODS", "Statistics", "StatisticsFilter", "StatisticsRefused"]

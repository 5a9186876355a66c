"""The admin console's statistics (SCH-8, STAT-1, STAT-4): bookings, attendance, no-shows, sessions, payments.

Query parameters of every route: ``from`` and ``to`` (months, ``YYYY-MM``; default the current
month), ``department``, ``doctor``, ``channel`` (``app``, ``kiosk``, ``partner``). Counted by visit
day; what each figure means is :mod:`carehub.statistics`'s docstring. Permission
``admin.bookings`` (booking records and no-show rules: the same data, counted).
"""

from __future__ import annotations

from typing import Any

import msgspec
from quart import request

from carehub.statistics import Statistics, StatisticsFilter

from ..routing import RequestContext, RouteDecorator

FILTERS = ("from", "to", "department", "doctor", "channel")


class BookingCounts(msgspec.Struct):
    bookings: int
    cancelled: int
    attended: int
    no_show: int
    no_show_rate: float | None


class BookingRow(msgspec.Struct):
    """One day (``YYYY-MM-DD``), month (``YYYY-MM``), department, doctor or channel; ``name`` for
    departments and doctors."""

    key: str
    name: str | None
    bookings: int
    cancelled: int
    attended: int
    no_show: int
    no_show_rate: float | None


class BookingStatisticsView(msgspec.Struct, rename={"from_": "from"}):
    from_: str
    to: str
    by: str
    rows: list[BookingRow]
    total: BookingCounts


class SessionRow(msgspec.Struct):
    doctor_id: str
    doctor_name: str | None
    department_id: str
    department_name: str | None
    sessions: int
    cancelled: int


class SessionTotals(msgspec.Struct):
    sessions: int
    cancelled: int


class SessionStatisticsView(msgspec.Struct, rename={"from_": "from"}):
    from_: str
    to: str
    rows: list[SessionRow]
    total: SessionTotals


class PaymentTotals(msgspec.Struct):
    orders: int
    total_fen: int
    insurance_fen: int
    cash_fen: int
    refunded_fen: int
    net_fen: int


class PaymentRow(msgspec.Struct):
    method: str
    orders: int
    total_fen: int
    insurance_fen: int
    cash_fen: int
    refunded_fen: int
    net_fen: int


class PaymentStatisticsView(msgspec.Struct, rename={"from_": "from"}):
    from_: str
    to: str
    rows: list[PaymentRow]
    total: PaymentTotals


def register(r: RouteDecorator, *, statistics: Statistics) -> None:
    def question() -> StatisticsFilter:
        a = request.args
        return statistics.filter(month_from=a.get("from"), month_to=a.get("to"), department=a.get("department"),
                                 doctor=a.get("doctor"), channel=a.get("channel"))

    @r("GET", "/api/v1/admin/statistics/bookings",
       summary="Bookings, attendance and no-show rate by day, month, department, doctor or channel (SCH-8, STAT-1)",
       permission="admin.bookings", tag="statistics", query=(*FILTERS, "by"), response=BookingStatisticsView)
    async def bookings(ctx: RequestContext) -> Any:
        return await statistics.bookings(request.args.get("by", "day"), question())

    @r("GET", "/api/v1/admin/statistics/sessions", summary="Clinic sessions per doctor (SCH-8)",
       permission="admin.bookings", tag="statistics", query=FILTERS, response=SessionStatisticsView)
    async def sessions(ctx: RequestContext) -> Any:
        return await statistics.sessions(question())

    @r("GET", "/api/v1/admin/statistics/payments", summary="Paid orders by payment method (STAT-4)",
       permission="admin.bookings", tag="statistics", query=FILTERS, response=PaymentStatisticsView)
    async def payments(ctx: RequestContext) -> Any:
        return await statistics.payments(question())

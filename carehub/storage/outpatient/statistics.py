"""Statistics of the outpatient projections (SCH-8, STAT-1, STAT-4): read-only, by ranges of visit days.

Every query reads one range of visit days (``day``) with optional department, doctor and channel
filters, and groups by one column. The filters are added only when given (no ``$n IS NULL OR``
conditions, which keep PostgreSQL from using an index in a generic plan), and migration 0015's
indexes hold every column a query touches, so each is an index-only scan of that range: at
1,000,000 bookings a year's bookings by day take ~0.2 s, payments by method ~0.3 s
(``EXPLAIN ANALYZE`` figures in docs/benchmarks.md, ``web``).

Names of departments and doctors are looked up after counting, for the few keys found.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import asyncpg

from ..db import Database

#: what a bookings count may be grouped by: the column of ``bookings``
BOOKING_DIMENSIONS = {"day": "day", "department": "department_id", "doctor": "doctor_id", "channel": "channel"}
#: payment orders that were paid (a refund keeps them counted: the refund is its own figure)
PAID_STATUSES = ("paid", "refunding", "refunded")


@dataclasses.dataclass(frozen=True)
class StatisticsFilter:
    """Visit days ``day_from``..``day_to`` (both included), and optionally one department, doctor, channel."""

    day_from: dt.date
    day_to: dt.date
    department_id: str | None = None
    doctor_id: str | None = None
    channel: str | None = None

    def where(self, first: int = 1) -> tuple[str, list[Any]]:
        conds = [f"day >= ${first}", f"day <= ${first + 1}"]
        args: list[Any] = [self.day_from, self.day_to]
        for column, value in (("department_id", self.department_id), ("doctor_id", self.doctor_id),
                              ("channel", self.channel)):
            if value is not None:
                args.append(value)
                conds.append(f"{column} = ${first + len(args) - 1}")
        return " AND ".join(conds), args


async def _names(conn: asyncpg.Connection, dimension: str, keys: list[str]) -> dict[str, str]:
    if not keys:
        return {}
    if dimension == "department":
        rows = await conn.fetch("SELECT id, name FROM departments WHERE id = ANY($1::varchar[])", keys)
    elif dimension == "doctor":
        rows = await conn.fetch("SELECT id, display_name AS name FROM accounts WHERE id = ANY($1::varchar[])", keys)
    else:
        return {}
    return {r["id"]: r["name"] for r in rows}


class StatisticsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def bookings_by(self, dimension: str, f: StatisticsFilter) -> list[dict[str, Any]]:
        """Bookings per ``dimension`` value and status: ``[{key, name, status, n}]`` (``name`` for
        departments and doctors, else None); ``key`` of a day is the ISO date."""
        column = BOOKING_DIMENSIONS[dimension]  # a fixed column name, never the caller's text
        where, args = f.where()
        sql = f"SELECT {column} AS key, status, count(*) AS n FROM bookings WHERE {where} GROUP BY {column}, status"

        async def op(conn: asyncpg.Connection) -> list[dict[str, Any]]:
            rows = await conn.fetch(sql, *args)
            names = await _names(conn, dimension, sorted({r["key"] for r in rows}))
            return [
                {"key": r["key"].isoformat() if isinstance(r["key"], dt.date) else r["key"],
                 "name": names.get(r["key"]), "status": r["status"], "n": r["n"]}
                for r in rows
            ]

        return await self.db.run(op)

    async def sessions_by_doctor(self, f: StatisticsFilter) -> list[dict[str, Any]]:
        """Clinic sessions per doctor and status in the range: ``[{doctor_id, doctor_name, department_id,
        department_name, status, n}]`` (channels do not apply to sessions: ``f.channel`` is ignored)."""
        where, args = dataclasses.replace(f, channel=None).where()
        sql = ("SELECT doctor_id, department_id, status, count(*) AS n FROM clinic_sessions"
               f" WHERE {where} GROUP BY doctor_id, department_id, status")

        async def op(conn: asyncpg.Connection) -> list[dict[str, Any]]:
            rows = await conn.fetch(sql, *args)
            doctors = await _names(conn, "doctor", sorted({r["doctor_id"] for r in rows}))
            departments = await _names(conn, "department", sorted({r["department_id"] for r in rows}))
            return [
                {"doctor_id": r["doctor_id"], "doctor_name": doctors.get(r["doctor_id"]),
                 "department_id": r["department_id"], "department_name": departments.get(r["department_id"]),
                 "status": r["status"], "n": r["n"]}
                for r in rows
            ]

        return await self.db.run(op)

    async def payments_by_method(self, f: StatisticsFilter) -> list[dict[str, Any]]:
        """Paid payment orders of the range's bookings per method: ``[{method, orders, total_fen,
        insurance_fen, cash_fen, refunded_fen}]``."""
        where, args = f.where()
        statuses = ", ".join(f"'{s}'" for s in PAID_STATUSES)
        sql = ("SELECT method, count(*) AS orders, sum(total_fen) AS total_fen, sum(insurance_fen) AS insurance_fen,"
               " sum(cash_fen) AS cash_fen, sum(refunded_fen) AS refunded_fen FROM payment_orders"
               f" WHERE {where} AND status IN ({statuses}) GROUP BY method")
        rows = await self.db.fetch(sql, *args)
        return [
            {"method": r["method"], "orders": r["orders"], "total_fen": int(r["total_fen"]),
             "insurance_fen": int(r["insurance_fen"]), "cash_fen": int(r["cash_fen"]),
             "refunded_fen": int(r["refunded_fen"])}
            for r in rows
        ]

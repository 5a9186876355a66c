"""Bookings as the slot pools project them (``bookings``, ``payment_orders``): read-only here.

The pool actor is the only writer (its :class:`carehub.hub.Record` rows, in its own commit);
this store answers the questions that span pools: where a booking lives, an account's bookings,
the admin search, which pool owns a payment order.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from ..db import Database

_LIST = (
    "SELECT b.*, a.display_name AS doctor_name, s.room FROM bookings b JOIN accounts a ON a.id = b.doctor_id"
    " JOIN clinic_sessions s ON s.id = b.session_id"
)

#: the filters of the admin search ($1..$7: from, to, channel, patient, doctor, department, status)
_SEARCH = (
    " ($1::date IS NULL OR b.day >= $1) AND ($2::date IS NULL OR b.day <= $2)"
    " AND ($3::varchar IS NULL OR b.channel = $3) AND ($4::varchar IS NULL OR b.patient_id = $4)"
    " AND ($5::varchar IS NULL OR b.doctor_id = $5) AND ($6::varchar IS NULL OR b.department_id = $6)"
    " AND ($7::varchar IS NULL OR b.status = $7)"
)


def _view(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "booking_id": r["id"], "session_id": r["session_id"], "doctor_id": r["doctor_id"],
        "doctor_name": r["doctor_name"], "department_id": r["department_id"], "room": r["room"],
        "day": r["day"].isoformat(), "slot_no": r["slot_no"], "slot_at": r["slot_at"].isoformat(),
        "patient_id": r["patient_id"], "account_id": r["account_id"], "channel": r["channel"], "status": r["status"],
        "fee_fen": r["fee_fen"], "created_at": r["created_at"].isoformat(), "note": r["note"],
    }


class BookingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, booking_id: str) -> dict[str, Any] | None:
        """The projection row of one booking (None: no such booking)."""
        row = await self.db.fetchrow("SELECT * FROM bookings WHERE id = $1", booking_id)
        return None if row is None else dict(row)

    async def of_account(self, account_id: str, since: dt.date | None) -> list[dict[str, Any]]:
        """An account's bookings (every family member), latest slot first."""
        rows = await self.db.fetch(
            _LIST + " WHERE b.account_id = $1 AND ($2::date IS NULL OR b.day >= $2) ORDER BY b.slot_at DESC LIMIT 200",
            account_id, since,
        )
        return [_view(r) for r in rows]

    async def search(
        self, *, day_from: dt.date | None, day_to: dt.date | None, channel: str | None, patient_id: str | None,
        doctor_id: str | None, department_id: str | None, status: str | None, limit: int, offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Booking records by time, channel, patient, doctor, department and status (SCH-7), newest first;
        ``offset`` rows skipped (a page of the admin console); ``patient_name_enc``: the sealed name."""
        rows = await self.db.fetch(
            "SELECT b.*, a.display_name AS doctor_name, s.room, pt.name_enc AS patient_name_enc FROM bookings b"
            " JOIN accounts a ON a.id = b.doctor_id JOIN clinic_sessions s ON s.id = b.session_id"
            " LEFT JOIN patients pt ON pt.id = b.patient_id"
            " WHERE" + _SEARCH + " ORDER BY b.created_at DESC, b.id LIMIT $8 OFFSET $9",
            day_from, day_to, channel, patient_id, doctor_id, department_id, status, limit, offset,
        )
        return [{**_view(r), "patient_name_enc": r["patient_name_enc"]} for r in rows]

    async def count(
        self, *, day_from: dt.date | None, day_to: dt.date | None, channel: str | None, patient_id: str | None,
        doctor_id: str | None, department_id: str | None, status: str | None,
    ) -> int:
        """How many booking records :meth:`search` finds with these filters (all pages)."""
        found = await self.db.fetchval(
            "SELECT count(*) FROM bookings b WHERE" + _SEARCH,
            day_from, day_to, channel, patient_id, doctor_id, department_id, status,
        )
        return int(found)

    async def order_owner(self, out_trade_no: str) -> dict[str, Any] | None:
        """A booking's payment order: its method and the doctor and day of its pool (None: not a booking's)."""
        row = await self.db.fetchrow(
            "SELECT o.method, b.doctor_id, b.day FROM payment_orders o JOIN bookings b ON b.id = o.booking_id"
            " WHERE o.out_trade_no = $1", out_trade_no,
        )
        return None if row is None else dict(row)

    async def appointment(self, booking_id: str) -> dict[str, Any] | None:
        """What the HIS push needs beside the pool's view: names, slot length, when it was made, the sealed name."""
        row = await self.db.fetchrow(
            "SELECT a.display_name AS doctor_name, d.name AS department_name, s.slot_minutes, k.created_at,"
            " p.name_enc FROM bookings k JOIN clinic_sessions s ON s.id = k.session_id"
            " JOIN accounts a ON a.id = k.doctor_id JOIN departments d ON d.id = k.department_id"
            " LEFT JOIN patients p ON p.id = k.patient_id WHERE k.id = $1", booking_id,
        )
        return None if row is None else dict(row)


__all__ = ["BookingStore"]

"""Clinic sessions for patients looking for a slot, doctor cards, and the hall screens' calls.

``clinic_sessions`` and ``queue_calls`` are projections of the slot pool and waiting queue
actors; this store only reads them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..db import Database


class SessionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def search(
        self, *, department_id: str | None, doctor_id: str | None, name: str | None, specialty: str | None,
        day_from: dt.date, days: int,
    ) -> list[dict[str, Any]]:
        """Open sessions from ``day_from`` for ``days`` days (a name or specialty matches as a substring)."""
        rows = await self.db.fetch(
            "SELECT s.*, a.display_name AS doctor_name, d.title, d.specialty FROM clinic_sessions s"
            " JOIN accounts a ON a.id = s.doctor_id JOIN doctors d ON d.account_id = s.doctor_id"
            " WHERE s.day >= $1 AND s.day < $2 AND ($3::varchar IS NULL OR s.department_id = $3)"
            " AND ($4::varchar IS NULL OR s.doctor_id = $4) AND ($5::varchar IS NULL OR a.display_name LIKE $5)"
            " AND ($6::varchar IS NULL OR d.specialty LIKE $6) AND s.status = 'open'"
            " ORDER BY s.day, s.starts_at, s.doctor_id LIMIT 500",
            day_from, day_from + dt.timedelta(days=days), department_id, doctor_id,
            f"%{name}%" if name else None, f"%{specialty}%" if specialty else None,
        )
        return [{
            "session_id": r["id"], "doctor_id": r["doctor_id"], "doctor_name": r["doctor_name"],
            "title": r["title"], "specialty": r["specialty"], "department_id": r["department_id"],
            "day": r["day"].isoformat(), "period": r["period"], "room": r["room"],
            "starts_at": r["starts_at"].isoformat(), "capacity": r["capacity"],
            "free": r["capacity"] - r["booked"], "fee_fen": r["fee_fen"], "opens_at": r["opens_at"].isoformat(),
        } for r in rows]

    async def doctor(self, doctor_id: str) -> dict[str, Any] | None:
        """An enabled doctor's name, title, specialty and department (None: no such doctor)."""
        row = await self.db.fetchrow(
            "SELECT a.id, a.display_name, d.title, d.specialty, d.department_id, p.name AS department"
            " FROM doctors d JOIN accounts a ON a.id = d.account_id JOIN departments p ON p.id = d.department_id"
            " WHERE a.id = $1 AND NOT a.disabled", doctor_id,
        )
        return None if row is None else dict(row)

    async def calls(self, department_id: str, since: dt.datetime, limit: int) -> list[dict[str, Any]]:
        """A department's latest calls since ``since``, newest first (the hall screen)."""
        rows = await self.db.fetch(
            "SELECT patient_label, room, kind, called_at FROM queue_calls WHERE department_id = $1"
            " AND called_at >= $2 ORDER BY called_at DESC LIMIT $3",
            department_id, since, limit,
        )
        return [dict(r) for r in rows]


__all__ = ["SessionStore"]

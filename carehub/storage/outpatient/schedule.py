"""Slot rules and roster requests (SCH-2..6): ``slot_rules``, ``rosters``; the doctors they name, and
the clinic sessions as the admin console lists them (every status, with the substitute's name)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import asyncpg

from ..db import Database

_ROSTERS = (
    "SELECT r.*, a.display_name AS doctor_name, sa.display_name AS substitute_name FROM rosters r"
    " JOIN accounts a ON a.id = r.doctor_id LEFT JOIN accounts sa ON sa.id = r.substitute_id"
)
_SESSIONS = (
    "SELECT s.id, s.doctor_id, a.display_name AS doctor_name, s.department_id, s.day, s.period, s.room,"
    " s.starts_at, s.ends_at, s.capacity, s.booked, s.fee_fen, s.status, s.substitute_id,"
    " sa.display_name AS substitute_name FROM clinic_sessions s JOIN accounts a ON a.id = s.doctor_id"
    " LEFT JOIN accounts sa ON sa.id = s.substitute_id"
)


class ScheduleStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def rule(self, doctor_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow("SELECT * FROM slot_rules WHERE doctor_id = $1", doctor_id)
        return None if row is None else dict(row)

    async def set_rule(self, doctor_id: str, fields: Mapping[str, Any], now: dt.datetime, by: str) -> None:
        """Replace the doctor's slot rule (``fields``: column -> value), inserting it the first time."""
        names = list(fields)
        values = list(fields.values())

        async def op(conn: asyncpg.Connection) -> None:
            updated = await conn.execute(
                f"UPDATE slot_rules SET {', '.join(f'{f} = ${i + 2}' for i, f in enumerate(names))},"
                f" updated_at = ${len(names) + 2}, updated_by = ${len(names) + 3} WHERE doctor_id = $1",
                doctor_id, *values, now, by,
            )
            if updated.endswith(" 0"):
                await conn.execute(
                    f"INSERT INTO slot_rules (doctor_id, {', '.join(names)}, updated_at, updated_by)"
                    f" VALUES ({', '.join(f'${i + 1}' for i in range(len(names) + 3))})",
                    doctor_id, *values, now, by,
                )

        await self.db.run(op)

    async def doctor(self, doctor_id: str) -> dict[str, Any] | None:
        """An enabled doctor's id, name and department (None: no such doctor)."""
        row = await self.db.fetchrow(
            "SELECT a.id, a.display_name, d.department_id FROM doctors d JOIN accounts a ON a.id = d.account_id"
            " WHERE a.id = $1 AND NOT a.disabled", doctor_id,
        )
        return None if row is None else dict(row)

    async def unscheduled(self, admin_login: str) -> tuple[str | None, list[dict[str, Any]]] | None:
        """For seeding a demo: None when any roster exists; else the admin's id and every doctor
        (``id``, ``department_id``, department ``name``) by login."""

        async def op(conn: asyncpg.Connection) -> tuple[str | None, list[dict[str, Any]]] | None:
            if await conn.fetchval("SELECT count(*) FROM rosters") > 0:
                return None
            admin = await conn.fetchval("SELECT id FROM accounts WHERE login = $1", admin_login)
            rows = await conn.fetch(
                "SELECT a.id, d.department_id, p.name FROM doctors d JOIN accounts a ON a.id = d.account_id"
                " JOIN departments p ON p.id = d.department_id ORDER BY a.login"
            )
            return admin, [dict(r) for r in rows]

        return await self.db.run(op)

    async def add_roster(self, roster: Mapping[str, Any]) -> None:
        """A new roster request (``status`` 'submitted'); ``sessions`` is its JSON text."""
        await self.db.execute(
            "INSERT INTO rosters (id, doctor_id, department_id, kind, status, sessions, substitute_id, reason,"
            " submitted_by, submitted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            roster["id"], roster["doctor_id"], roster["department_id"], roster["kind"], roster["status"],
            roster["sessions"], roster["substitute_id"], roster["reason"], roster["submitted_by"],
            roster["submitted_at"],
        )

    async def roster(self, roster_id: str) -> dict[str, Any] | None:
        """One roster request with its doctor's and substitute's names (None: no such roster)."""
        row = await self.db.fetchrow(_ROSTERS + " WHERE r.id = $1", roster_id)
        return None if row is None else dict(row)

    async def rosters(self, *, status: str | None, doctor_id: str | None) -> list[dict[str, Any]]:
        """The latest 200 roster requests (by status, by doctor), newest first, with the names."""
        rows = await self.db.fetch(
            _ROSTERS + " WHERE ($1::varchar IS NULL OR r.status = $1)"
            " AND ($2::varchar IS NULL OR r.doctor_id = $2)"
            " ORDER BY r.submitted_at DESC LIMIT 200", status, doctor_id,
        )
        return [dict(r) for r in rows]

    async def decide(self, roster_id: str, *, was: str, status: str, by: str, at: dt.datetime,
                     reason: str | None = None) -> bool:
        """Move a roster from ``was`` to ``status`` (approved/rejected); False when it was no longer ``was``."""
        done = await self.db.execute(
            "UPDATE rosters SET status = $3, decided_by = $4, decided_at = $5,"
            " decision_reason = COALESCE($6, decision_reason) WHERE id = $1 AND status = $2",
            roster_id, was, status, by, at, reason,
        )
        return not done.endswith(" 0")

    async def sessions(self, *, day_from: dt.date, day_to: dt.date, doctor_id: str | None,
                       department_id: str | None) -> list[dict[str, Any]]:
        """Clinic sessions from ``day_from`` to ``day_to`` (inclusive) in every status, by doctor and
        department, by day and start; at most 500 (the slot pools' projection)."""
        rows = await self.db.fetch(
            _SESSIONS + " WHERE s.day >= $1 AND s.day <= $2 AND ($3::varchar IS NULL OR s.doctor_id = $3)"
            " AND ($4::varchar IS NULL OR s.department_id = $4) ORDER BY s.day, s.starts_at, s.doctor_id LIMIT 500",
            day_from, day_to, doctor_id, department_id,
        )
        return [dict(r) for r in rows]

    async def session(self, session_id: str) -> dict[str, Any] | None:
        """One clinic session as :meth:`sessions` lists it (None: no such session)."""
        row = await self.db.fetchrow(_SESSIONS + " WHERE s.id = $1", session_id)
        return None if row is None else dict(row)


__all__ = ["ScheduleStore"]

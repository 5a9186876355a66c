"""Clinical alerts' records (MSG-7, DOC-19): department contacts, acknowledgement rules, and the
alerts and their steps (the alert actors' projections, read here)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from ..db import Database

_ALERT = (
    "id, kind, status, patient_id, patient_label, item, value, flag, department_id, department, source,"
    " contacts, notified, level, current_account_id, ack_seconds, raised_at, deadline_at, acked_by, acked_at,"
    " ack_device, updated_at"
)
OPEN = ("open", "escalated", "unanswered")


class AlertStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- who is called -------------------------------------------------------------------------

    async def doctor(self, account_id: str) -> dict[str, Any] | None:
        """A doctor's name and department (None when the account is not a doctor)."""
        row = await self.db.fetchrow(
            "SELECT a.id, a.display_name AS name, d.department_id, dep.name AS department FROM doctors d"
            " JOIN accounts a ON a.id = d.account_id JOIN departments dep ON dep.id = d.department_id"
            " WHERE d.account_id = $1", account_id)
        return None if row is None else dict(row)

    async def todays_doctor(self, patient_id: str, day: dt.date) -> str | None:
        """The doctor of the patient's latest active booking of ``day`` (the one treating them now)."""
        value = await self.db.fetchval(
            "SELECT doctor_id FROM bookings WHERE patient_id = $1 AND day = $2"
            " AND status IN ('booked', 'checked_in', 'seen') ORDER BY slot_at DESC, id DESC LIMIT 1",
            patient_id, day)
        return None if value is None else str(value)

    async def contacts(self, department_id: str) -> list[dict[str, Any]]:
        """The department's on-call doctors, then its heads: ``{role, account_id, name}``."""
        rows = await self.db.fetch(
            "SELECT c.role, c.account_id, a.display_name AS name FROM department_contacts c"
            " JOIN accounts a ON a.id = c.account_id WHERE c.department_id = $1"
            " ORDER BY CASE c.role WHEN 'on_call' THEN 0 ELSE 1 END, c.account_id", department_id)
        return [dict(r) for r in rows]

    async def set_contacts(self, department_id: str, role: str, account_ids: list[str]) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute("DELETE FROM department_contacts WHERE department_id = $1 AND role = $2",
                                   department_id, role)
                await conn.executemany(
                    "INSERT INTO department_contacts (department_id, role, account_id) VALUES ($1, $2, $3)",
                    [(department_id, role, a) for a in account_ids])

        await self.db.run(op)

    async def ack_minutes(self, kind: str) -> float | None:
        value = await self.db.fetchval("SELECT ack_minutes FROM alert_rules WHERE kind = $1", kind)
        return None if value is None else float(value)

    async def set_ack_minutes(self, kind: str, minutes: float) -> None:
        await self.db.execute(
            "INSERT INTO alert_rules (kind, ack_minutes) VALUES ($1, $2)"
            " ON CONFLICT (kind) DO UPDATE SET ack_minutes = EXCLUDED.ack_minutes", kind, minutes)

    # ---- alerts --------------------------------------------------------------------------------

    async def alert(self, alert_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow(f"SELECT {_ALERT} FROM clinical_alerts WHERE id = $1", alert_id)
        return None if row is None else dict(row)

    async def open_for(self, account_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """Open alerts on which ``account_id`` has been alerted, oldest first."""
        rows = await self.db.fetch(
            f"SELECT {_ALERT} FROM clinical_alerts WHERE status = ANY($2::varchar[])"
            " AND $1 = ANY(string_to_array(notified, ',')) ORDER BY raised_at, id LIMIT $3",
            account_id, list(OPEN), limit)
        return [dict(r) for r in rows]

    async def open_alerts(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            f"SELECT {_ALERT} FROM clinical_alerts WHERE status = ANY($1::varchar[]) ORDER BY raised_at, id"
            " LIMIT $2", list(OPEN), limit)
        return [dict(r) for r in rows]

    async def steps(self, alert_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        rows = await self.db.fetch(
            "SELECT s.alert_id, s.seq, s.at, s.action, s.account_id, a.display_name AS name, s.note"
            " FROM alert_steps s LEFT JOIN accounts a ON a.id = s.account_id"
            " WHERE s.alert_id = ANY($1::varchar[]) ORDER BY s.alert_id, s.seq", alert_ids)
        out: dict[str, list[dict[str, Any]]] = {a: [] for a in alert_ids}
        for r in rows:
            out[r["alert_id"]].append(dict(r))
        return out

    async def names(self, account_ids: list[str]) -> dict[str, str]:
        rows = await self.db.fetch("SELECT id, display_name FROM accounts WHERE id = ANY($1::varchar[])",
                                   account_ids)
        return {r["id"]: r["display_name"] for r in rows}

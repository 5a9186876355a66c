"""The no-show blacklist (SCH-10): entries, the no-show rule, and the no-shows the slot pools recorded."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from ..db import Database


class BlacklistStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def active(self, now: dt.datetime) -> dict[str, dict[str, Any]]:
        """Patient -> their active entry ending last (``id``, ``patient_id``, ``until``, ``reason``)."""
        rows = await self.db.fetch(
            "SELECT DISTINCT ON (patient_id) id, patient_id, until, reason FROM blacklist"
            " WHERE until > $1 AND removed_at IS NULL ORDER BY patient_id, until DESC", now,
        )
        return {r["patient_id"]: dict(r) for r in rows}

    async def active_for(self, patient_id: str, now: dt.datetime) -> dict[str, Any] | None:
        """The patient's active entry ending last (None: not blacklisted)."""
        row = await self.db.fetchrow(
            "SELECT id, until, reason FROM blacklist WHERE patient_id = $1 AND until > $2 AND removed_at IS NULL"
            " ORDER BY until DESC LIMIT 1", patient_id, now,
        )
        return None if row is None else dict(row)

    async def ban_for_no_shows(
        self, patient_id: str, today: dt.date, now: dt.datetime, entry_id: str,
    ) -> dict[str, Any] | None:
        """Apply the no-show rule to a patient, in one transaction: the new entry, or None (rule off,
        too few no-shows, already banned). No-shows an earlier entry counted are not counted again."""

        async def op(conn: asyncpg.Connection) -> dict[str, Any] | None:
            async with conn.transaction():
                rule = await conn.fetchrow("SELECT * FROM no_show_rule WHERE id = 1")
                if rule is None or not rule["enabled"]:
                    return None
                since = today - dt.timedelta(days=rule["window_days"])
                count = await conn.fetchval(
                    "SELECT count(*) FROM no_shows WHERE patient_id = $1 AND day > $2", patient_id, since)
                if count < rule["max_no_shows"]:
                    return None
                if await conn.fetchval("SELECT 1 FROM blacklist WHERE patient_id = $1 AND until > $2"
                                       " AND removed_at IS NULL LIMIT 1", patient_id, now):
                    return None
                last = await conn.fetchval("SELECT max(since) FROM blacklist WHERE patient_id = $1", patient_id)
                if last is not None:
                    count = await conn.fetchval(
                        "SELECT count(*) FROM no_shows WHERE patient_id = $1 AND day > $2 AND recorded_at > $3",
                        patient_id, since, last,
                    )
                    if count < rule["max_no_shows"]:
                        return None
                until = now + dt.timedelta(days=rule["ban_days"])
                reason = f"{rule['window_days']}天内爽约{count}次"
                await conn.execute(
                    "INSERT INTO blacklist (id, patient_id, since, until, reason, created_by)"
                    " VALUES ($1, $2, $3, $4, $5, 'system')",
                    entry_id, patient_id, now, until, reason,
                )
                return {"id": entry_id, "until": until, "reason": reason}

        return await self.db.run(op)

    async def lift(self, entry_id: str, by: str, reason: str, now: dt.datetime) -> bool:
        """Lift an active entry; False when there is no such active entry."""
        done = await self.db.execute(
            "UPDATE blacklist SET removed_at = $2, removed_by = $3, removal_reason = $4"
            " WHERE id = $1 AND removed_at IS NULL",
            entry_id, now, by, reason,
        )
        return not done.endswith(" 0")

    async def entries(self, *, active_only: bool, now: dt.datetime) -> list[dict[str, Any]]:
        """The latest 500 entries (``active_only``: not lifted, not ended), with the patient's sealed name
        (``patient_name_enc``)."""
        rows = await self.db.fetch(
            "SELECT l.*, pt.name_enc AS patient_name_enc FROM blacklist l LEFT JOIN patients pt ON pt.id = l.patient_id"
            " WHERE NOT $1 OR (l.removed_at IS NULL AND l.until > $2) ORDER BY l.since DESC LIMIT 500",
            active_only, now,
        )
        return [dict(r) for r in rows]

    async def rule(self) -> dict[str, Any]:
        """The no-show rule (one row, seeded by the migration) and the name of who set it last."""
        row = await self.db.fetchrow(
            "SELECT r.max_no_shows, r.window_days, r.ban_days, r.enabled, r.updated_at, r.updated_by,"
            " a.display_name AS updated_by_name FROM no_show_rule r LEFT JOIN accounts a ON a.id = r.updated_by"
            " WHERE r.id = 1")
        assert row is not None, "migration 0009 seeds the no-show rule"
        return dict(row)

    async def set_rule(self, *, max_no_shows: int, window_days: int, ban_days: int, enabled: bool,
                       now: dt.datetime, by: str) -> None:
        await self.db.execute(
            "UPDATE no_show_rule SET max_no_shows = $1, window_days = $2, ban_days = $3, enabled = $4,"
            " updated_at = $5, updated_by = $6 WHERE id = 1",
            max_no_shows, window_days, ban_days, enabled, now, by,
        )


__all__ = ["BlacklistStore"]

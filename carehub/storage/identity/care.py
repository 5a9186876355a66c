"""Care links: which doctor may read which patient's data, from when until when (table ``care_links``)."""

from __future__ import annotations

import datetime as dt

import asyncpg

from ..db import Database


class CareLinkStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(
        self, doctor_id: str, patient_id: str, kind: str, ref: str, *, starts_at: dt.datetime, ends_at: dt.datetime,
        reason: str | None,
    ) -> None:
        """Open (or replace) the link of this kind and reference, in one transaction."""

        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(
                    "DELETE FROM care_links WHERE doctor_id = $1 AND patient_id = $2 AND kind = $3 AND ref = $4",
                    doctor_id, patient_id, kind, ref,
                )
                await conn.execute(
                    "INSERT INTO care_links (doctor_id, patient_id, kind, ref, starts_at, ends_at, reason)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    doctor_id, patient_id, kind, ref, starts_at, ends_at, reason,
                )

        await self.db.run(op)

    async def open_at(self, doctor_id: str, patient_id: str, at: dt.datetime) -> bool:
        """Whether any link between them is open at ``at``."""
        found = await self.db.fetchval(
            "SELECT 1 FROM care_links WHERE doctor_id = $1 AND patient_id = $2 AND starts_at <= $3 AND ends_at > $3"
            " LIMIT 1",
            doctor_id, patient_id, at,
        )
        return found is not None

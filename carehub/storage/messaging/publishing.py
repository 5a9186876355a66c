"""The publish API's records (MSG-1): what each partner may publish, and first answers by idempotency key."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from ..db import Database


class PublishStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def rules(self) -> dict[str, dict[str, Any]]:
        rows = await self.db.fetch("SELECT * FROM partner_publish_rules")
        return {r["partner_id"]: dict(r) for r in rows}

    async def rule(self, partner_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow("SELECT * FROM partner_publish_rules WHERE partner_id = $1", partner_id)
        return None if row is None else dict(row)

    async def save_rule(self, partner_id: str, kinds: str, audiences: str, per_minute: int, by: str,
                        now: dt.datetime) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                done = await conn.execute(
                    "UPDATE partner_publish_rules SET kinds = $2, audiences = $3, per_minute = $4, updated_at = $5,"
                    " updated_by = $6 WHERE partner_id = $1", partner_id, kinds, audiences, per_minute, now, by)
                if done.endswith(" 0"):
                    await conn.execute(
                        "INSERT INTO partner_publish_rules (partner_id, kinds, audiences, per_minute, updated_at,"
                        " updated_by) VALUES ($1, $2, $3, $4, $5, $6)", partner_id, kinds, audiences, per_minute,
                        now, by)

        await self.db.run(op)

    async def first_answer(self, partner_id: str, key: str) -> str | None:
        value = await self.db.fetchval(
            "SELECT answer FROM open_messages WHERE partner_id = $1 AND idempotency_key = $2", partner_id, key)
        return None if value is None else str(value)

    async def first_answers(self, partner_id: str, keys: list[str]) -> dict[str, str]:
        """The first answers already kept for any of ``keys`` (one query for a batch)."""
        rows = await self.db.fetch(
            "SELECT idempotency_key, answer FROM open_messages WHERE partner_id = $1"
            " AND idempotency_key = ANY($2::varchar[])", partner_id, keys)
        return {r["idempotency_key"]: r["answer"] for r in rows}

    async def keep_answer(self, partner_id: str, key: str, answer: str, now: dt.datetime) -> str:
        """Keep the first answer to ``key``; returns the answer kept (an earlier one if a repeat raced this)."""
        try:
            await self.db.execute(
                "INSERT INTO open_messages (partner_id, idempotency_key, answer, created_at) VALUES ($1, $2, $3, $4)",
                partner_id, key, answer, now)
            return answer
        except asyncpg.UniqueViolationError:
            return await self.first_answer(partner_id, key) or answer

    async def keep_answers(self, partner_id: str, answers: dict[str, str], now: dt.datetime) -> dict[str, str]:
        """:meth:`keep_answer` for a batch in one transaction: key -> the answer kept (an earlier one where a
        racing request got there first)."""

        async def op(conn: asyncpg.Connection) -> dict[str, str]:
            async with conn.transaction():
                kept = {r["idempotency_key"]: r["answer"] for r in await conn.fetch(
                    "SELECT idempotency_key, answer FROM open_messages WHERE partner_id = $1"
                    " AND idempotency_key = ANY($2::varchar[])", partner_id, list(answers))}
                new = [(partner_id, k, a, now) for k, a in answers.items() if k not in kept]
                await conn.executemany(
                    "INSERT INTO open_messages (partner_id, idempotency_key, answer, created_at)"
                    " VALUES ($1, $2, $3, $4)", new)
                return {**{k: a for _, k, a, _ in new}, **kept}

        try:
            return await self.db.run(op)
        except asyncpg.UniqueViolationError:  # a racing request kept one meanwhile: one by one, then
            return {k: await self.keep_answer(partner_id, k, a, now) for k, a in answers.items()}

    async def purge_answers(self, before: dt.datetime) -> int:
        status = await self.db.execute("DELETE FROM open_messages WHERE created_at < $1", before)
        return int(status.split()[-1])

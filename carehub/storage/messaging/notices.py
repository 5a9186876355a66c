"""Notices (the inbox and the dead-letter list), templates, channels and bindings.

The notifier actors write ``notices`` through the hub (a :class:`carehub.hub.Record` with their
state); this store reads it and writes only the columns no actor owns: ``read_at`` (the
recipient's read marks) and ``reported_at``/``report`` (the provider's delivery report).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from ..db import Database

_COLUMNS = ("id, account_id, kind, category, title, body, link, nav, critical, needs_ack, source, status, plan,"
            " channel, attempts, last_error, created_at, sent_at, dead_at, reported_at, report, late, read_at")


class NoticeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- inbox ---------------------------------------------------------------------------------

    async def inbox(self, account_id: str, *, before: tuple[dt.datetime, str] | None, limit: int,
                    unread_only: bool = False, category: str | None = None) -> list[dict[str, Any]]:
        """The account's notices, newest first; ``before`` = the (created_at, id) of the last one shown."""
        clauses: list[str] = ["account_id = $1", "status NOT IN ('scheduled', 'cancelled')"]
        args: list[Any] = [account_id]
        if before is not None:
            args += [before[0], before[1]]
            clauses.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
        if unread_only:
            clauses.append("read_at IS NULL")
        if category:
            args.append(category)
            clauses.append(f"category = ${len(args)}")
        args.append(limit)
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM notices WHERE {' AND '.join(clauses)}"
            f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}", *args)
        return [dict(r) for r in rows]

    async def counts(self, account_id: str) -> dict[str, int]:
        row = await self.db.fetchrow(
            "SELECT count(*) AS total, coalesce(sum(CASE WHEN read_at IS NULL THEN 1 ELSE 0 END), 0) AS unread"
            " FROM notices WHERE account_id = $1 AND status NOT IN ('scheduled', 'cancelled')", account_id)
        return {"total": int(row["total"]), "unread": int(row["unread"])} if row else {"total": 0, "unread": 0}

    async def mark_read(self, account_id: str, ids: list[str] | None, now: dt.datetime) -> int:
        """Mark the account's notices read (``ids`` None: all of them); how many changed."""
        if ids is None:
            status = await self.db.execute(
                "UPDATE notices SET read_at = $2 WHERE account_id = $1 AND read_at IS NULL"
                " AND status NOT IN ('scheduled', 'cancelled')", account_id, now)
        else:
            status = await self.db.execute(
                "UPDATE notices SET read_at = $2 WHERE account_id = $1 AND read_at IS NULL AND id = ANY($3::varchar[])",
                account_id, now, ids)
        return int(status.split()[-1])

    async def get(self, notice_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM notices WHERE id = $1", notice_id)
        return None if row is None else dict(row)

    async def many(self, ids: list[str]) -> list[dict[str, Any]]:
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM notices WHERE id = ANY($1::varchar[])", ids)
        return [dict(r) for r in rows]

    # ---- ops -----------------------------------------------------------------------------------

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM notices WHERE status = 'dead' ORDER BY dead_at DESC, id LIMIT $1", limit)
        return [dict(r) for r in rows]

    async def status_counts(self) -> dict[str, int]:
        rows = await self.db.fetch("SELECT status, count(*) AS n FROM notices GROUP BY status")
        return {r["status"]: int(r["n"]) for r in rows}

    async def report(self, channel: str, provider_id: str, delivered: bool, reason: str, now: dt.datetime) -> int:
        """A provider's delivery report on a send it accepted; how many notices it concerned."""
        status = await self.db.execute(
            "UPDATE notices SET reported_at = $3, report = $4 WHERE provider_id = $1 AND channel = $2",
            provider_id, channel, now, ("delivered" if delivered else f"failed: {reason}")[:80])
        return int(status.split()[-1])

    # ---- sends ---------------------------------------------------------------------------------

    async def begin_attempt(self, send_key: str, now: dt.datetime) -> bool:
        """Mark a send as started; False when it was already marked (a crash may have sent it).

        One statement (portable: no ON CONFLICT); two racing markers meet the primary key."""
        try:
            status = await self.db.execute(
                "INSERT INTO notice_attempts (send_key, started_at) SELECT $1::varchar, $2::timestamptz"
                " WHERE NOT EXISTS (SELECT 1 FROM notice_attempts WHERE send_key = $1::varchar)", send_key, now)
        except asyncpg.UniqueViolationError:
            return False
        return status.endswith(" 1")

    async def purge_attempts(self, before: dt.datetime) -> int:
        status = await self.db.execute("DELETE FROM notice_attempts WHERE started_at < $1", before)
        return int(status.split()[-1])

    # ---- templates, channels, bindings ---------------------------------------------------------

    async def templates(self) -> dict[str, dict[str, Any]]:
        rows = await self.db.fetch("SELECT * FROM notice_templates")
        return {r["kind"]: dict(r) for r in rows}

    async def save_template(self, kind: str, title: str, body: str, sms: str | None, wechat: str | None,
                            alipay: str | None, by: str, now: dt.datetime) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                done = await conn.execute(
                    "UPDATE notice_templates SET title = $2, body = $3, sms_template = $4, wechat_template = $5,"
                    " alipay_template = $6, updated_at = $7, updated_by = $8 WHERE kind = $1",
                    kind, title, body, sms, wechat, alipay, now, by)
                if done.endswith(" 0"):
                    await conn.execute(
                        "INSERT INTO notice_templates (kind, title, body, sms_template, wechat_template,"
                        " alipay_template, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        kind, title, body, sms, wechat, alipay, now, by)

        await self.db.run(op)

    async def reset_template(self, kind: str) -> bool:
        return not (await self.db.execute("DELETE FROM notice_templates WHERE kind = $1", kind)).endswith(" 0")

    async def channels(self) -> dict[str, dict[str, Any]]:
        rows = await self.db.fetch("SELECT * FROM notice_channels")
        return {r["channel"]: dict(r) for r in rows}

    async def save_channel(self, channel: str, enabled: bool, default_template: str | None, by: str,
                           now: dt.datetime) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                done = await conn.execute(
                    "UPDATE notice_channels SET enabled = $2, default_template = $3, updated_at = $4, updated_by = $5"
                    " WHERE channel = $1", channel, enabled, default_template, now, by)
                if done.endswith(" 0"):
                    await conn.execute(
                        "INSERT INTO notice_channels (channel, enabled, default_template, updated_at, updated_by)"
                        " VALUES ($1, $2, $3, $4, $5)", channel, enabled, default_template, now, by)

        await self.db.run(op)

    async def binding(self, account_id: str, channel: str) -> str | None:
        value = await self.db.fetchval(
            "SELECT address FROM channel_bindings WHERE account_id = $1 AND channel = $2", account_id, channel)
        return None if value is None else str(value)

    async def bind(self, account_id: str, channel: str, address: str, now: dt.datetime) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                done = await conn.execute(
                    "UPDATE channel_bindings SET address = $3, bound_at = $4 WHERE account_id = $1 AND channel = $2",
                    account_id, channel, address, now)
                if done.endswith(" 0"):
                    await conn.execute(
                        "INSERT INTO channel_bindings (account_id, channel, address, bound_at) VALUES ($1, $2, $3, $4)",
                        account_id, channel, address, now)

        await self.db.run(op)

    async def bind_many(self, rows: list[tuple[str, str, str]], now: dt.datetime) -> None:
        """Bindings (account, channel, address) for accounts that have none yet (demo and bench)."""

        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                have = {(r["account_id"], r["channel"]) for r in await conn.fetch(
                    "SELECT account_id, channel FROM channel_bindings WHERE account_id = ANY($1::varchar[])",
                    [a for a, _, _ in rows])}
                new = [(a, c, addr, now) for a, c, addr in rows if (a, c) not in have]
                if new:
                    await conn.executemany(
                        "INSERT INTO channel_bindings (account_id, channel, address, bound_at) VALUES ($1, $2, $3, $4)",
                        new)

        await self.db.run(op)

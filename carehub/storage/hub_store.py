"""PostgreSQL implementation of the hub's storage port (:class:`carehub.hub.HubStore`)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import asyncpg

from carehub.hub import (
    AlreadyHandled,
    Commit,
    CommitResult,
    ScheduledRow,
    StoredState,
    StreamItem,
    UnknownRecipient,
    VersionConflict,
    utcnow,
)

from .db import Database


def _scheduled(r: asyncpg.Record) -> ScheduledRow:
    return ScheduledRow(r["id"], r["target"], r["type"], r["body"].encode(), r["due_at"], r["reminder_key"])


def _item(r: asyncpg.Record) -> StreamItem:
    return StreamItem(r["account_id"], r["seq"], r["msg_id"], r["type"], r["body"].encode(), r["created_at"])


async def _commit(conn: asyncpg.Connection, c: Commit) -> CommitResult:
    now = c.now or utcnow()
    version = c.expected_version
    delivered: list[StreamItem] = []
    async with conn.transaction():
        if c.consumed is not None:
            # first, so a second dispatch of the same stored message changes nothing
            status = await conn.execute("DELETE FROM scheduled_messages WHERE id = $1", c.consumed)
            if status != "DELETE 1":
                raise AlreadyHandled(f"stored message {c.consumed} was already handled")
        if c.state is not None:
            if version == 0:
                try:
                    await conn.execute(
                        "INSERT INTO actor_state (address, kind, state, version, updated_at)"
                        " VALUES ($1, $2, $3, 1, $4)",
                        c.address, c.kind, c.state.decode(), now,
                    )
                except asyncpg.UniqueViolationError:
                    raise VersionConflict(f"{c.address} was created by another writer") from None
            else:
                status = await conn.execute(
                    "UPDATE actor_state SET state = $3, version = version + 1, updated_at = $4"
                    " WHERE address = $1 AND version = $2",
                    c.address, version, c.state.decode(), now,
                )
                if status != "UPDATE 1":
                    raise VersionConflict(f"{c.address} moved past version {version} under this activation")
            version += 1
        if c.events:
            await conn.executemany(
                "INSERT INTO actor_events (address, version, type, body, created_at) VALUES ($1, $2, $3, $4, $5)",
                [(c.address, version, t, body.decode(), now) for t, body in c.events],
            )
        if c.deliveries:
            # lock streams in a fixed order so two commits never deadlock
            by_account = sorted(c.deliveries, key=lambda d: d.account_id)
            rows: list[tuple[Any, ...]] = []
            for account, group in itertools.groupby(by_account, key=lambda d: d.account_id):
                batch = list(group)
                last = await conn.fetchval(
                    "UPDATE delivery_streams SET last_seq = last_seq + $2 WHERE account_id = $1 RETURNING last_seq",
                    account, len(batch),
                )
                if last is None:
                    raise UnknownRecipient(f"no account {account!r} to deliver to")
                for seq, d in enumerate(batch, start=last - len(batch) + 1):
                    rows.append((account, seq, d.msg_id, d.type, d.body.decode(), now))
                    delivered.append(StreamItem(account, seq, d.msg_id, d.type, d.body, now))
            await conn.executemany(
                "INSERT INTO deliveries (account_id, seq, msg_id, type, body, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                rows,
            )
        cancel = list(c.cancel_keys) + [s.key for s in c.scheduled if s.key is not None]
        if cancel:
            await conn.execute(
                "DELETE FROM scheduled_messages WHERE target = $1 AND reminder_key = ANY($2::varchar[])",
                c.address, cancel,
            )
        if c.scheduled:
            await conn.executemany(
                "INSERT INTO scheduled_messages (id, target, type, body, due_at, reminder_key, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [(s.id, s.target, s.type, s.body.decode(), s.due_at, s.key, now) for s in c.scheduled],
            )
    return CommitResult(version, delivered)


async def _load(conn: asyncpg.Connection, address: str) -> StoredState:
    row = await conn.fetchrow("SELECT state, version FROM actor_state WHERE address = $1", address)
    if row is None:
        return StoredState(None, 0)
    return StoredState(row["state"].encode(), row["version"])


class PostgresHubStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load_state(self, address: str) -> StoredState:
        return await self.db.run(_load, address)

    async def commit(self, commit: Commit) -> CommitResult:
        return await self.db.run(_commit, commit)

    async def due_scheduled(self, before: dt.datetime, limit: int) -> list[ScheduledRow]:
        rows = await self.db.fetch(
            "SELECT id, target, type, body, due_at, reminder_key FROM scheduled_messages"
            " WHERE due_at <= $1 ORDER BY due_at LIMIT $2",
            before, limit,
        )
        return [_scheduled(r) for r in rows]

    async def next_due(self) -> dt.datetime | None:
        value: dt.datetime | None = await self.db.fetchval("SELECT min(due_at) FROM scheduled_messages")
        return value

    async def postpone_scheduled(self, row_id: str, due_at: dt.datetime) -> None:
        await self.db.execute(
            "UPDATE scheduled_messages SET due_at = $2, attempts = attempts + 1 WHERE id = $1", row_id, due_at
        )

    async def read_stream(self, account_id: str, after_seq: int, limit: int) -> list[StreamItem]:
        rows = await self.db.fetch(
            "SELECT account_id, seq, msg_id, type, body, created_at FROM deliveries"
            " WHERE account_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            account_id, after_seq, limit,
        )
        return [_item(r) for r in rows]

    async def stream_bounds(self, account_id: str) -> tuple[int, int]:
        """(first seq still kept, last seq) of an account's stream; (0, 0) when empty."""

        async def op(conn: asyncpg.Connection) -> tuple[int, int]:
            last = await conn.fetchval("SELECT last_seq FROM delivery_streams WHERE account_id = $1", account_id)
            first = await conn.fetchval("SELECT min(seq) FROM deliveries WHERE account_id = $1", account_id)
            return int(first or (last or 0) + 1), int(last or 0)

        return await self.db.run(op)

    async def save_cursor(self, account_id: str, device_id: str, seq: int) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            now = utcnow()
            status = await conn.execute(
                "UPDATE stream_cursors SET acked_seq = $3, updated_at = $4"
                " WHERE account_id = $1 AND device_id = $2 AND acked_seq < $3",
                account_id, device_id, seq, now,
            )
            if status == "UPDATE 0":
                exists = await conn.fetchval(
                    "SELECT 1 FROM stream_cursors WHERE account_id = $1 AND device_id = $2", account_id, device_id
                )
                if not exists:
                    await conn.execute(
                        "INSERT INTO stream_cursors (account_id, device_id, acked_seq, updated_at)"
                        " VALUES ($1, $2, $3, $4)",
                        account_id, device_id, seq, now,
                    )

        await self.db.run(op)

    async def load_cursor(self, account_id: str, device_id: str) -> int:
        value = await self.db.fetchval(
            "SELECT acked_seq FROM stream_cursors WHERE account_id = $1 AND device_id = $2", account_id, device_id
        )
        return int(value or 0)

    async def purge_deliveries(self, older_than: dt.datetime) -> int:
        status = await self.db.execute("DELETE FROM deliveries WHERE created_at < $1", older_than)
        return int(status.split()[-1])

    async def reminders_due(self, now: dt.datetime) -> int:
        return int(await self.db.fetchval("SELECT count(*) FROM scheduled_messages WHERE due_at <= $1", now) or 0)

"""Partners' signing keys and the nonces they used (tables ``partner_keys``, ``partner_nonces``)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import asyncpg

from ..db import Database


@dataclasses.dataclass(frozen=True, slots=True)
class PartnerKeyRow:
    key_id: str
    account_id: str
    secret_enc: str
    operations: frozenset[str]
    #: the key or its account is disabled
    disabled: bool


class PartnerKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(
        self, key_id: str, account_id: str, secret_enc: str, operations: frozenset[str], now: dt.datetime
    ) -> None:
        await self.db.execute(
            "INSERT INTO partner_keys (key_id, account_id, secret_enc, operations, created_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            key_id, account_id, secret_enc, ",".join(sorted(operations)), now,
        )

    async def key(self, key_id: str) -> PartnerKeyRow | None:
        row = await self.db.fetchrow(
            "SELECT k.secret_enc, k.operations, k.account_id, k.disabled, a.disabled AS account_disabled"
            " FROM partner_keys k JOIN accounts a ON a.id = k.account_id WHERE k.key_id = $1",
            key_id,
        )
        if row is None:
            return None
        return PartnerKeyRow(key_id, row["account_id"], row["secret_enc"], frozenset(row["operations"].split(",")),
                             bool(row["disabled"] or row["account_disabled"]))

    async def remember_nonce(self, key_id: str, nonce: str, now: dt.datetime) -> bool:
        """Record a nonce; False when the key already used it (a replay)."""
        return await self.db.run(_remember_nonce, key_id, nonce, now)

    async def forget_nonces(self, before: dt.datetime) -> int:
        status = await self.db.execute("DELETE FROM partner_nonces WHERE seen_at < $1", before)
        return int(status.split()[-1])


async def _remember_nonce(conn: asyncpg.Connection, key_id: str, nonce: str, now: dt.datetime) -> bool:
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO partner_nonces (key_id, nonce, seen_at) VALUES ($1, $2, $3)", key_id, nonce, now
            )
    except asyncpg.UniqueViolationError:
        return False
    return True

"""Partners' signing keys and the nonces they used (tables ``partner_keys``, ``partner_nonces``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

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


@dataclasses.dataclass(frozen=True, slots=True)
class PartnerKeyInfo:
    """A key as the admin console lists it (never its secret)."""

    key_id: str
    account_id: str
    operations: frozenset[str]
    created_at: dt.datetime
    #: revoked
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

    async def keys(self, account_ids: Sequence[str] | None = None) -> list[PartnerKeyInfo]:
        """Keys without their secrets, newest first; only those of ``account_ids`` when given."""
        rows = await self.db.fetch(
            "SELECT key_id, account_id, operations, created_at, disabled FROM partner_keys"
            " WHERE $1::varchar[] IS NULL OR account_id = ANY($1::varchar[]) ORDER BY created_at DESC, key_id",
            None if account_ids is None else list(account_ids),
        )
        return [PartnerKeyInfo(r["key_id"], r["account_id"], frozenset(r["operations"].split(",")), r["created_at"],
                               r["disabled"]) for r in rows]

    async def disable(self, key_id: str, account_id: str) -> bool | None:
        """Revoke a key of ``account_id``: True when revoked now, False when it already was, None: no such key."""
        row = await self.db.fetchrow(
            "WITH old AS (SELECT key_id, disabled FROM partner_keys WHERE key_id = $1 AND account_id = $2 FOR UPDATE)"
            " UPDATE partner_keys k SET disabled = true FROM old WHERE k.key_id = old.key_id"
            " RETURNING old.disabled AS was_disabled",
            key_id, account_id,
        )
        return None if row is None else not row["was_disabled"]

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

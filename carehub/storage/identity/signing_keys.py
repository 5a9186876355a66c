"""Signers' SM2 key pairs (table ``signing_keys``; the private key sealed)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import asyncpg

from ..db import Database


@dataclasses.dataclass(frozen=True, slots=True)
class SigningKeyRow:
    key_id: str
    public_hex: str
    private_enc: str


class SigningKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def replace(
        self, account_id: str, key_id: str, public_hex: str, private_enc: str, now: dt.datetime
    ) -> None:
        """Retire the signer's current key (kept for verification) and add the new one, in one transaction."""

        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(
                    "UPDATE signing_keys SET retired_at = $2 WHERE account_id = $1 AND retired_at IS NULL",
                    account_id, now,
                )
                await conn.execute(
                    "INSERT INTO signing_keys (key_id, account_id, public_hex, private_enc, created_at)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    key_id, account_id, public_hex, private_enc, now,
                )

        await self.db.run(op)

    async def current(self, account_id: str) -> SigningKeyRow | None:
        row = await self.db.fetchrow(
            "SELECT key_id, public_hex, private_enc FROM signing_keys WHERE account_id = $1 AND retired_at IS NULL",
            account_id,
        )
        return None if row is None else SigningKeyRow(row["key_id"], row["public_hex"], row["private_enc"])

    async def public_key(self, key_id: str, account_id: str) -> str | None:
        """The public key of one of the signer's keys, retired or not."""
        value = await self.db.fetchval(
            "SELECT public_hex FROM signing_keys WHERE key_id = $1 AND account_id = $2", key_id, account_id
        )
        return None if value is None else str(value)

"""Accounts and sign-in sessions."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

import asyncpg

from .db import Database


@dataclasses.dataclass(frozen=True, slots=True)
class AccountRow:
    id: str
    login: str
    display_name: str
    roles: frozenset[str]
    password_hash: str | None
    disabled: bool


class LoginTaken(Exception):
    pass


def _row(r: asyncpg.Record) -> AccountRow:
    return AccountRow(
        r["id"], r["login"], r["display_name"], frozenset(r["roles"].split(",")), r["password_hash"], r["disabled"]
    )


_COLUMNS = "a.id, a.login, a.display_name, a.roles, a.password_hash, a.disabled"


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def by_login(self, login: str) -> AccountRow | None:
        r = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM accounts a WHERE a.login = $1", login)
        return None if r is None else _row(r)

    async def by_id(self, account_id: str) -> AccountRow | None:
        r = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM accounts a WHERE a.id = $1", account_id)
        return None if r is None else _row(r)

    async def by_session(self, token_hash: str, now: dt.datetime) -> AccountRow | None:
        r = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM auth_sessions s JOIN accounts a ON a.id = s.account_id"
            " WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND NOT a.disabled",
            token_hash, now,
        )
        return None if r is None else _row(r)

    async def create_session(self, token_hash: str, account_id: str, expires_at: dt.datetime) -> None:
        await self.db.execute(
            "INSERT INTO auth_sessions (token_hash, account_id, created_at, expires_at) VALUES ($1, $2, now(), $3)",
            token_hash, account_id, expires_at,
        )

    async def revoke_session(self, token_hash: str, now: dt.datetime) -> None:
        await self.db.execute("UPDATE auth_sessions SET revoked_at = $2 WHERE token_hash = $1", token_hash, now)

    async def insert(self, rows: Sequence[AccountRow]) -> None:
        """Create accounts and their delivery streams, all or none."""

        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                try:
                    await conn.executemany(
                        "INSERT INTO accounts (id, login, display_name, roles, password_hash, disabled, created_at)"
                        " VALUES ($1, $2, $3, $4, $5, $6, now())",
                        [(r.id, r.login, r.display_name, ",".join(sorted(r.roles)), r.password_hash, r.disabled)
                         for r in rows],
                    )
                except asyncpg.UniqueViolationError as err:
                    raise LoginTaken(f"login already taken: {err.detail or err}") from None
                await conn.executemany(
                    "INSERT INTO delivery_streams (account_id, last_seq) VALUES ($1, 0)", [(r.id,) for r in rows]
                )

        await self.db.run(op)

    async def count(self) -> int:
        return int(await self.db.fetchval("SELECT count(*) FROM accounts") or 0)

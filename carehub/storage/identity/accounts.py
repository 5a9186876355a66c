"""Accounts, sign-in sessions and SMS sign-in codes.

A person's real name (a patient's account) is sealed in ``display_name_enc`` and ``display_name``
holds only its masked form, what others may be shown; staff names are public and stay plain. This
store opens sealed names with the key ring, so an :class:`AccountRow` always carries the full name.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

import asyncpg

from carehub.errors import CareHubError

from ..db import Database
from ..keyring import KeyRing


@dataclasses.dataclass(frozen=True, slots=True)
class AccountRow:
    id: str
    login: str
    display_name: str
    roles: frozenset[str]
    password_hash: str | None
    disabled: bool
    phone_enc: str | None = None
    phone_idx: str | None = None
    totp_secret_enc: str | None = None
    totp_last_step: int = 0
    locked_until: dt.datetime | None = None
    #: the account's own person ("self") passed real-name verification
    verified: bool = False
    #: the sealed full name (people's accounts; None for staff, whose names are public)
    display_name_enc: str | None = None
    #: what the plain ``display_name`` column holds and others may be shown (None: ``display_name``)
    listed_name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AccountListing:
    """An account as the admin console lists it: no secrets, a person's name masked."""

    id: str
    login: str
    listed_name: str
    roles: frozenset[str]
    disabled: bool
    locked_until: dt.datetime | None


class LoginTaken(CareHubError):
    """A new account's login or phone number is already used (nothing was created)."""

    code = "login_taken"


NAME_FIELD = "accounts.display_name"


def _row(r: asyncpg.Record, keyring: KeyRing) -> AccountRow:
    sealed = r["display_name_enc"]
    name = keyring.open(sealed, field=NAME_FIELD) if sealed is not None else r["display_name"]
    return AccountRow(
        r["id"], r["login"], name, frozenset(r["roles"].split(",")), r["password_hash"],
        r["disabled"], r["phone_enc"], r["phone_idx"], r["totp_secret_enc"], r["totp_last_step"], r["locked_until"],
        r["verified"], sealed, r["display_name"],
    )


_COLUMNS = (
    "a.id, a.login, a.display_name, a.display_name_enc, a.roles, a.password_hash, a.disabled, a.phone_enc, a.phone_idx,"
    " a.totp_secret_enc, a.totp_last_step, a.locked_until,"
    " EXISTS (SELECT 1 FROM account_patients ap JOIN patients p ON p.id = ap.patient_id"
    " WHERE ap.account_id = a.id AND ap.relation = 'self' AND p.verified_at IS NOT NULL) AS verified"
)
#: last_seen_at is written at most this often per session
_TOUCH_EVERY = dt.timedelta(seconds=60)


class AccountStore:
    def __init__(self, db: Database, keyring: KeyRing) -> None:
        self.db = db
        self.keyring = keyring

    async def by_login(self, login: str) -> AccountRow | None:
        r = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM accounts a WHERE a.login = $1", login)
        return None if r is None else _row(r, self.keyring)

    async def by_id(self, account_id: str) -> AccountRow | None:
        r = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM accounts a WHERE a.id = $1", account_id)
        return None if r is None else _row(r, self.keyring)

    async def by_ids(self, account_ids: Sequence[str]) -> dict[str, AccountRow]:
        """The accounts of ``account_ids`` that exist, by id (one query for a batch)."""
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM accounts a WHERE a.id = ANY($1::varchar[])",
                                   list(account_ids))
        return {r["id"]: _row(r, self.keyring) for r in rows}

    async def by_phone(self, phone_idx: str) -> AccountRow | None:
        r = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM accounts a WHERE a.phone_idx = $1", phone_idx)
        return None if r is None else _row(r, self.keyring)

    async def by_session(self, token_hash: str, now: dt.datetime) -> tuple[AccountRow, dt.datetime] | None:
        r = await self.db.fetchrow(
            f"SELECT {_COLUMNS}, coalesce(s.last_seen_at, s.created_at) AS last_seen"
            " FROM auth_sessions s JOIN accounts a ON a.id = s.account_id"
            " WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND NOT a.disabled",
            token_hash, now,
        )
        return None if r is None else (_row(r, self.keyring), r["last_seen"])

    async def create_session(
        self, token_hash: str, account_id: str, expires_at: dt.datetime, source_ip: str | None = None
    ) -> None:
        await self.db.execute(
            "INSERT INTO auth_sessions (token_hash, account_id, created_at, expires_at, last_seen_at, source_ip)"
            " VALUES ($1, $2, now(), $3, now(), $4)",
            token_hash, account_id, expires_at, source_ip,
        )

    async def touch_session(self, token_hash: str, now: dt.datetime) -> None:
        await self.db.execute(
            "UPDATE auth_sessions SET last_seen_at = $2 WHERE token_hash = $1 AND last_seen_at < $3",
            token_hash, now, now - _TOUCH_EVERY,
        )

    async def revoke_session(self, token_hash: str, now: dt.datetime) -> None:
        await self.db.execute("UPDATE auth_sessions SET revoked_at = $2 WHERE token_hash = $1", token_hash, now)

    async def disable(self, account_id: str, now: dt.datetime) -> list[str]:
        """Disable the account and revoke every open session; returns the revoked token hashes."""

        async def op(conn: asyncpg.Connection) -> list[str]:
            async with conn.transaction():
                await conn.execute("UPDATE accounts SET disabled = true WHERE id = $1", account_id)
                rows = await conn.fetch(
                    "UPDATE auth_sessions SET revoked_at = $2 WHERE account_id = $1 AND revoked_at IS NULL"
                    " RETURNING token_hash",
                    account_id, now,
                )
            return [r["token_hash"] for r in rows]

        return await self.db.run(op)

    async def record_failure(self, account_id: str, limit: int, lock_until: dt.datetime) -> dt.datetime | None:
        """Count a failed sign-in; at ``limit`` failures lock the account. Returns the lock end if locked."""

        async def op(conn: asyncpg.Connection) -> dt.datetime | None:
            async with conn.transaction():
                failures = await conn.fetchval(
                    "UPDATE accounts SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
                    account_id,
                )
                if failures is not None and failures >= limit:
                    await conn.execute(
                        "UPDATE accounts SET failed_logins = 0, locked_until = $2 WHERE id = $1", account_id, lock_until
                    )
                    return lock_until
            return None

        return await self.db.run(op)

    async def record_success(self, account_id: str, source: str = "") -> None:
        """A good sign-in: the account's second-factor count and this address's password count start again."""

        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(
                    "UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = $1", account_id
                )
                await conn.execute(
                    "DELETE FROM login_failures WHERE account_id = $1 AND source = $2", account_id, source
                )

        await self.db.run(op)

    async def source_locked_until(self, account_id: str, source: str, now: dt.datetime) -> dt.datetime | None:
        """When password sign-in to this account from this address is locked, until when (else None)."""
        until = await self.db.fetchval(
            "SELECT locked_until FROM login_failures WHERE account_id = $1 AND source = $2 AND locked_until > $3",
            account_id, source, now,
        )
        return until if isinstance(until, dt.datetime) else None

    async def record_password_failure(
        self, account_id: str, source: str, *, limit: int, lock: dt.timedelta, max_lock: dt.timedelta,
        now: dt.datetime, window: dt.timedelta,
    ) -> tuple[dt.datetime | None, int]:
        """Count a wrong password from ``source``; every ``limit``-th in a row locks that address out of
        the account, for ``lock`` doubled at each lock (at most ``max_lock``). Returns the lock's end
        (None: not locked) and how many addresses failed on this account within ``window``."""

        async def op(conn: asyncpg.Connection) -> tuple[dt.datetime | None, int]:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "INSERT INTO login_failures (account_id, source, failures, locks, last_failed_at)"
                    " VALUES ($1, $2, 1, 0, $3) ON CONFLICT (account_id, source) DO UPDATE"
                    " SET failures = login_failures.failures + 1, last_failed_at = $3 RETURNING failures, locks",
                    account_id, source, now,
                )
                assert row is not None  # INSERT ... RETURNING always returns the row
                until = None
                if row["failures"] >= limit:
                    until = now + min(lock * 2 ** row["locks"], max_lock)
                    await conn.execute(
                        "UPDATE login_failures SET failures = 0, locks = locks + 1, locked_until = $3"
                        " WHERE account_id = $1 AND source = $2",
                        account_id, source, until,
                    )
                sources = await conn.fetchval(
                    "SELECT count(*) FROM login_failures WHERE account_id = $1 AND last_failed_at > $2",
                    account_id, now - window,
                )
                return until, int(sources)

        return await self.db.run(op)

    async def use_totp_step(self, account_id: str, step: int) -> bool:
        """Accept each TOTP time step once per account (RFC 6238 section 5.2)."""
        status = await self.db.execute(
            "UPDATE accounts SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2", account_id, step
        )
        return status == "UPDATE 1"

    async def store_sms_code(
        self, code_id: str, phone_idx: str, code_mac: str, now: dt.datetime, expires: dt.datetime,
        source_ip: str | None, biz_id: str,
    ) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                # a new code replaces the ones sent before it
                await conn.execute(
                    "UPDATE sms_codes SET used_at = $2 WHERE phone_idx = $1 AND used_at IS NULL", phone_idx, now
                )
                await conn.execute(
                    "INSERT INTO sms_codes (id, phone_idx, code_mac, created_at, expires_at, source_ip, biz_id)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    code_id, phone_idx, code_mac, now, expires, source_ip, biz_id,
                )

        await self.db.run(op)

    async def use_sms_code(self, phone_idx: str, code_mac: str, now: dt.datetime, max_attempts: int) -> bool:
        """Consume the phone's live code if ``code_mac`` matches; count a wrong try otherwise."""

        async def op(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "SELECT id, code_mac, attempts FROM sms_codes WHERE phone_idx = $1 AND used_at IS NULL"
                    " AND expires_at > $2 ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
                    phone_idx, now,
                )
                if row is None:
                    return False
                if row["code_mac"] != code_mac:
                    spent = row["attempts"] + 1 >= max_attempts
                    await conn.execute(
                        "UPDATE sms_codes SET attempts = attempts + 1, used_at = $2 WHERE id = $1",
                        row["id"], now if spent else None,
                    )
                    return False
                status = await conn.execute(
                    "UPDATE sms_codes SET used_at = $2 WHERE id = $1 AND used_at IS NULL", row["id"], now
                )
                return bool(status == "UPDATE 1")

        return await self.db.run(op)

    async def insert(self, rows: Sequence[AccountRow]) -> None:
        """Create accounts and their delivery streams, all or none."""

        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                try:
                    await conn.executemany(
                        "INSERT INTO accounts (id, login, display_name, roles, password_hash, disabled, created_at,"
                        " phone_enc, phone_idx, totp_secret_enc, display_name_enc)"
                        " VALUES ($1, $2, $3, $4, $5, $6, now(), $7, $8, $9, $10)",
                        [
                            (r.id, r.login, r.display_name if r.listed_name is None else r.listed_name,
                             ",".join(sorted(r.roles)), r.password_hash, r.disabled, r.phone_enc, r.phone_idx,
                             r.totp_secret_enc, r.display_name_enc)
                            for r in rows
                        ],
                    )
                except asyncpg.UniqueViolationError as err:
                    raise LoginTaken(f"login or phone already taken: {err.constraint_name}") from None
                await conn.executemany(
                    "INSERT INTO delivery_streams (account_id, last_seq) VALUES ($1, 0)", [(r.id,) for r in rows]
                )

        await self.db.run(op)

    async def set_roles(self, account_id: str, roles: frozenset[str]) -> bool:
        status = await self.db.execute(
            "UPDATE accounts SET roles = $2 WHERE id = $1", account_id, ",".join(sorted(roles))
        )
        return status == "UPDATE 1"

    async def with_role(self, role: str, limit: int = 500) -> list[AccountRow]:
        """Accounts holding ``role`` (disabled ones too), by login."""
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM accounts a WHERE $1 = ANY(string_to_array(a.roles, ','))"
            " ORDER BY a.login LIMIT $2",
            role, limit,
        )
        return [_row(r, self.keyring) for r in rows]

    async def listing(
        self, *, role: str | None = None, search: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[AccountListing]:
        """Accounts by login for the admin console: only what others may see (a person's masked name)."""
        pattern = None if not search else "%" + search.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
        rows = await self.db.fetch(
            "SELECT id, login, display_name, roles, disabled, locked_until FROM accounts"
            " WHERE ($1::varchar IS NULL OR $1 = ANY(string_to_array(roles, ',')))"
            " AND ($2::varchar IS NULL OR login LIKE $2 ESCAPE '!' OR display_name LIKE $2 ESCAPE '!')"
            f" ORDER BY login LIMIT {int(limit)} OFFSET {int(offset)}",
            role, pattern,
        )
        return [AccountListing(r["id"], r["login"], r["display_name"], frozenset(r["roles"].split(",")), r["disabled"],
                               r["locked_until"]) for r in rows]

    async def listed_names(self, account_ids: Sequence[str]) -> dict[str, str]:
        """The names others may be shown (a person's masked name, a staff member's name), by account id."""
        rows = await self.db.fetch(
            "SELECT id, display_name FROM accounts WHERE id = ANY($1::varchar[])", list(set(account_ids))
        )
        return {r["id"]: r["display_name"] for r in rows}

    async def taken_logins(self, logins: Sequence[str]) -> set[str]:
        """Which of ``logins`` already name an account."""
        rows = await self.db.fetch("SELECT login FROM accounts WHERE login = ANY($1::varchar[])", list(logins))
        return {r["login"] for r in rows}

    async def plain_names(self, after: str = "", limit: int = 500) -> list[tuple[str, frozenset[str], str]]:
        """Patients' accounts (by id, after ``after``) whose name is not sealed: ``(id, roles, display_name)``."""
        rows = await self.db.fetch(
            "SELECT id, roles, display_name FROM accounts WHERE display_name_enc IS NULL AND roles LIKE '%patient%'"
            " AND id > $1 ORDER BY id LIMIT $2",
            after, limit,
        )
        return [(r["id"], frozenset(r["roles"].split(",")), r["display_name"]) for r in rows]

    async def seal_names(self, names: Sequence[tuple[str, str, str]]) -> int:
        """Seal people's names read by :meth:`plain_names`: ``(id, the plain name read, the masked name)``.

        Compare-and-set in one transaction: a row whose name changed meanwhile is left for the next pass.
        Returns how many rows were sealed.
        """

        async def op(conn: asyncpg.Connection) -> int:
            sealed = 0
            async with conn.transaction():
                for account_id, plain, masked in names:
                    status = await conn.execute(
                        "UPDATE accounts SET display_name = $3, display_name_enc = $4"
                        " WHERE id = $1 AND display_name = $2 AND display_name_enc IS NULL",
                        account_id, plain, masked, self.keyring.seal(plain, field=NAME_FIELD),
                    )
                    sealed += status == "UPDATE 1"
            return sealed

        return await self.db.run(op)

    async def count(self) -> int:
        return int(await self.db.fetchval("SELECT count(*) FROM accounts") or 0)

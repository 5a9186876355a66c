"""Accounts, password sign-in and opaque session tokens (stored hashed)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Iterable

import argon2
import trio

from carehub.storage.accounts import AccountRow, AccountStore

from .permissions import ROLES, role_permissions

# OWASP's argon2id minimum: fast enough for bulk sign-ins, still memory-hard
_hasher = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_LOGIN = re.compile(r"^[A-Za-z0-9_.@+-]{3,64}$")


class AuthFailed(Exception):
    """Sign-in or token check failed; the message is safe to show."""


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    account_id: str
    login: str
    display_name: str
    roles: frozenset[str]
    permissions: frozenset[str]
    token_hash: str | None = None

    def can(self, permission: str) -> bool:
        return permission in self.permissions


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


class Identity:
    def __init__(self, accounts: AccountStore, *, token_ttl_seconds: int = 12 * 3600, cache_seconds: float = 15.0):
        self.accounts = accounts
        self.token_ttl = dt.timedelta(seconds=token_ttl_seconds)
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def login(self, login: str, password: str) -> tuple[str, Principal]:
        row = await self.accounts.by_login(login)
        if row is None or row.password_hash is None or row.disabled:
            # hash anyway so timing does not reveal which logins exist
            await trio.to_thread.run_sync(_verify_quietly, password)
            raise AuthFailed("账号或密码错误")
        ok = await trio.to_thread.run_sync(_verify, row.password_hash, password)
        if not ok:
            raise AuthFailed("账号或密码错误")
        token = secrets.token_urlsafe(32)
        expires = dt.datetime.now(dt.UTC) + self.token_ttl
        await self.accounts.create_session(_token_hash(token), row.id, expires)
        return token, self._principal(row, _token_hash(token))

    async def authenticate(self, token: str) -> Principal:
        if not token or len(token) > 200:
            raise AuthFailed("令牌无效")
        key = _token_hash(token)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self.accounts.by_session(key, dt.datetime.now(dt.UTC))
        if row is None:
            self._cache.pop(key, None)
            raise AuthFailed("令牌无效或已过期，请重新登录")
        principal = self._principal(row, key)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key] = (now + self._cache_seconds, principal)
        return principal

    async def logout(self, principal: Principal) -> None:
        if principal.token_hash is not None:
            await self.accounts.revoke_session(principal.token_hash, dt.datetime.now(dt.UTC))
            self._cache.pop(principal.token_hash, None)

    async def create_accounts(self, specs: Iterable[tuple[str, str, Iterable[str], str]]) -> list[str]:
        """Create accounts from ``(login, display_name, roles, password)``; returns their ids."""
        rows = []
        for login, display_name, roles, password in specs:
            role_set = frozenset(roles)
            if not _LOGIN.match(login):
                raise ValueError(f"login {login!r} must be 3-64 letters, digits or _.@+-")
            unknown = role_set - set(ROLES)
            if not role_set or unknown:
                raise ValueError(f"roles must be a non-empty subset of {', '.join(ROLES)}; got {sorted(role_set)}")
            if len(password) < 8:
                raise ValueError(f"password for {login!r} must have at least 8 characters")
            password_hash = await trio.to_thread.run_sync(hash_password, password)
            rows.append(AccountRow(uuid.uuid4().hex[:16], login, display_name, role_set, password_hash, False))
        await self.accounts.insert(rows)
        return [r.id for r in rows]

    @staticmethod
    def _principal(row: AccountRow, token_hash: str | None) -> Principal:
        return Principal(row.id, row.login, row.display_name, row.roles, role_permissions(row.roles), token_hash)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (argon2.exceptions.VerifyMismatchError, argon2.exceptions.InvalidHashError):
        return False


_DUMMY = _hasher.hash("not-a-real-password")


def _verify_quietly(password: str) -> None:
    _verify(_DUMMY, password)

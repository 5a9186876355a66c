"""Third-party systems sign each request with HMAC-SM3 (SCH-9).

A partner (provincial platform, kiosk vendor, HIS) holds one or more keys; each key lists the
operations it may use. A request carries::

    X-CareHub-Key:        <key id>
    X-CareHub-Timestamp:  <unix seconds>         (within 5 minutes of CareHub's clock)
    X-CareHub-Nonce:      <16-64 chars [A-Za-z0-9_-]> (never reused by that key)
    X-CareHub-Signature:  hex HMAC-SM3(secret, METHOD "\\n" PATH "\\n" TIMESTAMP "\\n" NONCE "\\n" hex SM3(body))

PATH is the request path with its query string exactly as sent. Stale timestamps, reused
nonces, unknown or disabled keys and operations the key does not allow are refused; each key is
also rate-limited.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import secrets
import time
from collections.abc import Mapping, Sequence

import asyncpg

from carehub.storage.crypto import hmac_sm3, hmac_sm3_equal, sm3
from carehub.storage.db import Database
from carehub.storage.keyring import KeyRing

from .ratelimit import RateLimiter

WINDOW_SECONDS = 300
OPERATIONS = ("topics.publish", "directory.read", "bookings.write")
SIGNATURE_HEADERS = ("X-CareHub-Key", "X-CareHub-Timestamp", "X-CareHub-Nonce", "X-CareHub-Signature")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class PartnerRefused(Exception):
    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True, slots=True)
class PartnerCaller:
    key_id: str
    account_id: str
    operations: frozenset[str]


def string_to_sign(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return "\n".join([method.upper(), path, timestamp, nonce, sm3(body).hex()]).encode()


def sign(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    return hmac_sm3(secret.encode(), string_to_sign(method, path, timestamp, nonce, body)).hex()


class Partners:
    def __init__(self, db: Database, keyring: KeyRing, *, per_second: int = 50) -> None:
        self.db = db
        self.keyring = keyring
        self.limits = RateLimiter()
        self.per_second = per_second

    async def create_key(self, account_id: str, operations: Sequence[str]) -> tuple[str, str]:
        """A new key for a partner account; the secret is shown once and stored sealed."""
        unknown = set(operations) - set(OPERATIONS)
        if not operations or unknown:
            raise ValueError(f"operations must be a non-empty subset of {', '.join(OPERATIONS)}")
        key_id = "pk_" + secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        await self.db.execute(
            "INSERT INTO partner_keys (key_id, account_id, secret_enc, operations, created_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            key_id, account_id, self.keyring.seal(secret, field="partner_keys.secret"),
            ",".join(sorted(set(operations))), dt.datetime.now(dt.UTC),
        )
        return key_id, secret

    async def verify(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, operation: str
    ) -> PartnerCaller:
        key_id = headers.get("X-CareHub-Key", "")
        timestamp = headers.get("X-CareHub-Timestamp", "")
        nonce = headers.get("X-CareHub-Nonce", "")
        signature = headers.get("X-CareHub-Signature", "")
        if not (key_id and timestamp and nonce and signature):
            raise PartnerRefused(
                401, "unsigned",
                "缺少签名头 (send X-CareHub-Key, X-CareHub-Timestamp, X-CareHub-Nonce, X-CareHub-Signature)",
            )
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > WINDOW_SECONDS:
            raise PartnerRefused(401, "stale_timestamp", "时间戳无效或已过期 (timestamp must be within 5 minutes)")
        if not _NONCE.match(nonce):
            raise PartnerRefused(401, "bad_nonce", "nonce must be 16-64 characters of [A-Za-z0-9_-]")
        row = await self.db.fetchrow(
            "SELECT k.secret_enc, k.operations, k.account_id, k.disabled, a.disabled AS account_disabled"
            " FROM partner_keys k JOIN accounts a ON a.id = k.account_id WHERE k.key_id = $1",
            key_id,
        )
        if row is None or row["disabled"] or row["account_disabled"]:
            raise PartnerRefused(401, "unknown_key", "密钥无效或已停用 (unknown or disabled key)")
        secret = self.keyring.open(row["secret_enc"], field="partner_keys.secret")
        if not hmac_sm3_equal(sign(secret, method, path, timestamp, nonce, body), signature.lower()):
            raise PartnerRefused(401, "bad_signature", "签名不正确 (signature does not match)")
        operations = frozenset(row["operations"].split(","))
        if operation not in operations:
            raise PartnerRefused(403, "operation_not_allowed", f"this key may not use {operation}")
        try:
            self.limits.take(f"partner:{key_id}", [(self.per_second, 1.0)], "too many requests")
        except Exception as err:
            raise PartnerRefused(429, "rate_limited", "请求过于频繁 (rate limited)", retry_after=1) from err
        if not await self.db.run(_remember_nonce, key_id, nonce):
            raise PartnerRefused(401, "replayed", "请求重复 (this nonce was already used)")
        return PartnerCaller(key_id, row["account_id"], operations)

    async def purge_nonces(self) -> int:
        """Forget nonces older than twice the window: their timestamps are refused anyway."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2 * WINDOW_SECONDS)
        status = await self.db.execute("DELETE FROM partner_nonces WHERE seen_at < $1", cutoff)
        return int(status.split()[-1])


async def _remember_nonce(conn: asyncpg.Connection, key_id: str, nonce: str) -> bool:
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO partner_nonces (key_id, nonce, seen_at) VALUES ($1, $2, $3)",
                key_id, nonce, dt.datetime.now(dt.UTC),
            )
    except asyncpg.UniqueViolationError:
        return False
    return True

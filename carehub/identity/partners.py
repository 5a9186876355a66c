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

from carehub.errors import NotFound
from carehub.storage.crypto import hmac_sm3, hmac_sm3_equal, sm3
from carehub.storage.identity.partners import PartnerKeyInfo, PartnerKeyStore
from carehub.storage.keyring import KeyRing

from .errors import IdentityInvalid, PartnerRefused, RateLimited
from .ratelimit import RateLimiter

WINDOW_SECONDS = 300
OPERATIONS = ("topics.publish", "directory.read", "bookings.write", "messages.publish")
SIGNATURE_HEADERS = ("X-CareHub-Key", "X-CareHub-Timestamp", "X-CareHub-Nonce", "X-CareHub-Signature")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


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
    def __init__(
        self, keys: PartnerKeyStore, keyring: KeyRing, *, per_second: int = 50, limits: RateLimiter | None = None
    ) -> None:
        self.keys = keys
        self.keyring = keyring
        self.limits = limits or RateLimiter()
        self.per_second = per_second

    async def create_key(self, account_id: str, operations: Sequence[str]) -> tuple[str, str]:
        """A new key for a partner account; the secret is shown once and stored sealed."""
        unknown = set(operations) - set(OPERATIONS)
        if not operations or unknown:
            raise IdentityInvalid(f"operations must be a non-empty subset of {', '.join(OPERATIONS)}")
        key_id = "pk_" + secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        await self.keys.insert(
            key_id, account_id, self.keyring.seal(secret, field="partner_keys.secret"), frozenset(operations),
            dt.datetime.now(dt.UTC),
        )
        return key_id, secret

    async def list_keys(self, account_ids: Sequence[str] | None = None) -> list[PartnerKeyInfo]:
        """The keys (never their secrets), newest first."""
        return await self.keys.keys(account_ids)

    async def revoke_key(self, account_id: str, key_id: str) -> bool:
        """Disable a partner's key for good; False when it was already revoked. Unknown key: NotFound."""
        revoked = await self.keys.disable(key_id, account_id)
        if revoked is None:
            raise NotFound(f"密钥 {key_id[:40]} 不存在 (no such key for this partner)")
        return revoked

    async def verify(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, operation: str
    ) -> PartnerCaller:
        key_id = headers.get("X-CareHub-Key", "")
        timestamp = headers.get("X-CareHub-Timestamp", "")
        nonce = headers.get("X-CareHub-Nonce", "")
        signature = headers.get("X-CareHub-Signature", "")
        if not (key_id and timestamp and nonce and signature):
            raise PartnerRefused(
                "缺少签名头 (send X-CareHub-Key, X-CareHub-Timestamp, X-CareHub-Nonce, X-CareHub-Signature)",
                code="unsigned",
            )
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > WINDOW_SECONDS:
            raise PartnerRefused("时间戳无效或已过期 (timestamp must be within 5 minutes)", code="stale_timestamp")
        if not _NONCE.match(nonce):
            raise PartnerRefused("nonce must be 16-64 characters of [A-Za-z0-9_-]", code="bad_nonce")
        row = await self.keys.key(key_id)
        if row is None or row.disabled:
            raise PartnerRefused("密钥无效或已停用 (unknown or disabled key)", code="unknown_key")
        secret = self.keyring.open(row.secret_enc, field="partner_keys.secret")
        if not hmac_sm3_equal(sign(secret, method, path, timestamp, nonce, body), signature.lower()):
            raise PartnerRefused("签名不正确 (signature does not match)", code="bad_signature")
        operations = row.operations
        if operation not in operations:
            raise PartnerRefused(f"this key may not use {operation}", code="operation_not_allowed")
        try:
            self.limits.take(f"partner:{key_id}", [(self.per_second, 1.0)], "too many requests")
        except RateLimited as err:  # only the limit itself is a 429: any other fault is an error of its own
            raise PartnerRefused(
                "请求过于频繁 (rate limited)", code="rate_limited", retry_after=err.retry_after
            ) from err
        if not await self.keys.remember_nonce(key_id, nonce, dt.datetime.now(dt.UTC)):
            raise PartnerRefused("请求重复 (this nonce was already used)", code="replayed")
        return PartnerCaller(key_id, row.account_id, operations)

    async def purge_nonces(self) -> int:
        """Forget nonces older than twice the window: their timestamps are refused anyway."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2 * WINDOW_SECONDS)
        return await self.keys.forget_nonces(cutoff)

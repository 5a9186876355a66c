"""SM2 signatures of doctors and pharmacists (DOC-9, DOC-26; GB/T 32918 with SM3).

Each signer has a key pair; the private key is sealed at rest and only used inside CareHub
(the signer authenticates, CareHub signs on their behalf: the hospital's CA can later replace
this with a certificate-backed key without changing callers). Signed content is canonical JSON;
a signature records the key id, so verification on read uses the key that signed even after the
signer got a new one. A signature that no longer verifies is reported as broken, never hidden.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from typing import Any

import trio

from carehub.storage.crypto import canonical_json, sm2_generate_keypair, sm2_sign, sm2_verify
from carehub.storage.identity.signing_keys import SigningKeyStore
from carehub.storage.keyring import KeyRing

from .errors import NoSigningKey

SIGNER_ROLES = frozenset({"doctor", "pharmacist"})


@dataclasses.dataclass(frozen=True, slots=True)
class Signature:
    key_id: str
    signer: str
    signed_at: str
    value: str  # hex r || s

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def _payload(content: Any, signer: str, key_id: str, signed_at: str) -> bytes:
    return canonical_json({"content": content, "signer": signer, "key_id": key_id, "signed_at": signed_at})


class Signatures:
    def __init__(self, keys: SigningKeyStore, keyring: KeyRing) -> None:
        self.keys = keys
        self.keyring = keyring

    async def issue_key(self, account_id: str) -> str:
        """A new key pair for a signer (earlier keys are retired, kept for verification)."""
        pair = await trio.to_thread.run_sync(sm2_generate_keypair)
        key_id = "sk_" + secrets.token_hex(8)
        now = dt.datetime.now(dt.UTC)
        sealed = self.keyring.seal(pair.private_hex, field="signing_keys.private")
        await self.keys.replace(account_id, key_id, pair.public_hex, sealed, now)
        return key_id

    async def sign(self, account_id: str, content: Any) -> Signature:
        row = await self.keys.current(account_id)
        if row is None:
            raise NoSigningKey(f"account {account_id} has no signing key")
        signed_at = dt.datetime.now(dt.UTC).isoformat()
        private = self.keyring.open(row.private_enc, field="signing_keys.private")
        data = _payload(content, account_id, row.key_id, signed_at)
        value = await trio.to_thread.run_sync(lambda: sm2_sign(private, data, public_hex=row.public_hex))
        return Signature(row.key_id, account_id, signed_at, value)

    async def verify(self, content: Any, signature: Signature) -> bool:
        """True when ``signature`` still verifies ``content``; False means: show it as broken."""
        public = await self.keys.public_key(signature.key_id, signature.signer)
        if public is None:
            return False
        data = _payload(content, signature.signer, signature.key_id, signature.signed_at)
        return await trio.to_thread.run_sync(sm2_verify, public, data, signature.value)

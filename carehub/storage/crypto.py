"""Chinese commercial cryptography (商用密码) primitives: SM3, HMAC-SM3, SM4-GCM and SM2 signatures.

SM3, HMAC-SM3 and SM4 come from ``cryptography`` (OpenSSL), which passes the GB/T 32905-2016 and
GB/T 32907-2016 example vectors and runs at OpenSSL speed. ``cryptography`` has no SM2, so SM2
signatures use the elliptic-curve arithmetic of the pure-Python ``gmssl`` package; the SM2 digest
(``e = SM3(Z_A || M)`` with ``Z_A`` over the user id, the curve and the public key, GB/T 32918.2-2016
section 5.5, default user id ``1234567812345678`` per GM/T 0009-2012) and the nonce ``k`` (from
:mod:`secrets`, not gmssl's :mod:`random`) are computed here. An SM2 signature or verification costs
~10-20 ms of CPU: do not sign in a hot loop on the event loop thread.

Formats:

- SM4-GCM sealed bytes: ``nonce (12) || ciphertext || tag (16)``.
- SM2 keys as hex: private key 64 hex digits; public key 128 hex digits ``x || y`` (an optional
  ``04`` uncompressed-point prefix is accepted on input).
- SM2 signatures as hex: ``r || s``, 64 hex digits each (not DER).

Errors: :class:`DecryptionFailed` (a sealed value that does not authenticate), ``ValueError`` for
malformed keys or inputs. :func:`sm2_verify` never raises for a bad signature or key: it returns
``False``.
"""

from __future__ import annotations

import dataclasses
import hmac as _stdlib_hmac
import json
import os
import re
import secrets
import threading
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from gmssl import sm2 as _gmssl_sm2  # type: ignore[import-untyped]

__all__ = [
    "GCM_NONCE_BYTES",
    "GCM_TAG_BYTES",
    "SM2_DEFAULT_USER_ID",
    "SM4_KEY_BYTES",
    "DecryptionFailed",
    "SM2KeyPair",
    "canonical_json",
    "hmac_sm3",
    "hmac_sm3_equal",
    "sm2_generate_keypair",
    "sm2_public_key_of",
    "sm2_sign",
    "sm2_verify",
    "sm2_z",
    "sm3",
    "sm4_ecb_encrypt_block",
    "sm4_gcm_decrypt",
    "sm4_gcm_encrypt",
]

SM4_KEY_BYTES = 16
SM4_BLOCK_BYTES = 16
GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16

#: GM/T 0009-2012 default signer id, used when the parties agreed on no other.
SM2_DEFAULT_USER_ID = b"1234567812345678"

_CURVE = _gmssl_sm2.default_ecc_table
_N = int(_CURVE["n"], 16)
_P = int(_CURVE["p"], 16)
_A = int(_CURVE["a"], 16)
_B = int(_CURVE["b"], 16)
_CURVE_BYTES = bytes.fromhex(_CURVE["a"] + _CURVE["b"] + _CURVE["g"])
_HEX = re.compile(r"^[0-9a-fA-F]*$")


class DecryptionFailed(Exception):
    """A sealed value could not be opened: wrong key, wrong field (AAD), altered or malformed."""


# --- SM3 and HMAC-SM3 ------------------------------------------------------------------------


def sm3(data: bytes) -> bytes:
    """SM3 digest (GB/T 32905-2016), 32 bytes."""
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104) with SM3 as the hash, 32 bytes."""
    mac = _hmac.HMAC(key, hashes.SM3())
    mac.update(data)
    return mac.finalize()


def hmac_sm3_equal(a: bytes | str, b: bytes | str) -> bool:
    """Constant-time comparison of two MACs (bytes or hex strings)."""
    if isinstance(a, str):
        a = a.encode("ascii", "replace")
    if isinstance(b, str):
        b = b.encode("ascii", "replace")
    return _stdlib_hmac.compare_digest(a, b)


# --- SM4 -------------------------------------------------------------------------------------


def _check_sm4_key(key: bytes) -> None:
    if len(key) != SM4_KEY_BYTES:
        raise ValueError(f"an SM4 key is {SM4_KEY_BYTES} bytes, got {len(key)}")


def sm4_ecb_encrypt_block(key: bytes, block: bytes) -> bytes:
    """Encrypt exactly one 16-byte block with raw SM4 (for the standard's test vectors only)."""
    _check_sm4_key(key)
    if len(block) != SM4_BLOCK_BYTES:
        raise ValueError(f"an SM4 block is {SM4_BLOCK_BYTES} bytes, got {len(block)}")
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


class _NoncePool:
    """Random nonces drawn from the OS in blocks: one ``getrandom`` per 256 encryptions, not one each.

    The bytes are the same CSPRNG output ``secrets.token_bytes`` gives; each slice is handed out
    once (under a lock: the hub seals from more than one thread).
    """

    BLOCK = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def take(self) -> bytes:
        with self._lock:
            if self._offset >= len(self._buffer):
                self._buffer = secrets.token_bytes(GCM_NONCE_BYTES * self.BLOCK)
                self._offset = 0
            start = self._offset
            self._offset = start + GCM_NONCE_BYTES
            return self._buffer[start:start + GCM_NONCE_BYTES]


    def forget(self) -> None:
        """A forked child must not hand out the nonces its parent still holds."""
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0


_nonces = _NoncePool()
os.register_at_fork(after_in_child=_nonces.forget)


def sm4_gcm_encrypt(key: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """SM4-GCM with a fresh random 96-bit nonce; returns ``nonce || ciphertext || tag``.

    Random nonces are safe for up to ~2^32 encryptions under one key (NIST SP 800-38D);
    rotate keys well before that.
    """
    _check_sm4_key(key)
    nonce = _nonces.take()
    encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    if aad:
        encryptor.authenticate_additional_data(aad)
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return nonce + ciphertext + encryptor.tag


def sm4_gcm_decrypt(key: bytes, sealed: bytes, aad: bytes = b"") -> bytes:
    """Open ``nonce || ciphertext || tag``; raises :class:`DecryptionFailed` unless it authenticates."""
    _check_sm4_key(key)
    if len(sealed) < GCM_NONCE_BYTES + GCM_TAG_BYTES:
        raise DecryptionFailed(f"sealed value too short ({len(sealed)} bytes) to hold a nonce and a tag")
    nonce = sealed[:GCM_NONCE_BYTES]
    tag = sealed[-GCM_TAG_BYTES:]
    decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    if aad:
        decryptor.authenticate_additional_data(aad)
    try:
        return decryptor.update(sealed[GCM_NONCE_BYTES:-GCM_TAG_BYTES]) + decryptor.finalize()
    except InvalidTag:
        raise DecryptionFailed("SM4-GCM authentication failed: wrong key, wrong context or altered data") from None


# --- SM2 -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SM2KeyPair:
    """An SM2 key pair as hex: ``private_hex`` (64 digits) and ``public_hex`` (128 digits, x || y)."""

    private_hex: str
    public_hex: str

    def __repr__(self) -> str:
        return f"SM2KeyPair(public_hex={self.public_hex!r}, private_hex=<hidden>)"


def _engine(private_hex: str, public_hex: str) -> Any:
    engine = _gmssl_sm2.CryptSM2(private_key=private_hex, public_key="")
    # set afterwards: gmssl's constructor strips leading '0'/'4' characters, not just a "04" prefix
    engine.public_key = public_hex
    return engine


def _private_scalar(private_hex: str) -> int:
    if not isinstance(private_hex, str) or len(private_hex) != 64 or not _HEX.match(private_hex):
        raise ValueError("an SM2 private key is 64 hex digits")
    d = int(private_hex, 16)
    if not 1 <= d <= _N - 2:
        raise ValueError("SM2 private key out of range [1, n-2]")
    return d


def _normalise_public(public_hex: str) -> str:
    """Return ``x || y`` as 128 lower-case hex digits, or raise ``ValueError`` if not on the curve."""
    if not isinstance(public_hex, str):
        raise ValueError("an SM2 public key is a hex string")
    if len(public_hex) == 130 and public_hex[:2] == "04":
        public_hex = public_hex[2:]
    if len(public_hex) != 128 or not _HEX.match(public_hex):
        raise ValueError("an SM2 public key is 128 hex digits (x || y), optionally prefixed by 04")
    x, y = int(public_hex[:64], 16), int(public_hex[64:], 16)
    if not (x < _P and y < _P and (y * y - x * x * x - _A * x - _B) % _P == 0):
        raise ValueError("SM2 public key is not a point on the curve")
    return public_hex.lower()


def sm2_generate_keypair() -> SM2KeyPair:
    """A fresh SM2 key pair (private scalar from :mod:`secrets`)."""
    d = secrets.randbelow(_N - 2) + 1
    private_hex = f"{d:064x}"
    return SM2KeyPair(private_hex, sm2_public_key_of(private_hex))


def sm2_public_key_of(private_hex: str) -> str:
    """The public key (128 hex digits) belonging to a private key."""
    d = _private_scalar(private_hex)
    point: str = _engine(private_hex, "")._kg(d, _CURVE["g"])
    return point


def sm2_z(public_hex: str, user_id: bytes = SM2_DEFAULT_USER_ID) -> bytes:
    """``Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A)`` (GB/T 32918.2-2016, 5.5)."""
    public_hex = _normalise_public(public_hex)
    bits = len(user_id) * 8
    if bits > 0xFFFF:
        raise ValueError("SM2 user id longer than 8191 bytes")
    return sm3(bits.to_bytes(2, "big") + user_id + _CURVE_BYTES + bytes.fromhex(public_hex))


def _digest(public_hex: str, data: bytes, user_id: bytes) -> bytes:
    return sm3(sm2_z(public_hex, user_id) + data)


def sm2_sign(
    private_hex: str, data: bytes, *, public_hex: str | None = None, user_id: bytes = SM2_DEFAULT_USER_ID
) -> str:
    """SM2 signature of ``data`` with SM3 (``e = SM3(Z_A || data)``); hex ``r || s``.

    Pass ``public_hex`` when known to save one scalar multiplication (~8 ms).
    """
    _private_scalar(private_hex)
    public_hex = _normalise_public(public_hex) if public_hex is not None else sm2_public_key_of(private_hex)
    e = _digest(public_hex, data, user_id)
    engine = _engine(private_hex, public_hex)
    while True:  # gmssl returns None for the rare k that gives r = 0, r + k = n or s = 0: draw again
        k = secrets.randbelow(_N - 1) + 1
        signature: str | None = engine.sign(e, f"{k:064x}")
        if signature is not None:
            return signature


def sm2_verify(public_hex: str, data: bytes, signature: str, *, user_id: bytes = SM2_DEFAULT_USER_ID) -> bool:
    """True if ``signature`` (hex ``r || s``) is a valid SM2 signature of ``data`` under ``public_hex``.

    Never raises: a malformed key or signature is simply not valid.
    """
    try:
        public_hex = _normalise_public(public_hex)
        if not isinstance(signature, str) or len(signature) != 128 or not _HEX.match(signature):
            return False
        r, s = int(signature[:64], 16), int(signature[64:], 16)
        if not (1 <= r < _N and 1 <= s < _N):  # GB/T 32918.2-2016 7.1 B1, B2
            return False
        return bool(_engine("", public_hex).verify(signature.lower(), _digest(public_hex, data, user_id)))
    except (ValueError, TypeError, AttributeError):  # gmssl fails this way on degenerate points
        return False


# --- canonical content for signatures --------------------------------------------------------


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON for signed or MACed content: sorted keys, no spaces, UTF-8, no NaN.

    Only JSON types (dict with str keys, list, str, int, float, bool, None); convert dates and
    decimals to strings first. The same object always gives the same bytes, so a signature over
    them can be checked later against the stored object.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )

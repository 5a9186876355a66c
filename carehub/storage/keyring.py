"""The key ring: SM4 field encryption, HMAC-SM3 blind indexes and row integrity tags.

Keys come from a JSON key file (``CAREHUB_KEY_FILE``) or the environment (``CAREHUB_KEYS``),
**never from the database**, so a stolen dump or a database administrator sees only ciphertext::

    {"current": "k2",
     "keys": {"k1": "<32 hex digits>", "k2": "<32 hex digits>"},
     "index_key": "<64 hex digits>",
     "integrity_key": "<64 hex digits>"}

A sealed value is text, ``sm4gcm:<key id>:<base64url(nonce || ciphertext || tag)>``: the key id
travels with the value, so values under old and new keys coexist while
:func:`carehub.storage.rotation.rotate_table` re-encrypts in the background. The field name is the
GCM additional data: a value copied into another column does not open there.

Rotating without downtime:

1. add the new key to the file, keeping ``current`` (every process can now *read* it), reload;
2. make it ``current`` (new writes use it), reload;
3. run the rotation for each encrypted table until it reports nothing left;
4. only then remove the old key.

The blind index key and the integrity key are not rotated by this module: changing them means
recomputing every index and tag from the plaintext.

Errors (all :class:`carehub.errors.CareHubError`, so a request that meets one is answered by its
code, with an ``ALARM`` line in the log): :class:`KeyRingError` (bad or missing configuration,
``key_ring_mismatch``), :class:`SealedValueUnreadable` (a :class:`DecryptionFailed`: a value that
does not open, ``key_ring_mismatch``), :class:`IntegrityError` (a row whose tag does not match its
stored values, ``integrity_error``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import secrets
import stat
import struct
import tempfile
import unicodedata
from collections.abc import Mapping
from pathlib import Path

from carehub.errors import CareHubError

from .crypto import DecryptionFailed, hmac_sm3, hmac_sm3_equal, sm4_gcm_decrypt, sm4_gcm_encrypt

__all__ = [
    "KEYS_ENV",
    "KEY_FILE_ENV",
    "DecryptionFailed",
    "IntegrityError",
    "KeyRing",
    "KeyRingError",
    "SealedValueUnreadable",
    "ensure_key_file",
    "normalise_for_index",
    "write_key_file",
]

log = logging.getLogger("carehub.storage.keyring")

KEY_FILE_ENV = "CAREHUB_KEY_FILE"
KEYS_ENV = "CAREHUB_KEYS"

SCHEME = "sm4gcm"
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_FIELD = re.compile(r"^[A-Za-z0-9_.:/-]{1,100}$")
_MAC_KEY_MIN_BYTES = 16


#: what people are told when stored values do not open (the details go to the operators' log)
KEY_RING_MESSAGE = "加密密钥与数据库不匹配，已通知运维 (the encryption keys do not fit the data)"


class KeyRingError(CareHubError):
    """The key ring is missing or malformed (file, environment or a call's arguments).

    ``str(err)`` says what is wrong, for the operators; ``err.message`` is what people are told.
    """

    code = "key_ring_mismatch"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.message = KEY_RING_MESSAGE


class SealedValueUnreadable(DecryptionFailed, CareHubError):
    """A stored value does not open with this key ring (:meth:`KeyRing.open`): most often the key
    file is not the one the database was written with. A :class:`DecryptionFailed` too."""

    code = "key_ring_mismatch"

    def __init__(self, detail: str) -> None:
        CareHubError.__init__(self, detail)
        self.message = KEY_RING_MESSAGE


class IntegrityError(CareHubError):
    """A row's stored values do not match its HMAC-SM3 tag: changed outside CareHub."""

    code = "integrity_error"

    def __init__(self, table: str, row_id: str) -> None:
        super().__init__(f"integrity check failed for {table} row {row_id!r}: changed outside CareHub")
        self.message = "数据完整性校验失败，已通知运维 (a stored record failed its check)"
        self.table = table
        self.row_id = row_id


def _check_field(field: str) -> bytes:
    if not isinstance(field, str) or not _FIELD.match(field):
        raise KeyRingError(f"field name must match {_FIELD.pattern}, got {field!r}")
    return field.encode("ascii")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _lp(data: bytes) -> bytes:
    """Length-prefixed bytes: an unambiguous encoding of a sequence of byte strings."""
    return struct.pack(">I", len(data)) + data


def normalise_for_index(value: str) -> str:
    """What a blind index compares: NFKC (full-width digits and letters become ASCII), no
    whitespace anywhere, case-folded (``x`` and ``X`` in an ID number are the same).

    Field-specific rules (``+86`` prefixes on phone numbers, say) are the caller's business.
    """
    return "".join(unicodedata.normalize("NFKC", value).split()).casefold()


class KeyRing:
    """SM4 data keys by id (one of them current), an index key and an integrity key."""

    def __init__(self, keys: Mapping[str, bytes], current: str, *, index_key: bytes, integrity_key: bytes) -> None:
        for key_id, key in keys.items():
            self._check_data_key(key_id, key)
        if current not in keys:
            raise KeyRingError(f"current key {current!r} is not among the keys {sorted(keys)}")
        for name, mac_key in (("index_key", index_key), ("integrity_key", integrity_key)):
            if len(mac_key) < _MAC_KEY_MIN_BYTES:
                raise KeyRingError(f"{name} must be at least {_MAC_KEY_MIN_BYTES} bytes, got {len(mac_key)}")
        if index_key == integrity_key:
            raise KeyRingError("index_key and integrity_key must differ")
        self._keys = dict(keys)
        self._current = current
        self._index_key = bytes(index_key)
        self._integrity_key = bytes(integrity_key)

    def __repr__(self) -> str:
        return f"KeyRing(current={self._current!r}, key_ids={self.key_ids})"

    # --- construction ----------------------------------------------------------------------

    @staticmethod
    def _check_data_key(key_id: str, key: bytes) -> None:
        if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
            raise KeyRingError(f"key id must match {_KEY_ID.pattern}, got {key_id!r}")
        if len(key) != 16:
            raise KeyRingError(f"SM4 key {key_id!r} must be 16 bytes (32 hex digits), got {len(key)} bytes")

    @classmethod
    def generate(cls, key_id: str = "k1") -> KeyRing:
        """A fresh random ring for development and demos."""
        return cls(
            {key_id: secrets.token_bytes(16)},
            key_id,
            index_key=secrets.token_bytes(32),
            integrity_key=secrets.token_bytes(32),
        )

    @classmethod
    def from_json(cls, text: str, *, source: str = "key ring JSON") -> KeyRing:
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise KeyRingError(f"{source}: expected a JSON object")
            keys = doc["keys"]
            if not isinstance(keys, dict) or not keys:
                raise KeyRingError(f"{source}: 'keys' must be a non-empty object of key id -> hex key")
            return cls(
                {str(k): bytes.fromhex(v) for k, v in keys.items()},
                doc["current"],
                index_key=bytes.fromhex(doc["index_key"]),
                integrity_key=bytes.fromhex(doc["integrity_key"]),
            )
        except KeyError as err:
            raise KeyRingError(f"{source}: missing {err.args[0]!r}") from None
        except (ValueError, TypeError) as err:  # bad JSON, bad hex, wrong types
            raise KeyRingError(f"{source}: {err}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> KeyRing:
        path = Path(path)
        try:
            text = path.read_text("utf-8")
            mode = path.stat().st_mode
        except OSError as err:
            raise KeyRingError(f"cannot read key file {path}: {err.strerror or err}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("key file %s is readable by group or others (mode %o); chmod 600 it", path, mode & 0o777)
        return cls.from_json(text, source=f"key file {path}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KeyRing:
        """From ``CAREHUB_KEY_FILE`` (preferred) or ``CAREHUB_KEYS``; :class:`KeyRingError` if neither."""
        environ = os.environ if environ is None else environ
        if environ.get(KEY_FILE_ENV):
            return cls.from_file(environ[KEY_FILE_ENV])
        if environ.get(KEYS_ENV):
            return cls.from_json(environ[KEYS_ENV], source=f"${KEYS_ENV}")
        raise KeyRingError(f"no encryption keys: set {KEY_FILE_ENV} to a key file or {KEYS_ENV} to its JSON")

    def to_json(self) -> str:
        """The ring as key-file JSON (contains secrets: write it only to a 0600 file)."""
        return json.dumps(
            {
                "current": self._current,
                "keys": {k: v.hex() for k, v in sorted(self._keys.items())},
                "index_key": self._index_key.hex(),
                "integrity_key": self._integrity_key.hex(),
            },
            indent=2,
        )

    # --- keys ------------------------------------------------------------------------------

    @property
    def current_key_id(self) -> str:
        return self._current

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def adopt(self, other: KeyRing) -> None:
        """Take over ``other``'s keys in place (a running process re-reading its key file).

        The index and integrity keys must be the same: changing those is not a rotation.
        """
        if other._index_key != self._index_key or other._integrity_key != self._integrity_key:
            raise KeyRingError("the new key file has a different index or integrity key; refusing to reload")
        self._keys = dict(other._keys)
        self._current = other._current

    def next_key_id(self) -> str:
        """``k<n+1>`` after the highest ``k<n>`` in the ring."""
        numbers = [int(k[1:]) for k in self._keys if k[:1] == "k" and k[1:].isdigit()]
        return f"k{max(numbers, default=0) + 1}"

    def add_key(self, key_id: str, key: bytes | None = None) -> str:
        """Add a data key (random if ``key`` is None) without making it current; returns its id."""
        key = secrets.token_bytes(16) if key is None else key
        self._check_data_key(key_id, key)
        if key_id in self._keys:
            if hmac_sm3_equal(self._keys[key_id], key):
                return key_id
            raise KeyRingError(f"key id {key_id!r} already holds a different key")
        self._keys[key_id] = key
        return key_id

    def rotate_to(self, key_id: str) -> None:
        """Make ``key_id`` the key new values are sealed with."""
        if key_id not in self._keys:
            raise KeyRingError(f"cannot rotate to unknown key {key_id!r}; add it first")
        self._current = key_id

    def retire_key(self, key_id: str) -> None:
        """Forget a key once no stored value uses it (check with the rotation first)."""
        if key_id == self._current:
            raise KeyRingError(f"cannot retire the current key {key_id!r}")
        self._keys.pop(key_id, None)

    # --- sealing ---------------------------------------------------------------------------

    def seal(self, plaintext: str, *, field: str) -> str:
        """Encrypt ``plaintext`` for column ``field`` under the current key."""
        aad = _check_field(field)
        sealed = sm4_gcm_encrypt(self._keys[self._current], plaintext.encode("utf-8"), aad)
        return f"{SCHEME}:{self._current}:{_b64(sealed)}"

    def open(self, token: str, *, field: str) -> str:
        """Decrypt a value sealed for ``field``; :class:`SealedValueUnreadable` (a
        :class:`DecryptionFailed`) says why it cannot, after an ALARM line in the log."""
        try:
            return self._open(token, field)
        except (DecryptionFailed, KeyRingError) as err:
            log.error("ALARM key ring: %s (is CAREHUB_KEY_FILE the key file this database was written with?)", err)
            raise SealedValueUnreadable(str(err)) from None

    def _open(self, token: str, field: str) -> str:
        aad = _check_field(field)
        key_id, body = self._split(token, field)
        key = self._keys.get(key_id)
        if key is None:
            raise DecryptionFailed(
                f"{field}: value is sealed with key {key_id!r}, which is not in the key ring {self.key_ids}"
            )
        try:
            sealed = _unb64(body)
        except (ValueError, binascii.Error):
            raise DecryptionFailed(f"{field}: sealed value is not valid base64url") from None
        try:
            plaintext = sm4_gcm_decrypt(key, sealed, aad)
        except DecryptionFailed:
            raise DecryptionFailed(
                f"{field}: value does not authenticate under key {key_id!r}"
                " (sealed for another field, or altered)"
            ) from None
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:  # authenticated, so only a bug could get here
            raise DecryptionFailed(f"{field}: decrypted value is not UTF-8") from None

    def seal_optional(self, plaintext: str | None, *, field: str) -> str | None:
        return None if plaintext is None else self.seal(plaintext, field=field)

    def open_optional(self, token: str | None, *, field: str) -> str | None:
        return None if token is None else self.open(token, field=field)

    @staticmethod
    def is_sealed(value: object) -> bool:
        return isinstance(value, str) and value.startswith(SCHEME + ":")

    @staticmethod
    def _split(token: str, field: str) -> tuple[str, str]:
        if not isinstance(token, str):
            raise DecryptionFailed(f"{field}: expected a sealed text value, got {type(token).__name__}")
        parts = token.split(":", 2)
        if len(parts) != 3 or parts[0] != SCHEME or not _KEY_ID.match(parts[1]):
            raise DecryptionFailed(f"{field}: not a sealed value (expected '{SCHEME}:<key id>:<data>')")
        return parts[1], parts[2]

    def key_id_of(self, token: str) -> str:
        """The id of the key a sealed value is under."""
        return self._split(token, "value")[0]

    # --- blind index -----------------------------------------------------------------------

    def blind_index(self, value: str, *, field: str) -> str:
        """Hex HMAC-SM3 of the normalised value, separated per field: equal values of one field
        give equal indexes (exact-match lookup), the same value in two fields does not."""
        data = _lp(b"carehub.blind-index.v1") + _lp(_check_field(field))
        data += _lp(normalise_for_index(value).encode("utf-8"))
        return hmac_sm3(self._index_key, data).hex()

    # --- integrity ---------------------------------------------------------------------------

    def mac(self, domain: str, data: bytes) -> str:
        """Hex HMAC-SM3 with the integrity key over ``domain`` and ``data`` (for other tamper seals
        such as the audit chain; each use picks its own domain)."""
        return hmac_sm3(self._integrity_key, _lp(_check_field(domain)) + data).hex()

    @staticmethod
    def _row_encoding(table: str, row_id: str | int, fields: Mapping[str, str | None]) -> bytes:
        out = [_lp(table.encode("utf-8")), _lp(str(row_id).encode("utf-8")), struct.pack(">I", len(fields))]
        for name in sorted(fields):
            value = fields[name]
            if value is not None and not isinstance(value, str):
                raise TypeError(f"integrity tags cover text values; {name!r} is {type(value).__name__}")
            out.append(_lp(name.encode("utf-8")))
            out.append(b"\x00" if value is None else b"\x01" + _lp(value.encode("utf-8")))
        return b"".join(out)

    def integrity_tag(self, table: str, row_id: str | int, fields: Mapping[str, str | None]) -> str:
        """Hex HMAC-SM3 over the table, the row id and the stored (sealed) column values."""
        return self.mac("row", self._row_encoding(table, row_id, fields))

    def integrity_ok(self, table: str, row_id: str | int, fields: Mapping[str, str | None], tag: str | None) -> bool:
        if not isinstance(tag, str):
            return False
        return hmac_sm3_equal(self.integrity_tag(table, row_id, fields), tag.lower())

    def check_integrity(
        self, table: str, row_id: str | int, fields: Mapping[str, str | None], tag: str | None
    ) -> None:
        """Raise :class:`IntegrityError` unless ``tag`` matches: never serve a tampered row."""
        if not self.integrity_ok(table, row_id, fields, tag):
            err = IntegrityError(table, str(row_id))
            log.error("ALARM integrity: %s", err)
            raise err


# --- key files ---------------------------------------------------------------------------------


def _write_temp(directory: Path, ring: KeyRing) -> str:
    """A complete, fsynced 0600 file holding ``ring`` next to its final place; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=directory)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(ring.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def write_key_file(path: str | os.PathLike[str], ring: KeyRing) -> None:
    """Write (or atomically replace) a key file readable by its owner only (0600)."""
    path = Path(path)
    tmp = _write_temp(path.parent, ring)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_key_file(path: str | os.PathLike[str]) -> KeyRing:
    """Load the key file at ``path``, creating it with a fresh ring (mode 0600) if it is missing.

    For the demo server's data folder; production provisions its key file (or ``CAREHUB_KEYS``)
    from its secret store. Losing this file loses the encrypted data: back it up apart from the
    database.
    """
    path = Path(path)
    if path.exists():
        return KeyRing.from_file(path)
    ring = KeyRing.generate()
    tmp = _write_temp(path.parent, ring)
    try:
        os.link(tmp, path)  # atomic and never replaces: two starters cannot end with two rings
    except FileExistsError:
        return KeyRing.from_file(path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    log.info("created key file %s", path)
    return ring

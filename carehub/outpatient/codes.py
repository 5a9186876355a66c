"""Signed QR payloads: the visit code on a booking, the slip code on a prescription or exam slip.

A code is ``prefix`` + unpadded URL-safe base64 of the fields and a tag, joined by ``sep``; the
tag is the first 32 hex digits of the key ring's HMAC-SM3 of the fields in its own ``domain``,
so a code made for one purpose never passes as another.
"""

from __future__ import annotations

import base64
import hmac

from carehub.storage.keyring import KeyRing


class BadCode(Exception):
    """``forged`` is False when the code cannot be read at all, True when its tag does not match."""

    def __init__(self, forged: bool) -> None:
        super().__init__("forged" if forged else "unreadable")
        self.forged = forged


def seal(keyring: KeyRing, domain: str, prefix: str, sep: str, *fields: str) -> str:
    body = sep.join(fields)
    tag = keyring.mac(domain, body.encode())[:32]
    return prefix + base64.urlsafe_b64encode(f"{body}{sep}{tag}".encode()).decode().rstrip("=")


def unseal(keyring: KeyRing, domain: str, prefix: str, sep: str, code: str, fields: int) -> list[str]:
    """The fields of a code :func:`seal` made; raises :class:`BadCode` otherwise."""
    try:
        if not code.startswith(prefix) or len(code) > 400:
            raise ValueError
        raw = code[len(prefix):]
        parts = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().split(sep)
    except (ValueError, UnicodeDecodeError):
        raise BadCode(forged=False) from None
    if len(parts) != fields + 1:
        raise BadCode(forged=False)
    *values, tag = parts
    expected = keyring.mac(domain, sep.join(values).encode())[:32]
    if not hmac.compare_digest(tag.encode(), expected.encode()):
        raise BadCode(forged=True)
    return values

"""Display masking of personal data (NFR-4): what an API response shows when it does not need
the full value.

============  =====================  ======================
function      rule                   example
============  =====================  ======================
ID number     first 3, last 4        ``110***********1234``
phone         first 3, last 4        ``138****5678``
name          first character        ``张**``
address       first 6 characters     ``北京市朝阳区****``
============  =====================  ======================

Every function takes anything (``None``, odd lengths, stray spaces, non-strings) and never raises.
A value shorter than the usual length reveals proportionally fewer characters, so a short or
truncated value is never shown more completely than a full one would be, and one under half the
usual length is masked whole (a 7-digit "phone" does not come back readable).
"""

from __future__ import annotations

__all__ = ["mask_address", "mask_id_number", "mask_name", "mask_phone"]

MASK = "*"


def _text(value: object) -> str:
    if value is None:
        return ""
    try:
        return value.strip() if isinstance(value, str) else str(value).strip()
    except Exception:  # a __str__ that fails: show nothing rather than fail the response
        return ""


def _keep_ends(value: str, head: int, tail: int, usual_length: int) -> str:
    """Keep ``head`` and ``tail`` characters of a value of ``usual_length``, scaled down for a
    shorter one; every other character becomes ``*``."""
    n = len(value)
    if n < usual_length // 2:  # far too short to be what it claims: show none of it
        return MASK * n
    if n < usual_length:
        head, tail = head * n // usual_length, tail * n // usual_length
    hidden = n - head - tail
    if hidden <= 0:  # cannot happen with the scaling above; belt and braces
        return MASK * n
    return value[:head] + MASK * hidden + (value[n - tail:] if tail else "")


def mask_id_number(value: object) -> str:
    """``110101199003071234`` -> ``110***********1234`` (first 3 and last 4 kept)."""
    text = "".join(_text(value).split())
    return _keep_ends(text, 3, 4, 18)


def mask_phone(value: object) -> str:
    """``13812345678`` -> ``138****5678``; spaces, dashes and a ``+86`` prefix are dropped first."""
    text = "".join(_text(value).split()).replace("-", "")
    if text.startswith("+86"):
        text = text[3:]
    return _keep_ends(text, 3, 4, 11)


def mask_name(value: object) -> str:
    """``张三丰`` -> ``张**`` (the first character kept); a one-character name is ``*``."""
    text = _text(value)
    if len(text) <= 1:
        return MASK * len(text)
    return text[0] + MASK * (len(text) - 1)


def mask_address(value: object) -> str:
    """``北京市朝阳区建国路88号`` -> ``北京市朝阳区****``: the province/city prefix (first 6
    characters) and a fixed ``****``, so the length of the rest is not shown either. A short
    address keeps at most half of its characters."""
    text = _text(value)
    if not text:
        return ""
    return text[: min(6, len(text) // 2)] + MASK * 4

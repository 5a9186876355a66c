"""Re-encrypt sealed columns under the key ring's current key, in the background, without downtime.

:func:`rotate_table` walks a table in primary-key order, a batch at a time (one transaction and
one bridge crossing per batch), picking rows where any of the given columns holds a sealed value
whose key id is not the current one. Each row is updated on its own with the values it was read
with in the WHERE clause (compare-and-set): if the application changed the row meanwhile, the
update matches nothing and the newer value stays; that value was written by the application with
the current key, or the next pass picks it up.

Before re-tagging a row the existing integrity tag is checked: rotation never launders a row that
was changed behind CareHub's back. Such rows, and values that do not open, are left as they are and
reported together at the end with :class:`RotationIncomplete`, after everything else is rotated.

Run it after every CareHub process reads the new key and seals with it (see
:mod:`carehub.storage.keyring`); repeat until it returns 0, then retire the old key.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from .crypto import DecryptionFailed
from .db import Database
from .keyring import SCHEME, KeyRing

__all__ = ["RotationIncomplete", "rotate_table"]

log = logging.getLogger("carehub.storage.rotation")

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MAX_PASSES = 3


class RotationIncomplete(Exception):
    """Some rows could not be rotated (tampered or unreadable); everything else was."""

    def __init__(self, table: str, rotated: int, failed: dict[str, str]) -> None:
        sample = ", ".join(f"{k}: {v}" for k, v in list(failed.items())[:5])
        super().__init__(
            f"{table}: rotated {rotated} rows, {len(failed)} left under their old key ({sample})"
        )
        self.table = table
        self.rotated = rotated
        self.failed = failed


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


async def rotate_table(
    db: Database,
    keyring: KeyRing,
    *,
    table: str,
    id_column: str,
    columns: Sequence[str],
    tag_column: str | None = None,
    tag_columns: Sequence[str] | None = None,
    batch: int = 500,
    fields: Mapping[str, str] | None = None,
) -> int:
    """Re-encrypt every value in ``columns`` of ``table`` that is sealed under a non-current key.

    ``columns`` hold values sealed with ``field=<column name>`` (or ``fields[column]`` when given).
    If ``tag_column`` is given it holds
    ``keyring.integrity_tag(table, row id, {column: stored value})`` over ``tag_columns`` (default:
    ``columns``; every one a text column), checked before and recomputed after. Returns the number
    of rows changed; raises :class:`RotationIncomplete` if some rows had to be left.
    """
    if not columns:
        raise ValueError("no columns to rotate")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    tagged = list(tag_columns) if tag_columns is not None else list(columns)
    if tag_column is not None and not set(columns) <= set(tagged):
        raise ValueError("tag_columns must include every rotated column")
    read_columns = list(dict.fromkeys([*columns, *(tagged if tag_column is not None else [])]))
    for name in [table, id_column, *read_columns, *([tag_column] if tag_column else [])]:
        _ident(name)

    current_prefix = f"{SCHEME}:{keyring.current_key_id}:"
    scheme_prefix = f"{SCHEME}:"
    key = _ident(id_column)

    def select_sql(after: bool) -> str:
        first = 2 if after else 1
        # substr rather than LIKE: key ids may contain '_', a LIKE wildcard; both are portable
        stale = " OR ".join(
            f"(substr({_ident(c)}, 1, {len(scheme_prefix)}) = ${first}"
            f" AND substr({_ident(c)}, 1, {len(current_prefix)}) <> ${first + 1})"
            for c in columns
        )
        selected = ", ".join([key, *map(_ident, read_columns), *([_ident(tag_column)] if tag_column else [])])
        return (
            f"SELECT {selected} FROM {_ident(table)} WHERE {f'{key} > $1 AND ' if after else ''}({stale})"
            f" ORDER BY {key} LIMIT {int(batch)}"
        )

    first_sql, next_sql = select_sql(False), select_sql(True)
    written = [*columns, *([tag_column] if tag_column else [])]
    n = len(written)
    update_sql = (
        f"UPDATE {_ident(table)} SET "
        + ", ".join(f"{_ident(c)} = ${i + 1}" for i, c in enumerate(written))
        + f" WHERE {key} = ${n + 1} AND "
        + " AND ".join(f"{_ident(c)} IS NOT DISTINCT FROM ${n + 2 + i}" for i, c in enumerate(written))
    )

    def rewrite(row: asyncpg.Record) -> list[Any] | str:
        """New values for ``written``, or why the row must be left alone."""
        row_id = row[id_column]
        if tag_column is not None and not keyring.integrity_ok(
            table, row_id, {c: row[c] for c in tagged}, row[tag_column]
        ):
            return "integrity tag does not match"
        new = {c: row[c] for c in read_columns}
        try:
            for c in columns:
                value = row[c]
                if KeyRing.is_sealed(value) and not value.startswith(current_prefix):
                    field = (fields or {}).get(c, c)
                    new[c] = keyring.seal(keyring.open(value, field=field), field=field)
        except DecryptionFailed as err:
            return str(err)
        values = [new[c] for c in columns]
        if tag_column is not None:
            values.append(keyring.integrity_tag(table, row_id, {c: new[c] for c in tagged}))
        return values

    async def one_batch(conn: asyncpg.Connection, after: Any) -> tuple[int, Any, dict[str, str], int]:
        async with conn.transaction():
            if after is None:
                rows = await conn.fetch(first_sql, scheme_prefix, current_prefix)
            else:
                rows = await conn.fetch(next_sql, after, scheme_prefix, current_prefix)
            changed = 0
            failed: dict[str, str] = {}
            for row in rows:
                values = rewrite(row)
                if isinstance(values, str):
                    failed[str(row[id_column])] = values
                    continue
                old = [row[c] for c in written]
                status = await conn.execute(update_sql, *values, row[id_column], *old)
                changed += status == "UPDATE 1"
        return changed, (rows[-1][id_column] if rows else None), failed, len(rows)

    total = 0
    failed: dict[str, str] = {}
    for _ in range(_MAX_PASSES):
        after: Any = None
        seen_in_pass = 0
        while True:
            changed, last, batch_failed, seen = await db.run(one_batch, after)
            total += changed
            failed.update(batch_failed)
            seen_in_pass += seen - len(batch_failed)
            if seen < batch or last is None:
                break
            after = last
        if seen_in_pass == 0:  # nothing left but the rows we cannot touch
            break
    else:
        log.warning("key rotation of %s: values under old keys keep appearing; is every process on key %s?",
                    table, keyring.current_key_id)
    if failed:
        log.error("key rotation of %s left %d rows: %s", table, len(failed), failed)
        raise RotationIncomplete(table, total, failed)
    log.info("key rotation of %s: %d rows now under key %s", table, total, keyring.current_key_id)
    return total


#: Every sealed column CareHub writes: table, id column, columns (with their seal field names),
#: and the integrity tag with the columns it covers.
SEALED_TABLES: tuple[dict[str, Any], ...] = (
    {"table": "accounts", "id_column": "id", "columns": ["phone_enc", "totp_secret_enc", "display_name_enc"],
     "fields": {"phone_enc": "accounts.phone", "totp_secret_enc": "accounts.totp_secret",
                "display_name_enc": "accounts.display_name"}},
    {"table": "patients", "id_column": "id", "columns": ["name_enc", "id_number_enc"],
     "fields": {"name_enc": "patients.name", "id_number_enc": "patients.id_number"},
     "tag_column": "row_tag", "tag_columns": ["name_enc", "id_number_enc", "id_number_idx", "sex", "verified_by"]},
    {"table": "verifications", "id_column": "id", "columns": ["photo_enc"],
     "fields": {"photo_enc": "verifications.photo"}},
    {"table": "partner_keys", "id_column": "key_id", "columns": ["secret_enc"],
     "fields": {"secret_enc": "partner_keys.secret"}},
    {"table": "signing_keys", "id_column": "key_id", "columns": ["private_enc"],
     "fields": {"private_enc": "signing_keys.private"}},
)


async def rotate_all(db: Database, keyring: KeyRing) -> dict[str, int]:
    """Re-encrypt every sealed column of every table under the current key; rows changed by table."""
    return {spec["table"]: await rotate_table(db, keyring, **spec) for spec in SEALED_TABLES}

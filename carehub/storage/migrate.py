"""Forward-only numbered SQL migrations (``migrations/NNNN_name.sql``), applied at start-up."""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
import re

import asyncpg

from .db import Database

log = logging.getLogger("carehub.storage")

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    found = []
    for entry in importlib.resources.files("carehub.storage").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


def latest_version() -> int:
    return len(migrations())


async def _migrate(conn: asyncpg.Connection, todo: list[Migration]) -> list[int]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version integer PRIMARY KEY, name varchar(200) NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    applied: list[int] = []
    async with conn.transaction():
        # serialise concurrent starters: the second waits, then finds the work done
        await conn.execute("LOCK TABLE schema_version IN EXCLUSIVE MODE")
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_version")}
        for m in todo:
            if m.version in done:
                continue
            await conn.execute(m.sql)
            await conn.execute("INSERT INTO schema_version (version, name) VALUES ($1, $2)", m.version, m.name)
            applied.append(m.version)
    return applied


async def migrate(db: Database) -> int:
    """Apply what is missing; return the schema version now in force."""
    applied = await db.run(_migrate, migrations())
    for version in applied:
        log.info("applied migration %04d", version)
    return await schema_version(db)


async def schema_version(db: Database) -> int:
    return int(await db.fetchval("SELECT coalesce(max(version), 0) FROM schema_version") or 0)

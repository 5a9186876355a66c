"""Storage: migrations, failover-style connection URLs, stream retention."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit, urlunsplit

from carehub.storage.db import Database, open_database
from carehub.storage.hub_store import PostgresHubStore
from carehub.storage.migrate import latest_version, migrate, schema_version


async def test_migrations_are_recorded_and_running_them_again_changes_nothing(db: Database) -> None:
    assert await schema_version(db) == latest_version()
    assert await migrate(db) == latest_version()
    rows = await db.fetch("SELECT version, name FROM schema_version ORDER BY version")
    assert [r["version"] for r in rows] == list(range(1, latest_version() + 1))


async def test_a_multi_host_url_with_target_session_attrs_finds_the_writable_server(
    aio_loop: None, database_url: str
) -> None:
    parts = urlsplit(database_url)
    # the first host refuses connections, as a failed primary would
    netloc = f"{parts.username}@127.0.0.1:1,{parts.hostname}:{parts.port or 5432}"
    query = "target_session_attrs=read-write"
    url = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    async with open_database(url) as database:
        assert await schema_version(database) == latest_version()
        assert await database.fetchval("SHOW transaction_read_only") == "off"


async def test_deliveries_older_than_the_retention_period_are_purged(db: Database) -> None:
    await db.execute(
        "INSERT INTO deliveries (account_id, seq, msg_id, type, body, created_at) VALUES"
        " ('x', 1, 'm1', 't', '{}', now() - interval '31 days'), ('x', 2, 'm2', 't', '{}', now())"
    )
    store = PostgresHubStore(db)
    purged = await store.purge_deliveries(dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
    assert purged == 1
    assert [r["seq"] for r in await db.fetch("SELECT seq FROM deliveries WHERE account_id = 'x'")] == [2]

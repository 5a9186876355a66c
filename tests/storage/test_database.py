"""Storage: migrations, failover-style connection URLs, stream retention."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import trio

from carehub.storage.db import Database, open_database, open_threaded_database
from carehub.storage.hub_store import HUB_STORE_SETTINGS, PostgresHubStore
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


async def test_the_threaded_pool_answers_and_a_cancelled_operation_leaves_no_transaction_open(
    aio_loop: None, database_url: str
) -> None:
    """The hub's own pool runs on a loop in another thread; Trio cancellation still reaches it."""

    async def stuck(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_sleep(30)")

    async def in_transaction(conn: asyncpg.Connection) -> bool:
        return bool(conn.is_in_transaction())

    async with open_threaded_database(database_url, min_size=1, max_size=1) as database:
        assert await schema_version(database) == latest_version()
        with trio.move_on_after(0.3) as waited:
            await database.run(stuck)
        with trio.fail_after(10):
            left_open = await database.run(in_transaction)  # the one connection, back from the cancel
    assert waited.cancelled_caught and left_open is False


async def test_the_hub_stores_pool_plans_for_key_lookups_and_skips_a_setting_the_server_lacks(
    aio_loop: None, database_url: str
) -> None:
    """HUB_STORE_SETTINGS on every connection; an unknown one (a compatible server's gap) does not stop the pool."""
    settings = {**HUB_STORE_SETTINGS, "carehub_test.no_such_setting_here": "x", "no_such_setting": "on"}
    async with open_threaded_database(database_url, min_size=1, max_size=1, settings=settings) as database:
        shown = await database.fetchrow("SELECT current_setting('enable_seqscan') AS seq,"
                                        " current_setting('plan_cache_mode') AS plans")
    assert shown is not None and (shown["seq"], shown["plans"]) == ("off", "force_generic_plan")


async def test_stored_messages_performed_together_are_all_marked_done(db: Database) -> None:
    store = PostgresHubStore(db)
    ids = [f"done-{i}" for i in range(40)]
    for row_id in ids:
        await db.execute(
            "INSERT INTO scheduled_messages (id, target, type, body, due_at, created_at)"
            " VALUES ($1, 'his/x', 'PushAppointment', '{}', now(), now())", row_id,
        )
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        async with trio.open_nursery() as performers:
            for row_id in ids:
                performers.start_soon(store.complete_scheduled, row_id)
        nursery.cancel_scope.cancel()
    assert await db.fetchval("SELECT count(*) FROM scheduled_messages WHERE id LIKE 'done-%'") == 0

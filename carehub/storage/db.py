"""PostgreSQL under Trio: asyncpg through trio-asyncio, one bridge crossing per operation.

Crossing the trio/asyncio bridge costs ~40-50 µs, so every storage operation is written as one
asyncio coroutine taking a connection (``async def op(conn, ...)``) and crossed once with
:meth:`Database.run`; never one crossing per query.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import asyncpg
import trio
import trio_asyncio

from carehub.errors import Invalid, Unavailable

log = logging.getLogger("carehub.storage")

T = TypeVar("T")
P = ParamSpec("P")

Op = Callable[..., Awaitable[T]]


class DatabaseUnavailable(Unavailable):
    """PostgreSQL could not be reached (down, restarting, failing over): nothing was changed; try again."""

    code = "storage_unavailable"


#: what asyncpg raises when the server is gone, not when a statement is wrong
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
)


def _unavailable(err: BaseException) -> DatabaseUnavailable | None:
    """The domain error for a lost or refused connection (None: some other failure, raised as it is)."""
    if isinstance(err, _CONNECTION_ERRORS) or (
        isinstance(err, asyncpg.InterfaceError) and "closed" in str(err)
    ):
        return DatabaseUnavailable(f"数据库暂时不可用, 请稍后重试 (database unavailable: {type(err).__name__})")
    return None


class Database:
    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self.dsn = dsn

    async def run(self, op: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``op(conn, *args)`` on a pooled connection, crossing into asyncio once."""
        result: T = await trio_asyncio.aio_as_trio(self._run_aio)(op, *args)
        return result

    async def _run_aio(self, op: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            async with self._pool.acquire() as conn:
                return await op(conn, *args)
        except asyncpg.CharacterNotInRepertoireError as err:  # a NUL in text: PostgreSQL cannot store one
            raise Invalid("请求内容含不允许的字符 (text with a NUL character cannot be stored)") from err
        except Exception as err:
            down = _unavailable(err)
            if down is None:
                raise
            raise down from err

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def op(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, *args))

        return await self.run(op)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async def op(conn: asyncpg.Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(sql, *args)

        return await self.run(op)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async def op(conn: asyncpg.Connection) -> Any:
            return await conn.fetchval(sql, *args)

        return await self.run(op)

    async def execute(self, sql: str, *args: Any) -> str:
        async def op(conn: asyncpg.Connection) -> str:
            return str(await conn.execute(sql, *args))

        return await self.run(op)


class ThreadedDatabase(Database):
    """A pool living on an asyncio loop of its own, in a thread of its own.

    Through trio-asyncio every round trip of an operation waits for the Trio loop to come round;
    when thousands of requests keep that loop busy (a booking release), an actor commit of ten
    round trips took 100-200 ms. Here the round trips run at the database's pace and only the
    answer crosses back (one ``run_sync_soon``). The hub's store uses it (app.py).
    """

    def __init__(self, pool: asyncpg.Pool, dsn: str, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(pool, dsn)
        self._loop = loop

    async def run(self, op: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await _in_loop(self._loop, self._run_aio(op, *args))


async def _in_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on ``loop`` (another thread) and wait for it without blocking Trio.

    Cancelled from Trio, the coroutine is cancelled on its loop too (a pooled connection goes
    back with its transaction rolled back, see ``_reset``).
    """
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass

    future.add_done_callback(wake)
    try:
        await done.wait()
    except BaseException:
        future.cancel()
        raise
    return future.result()


async def _apply_settings(settings: dict[str, str], conn: asyncpg.Connection) -> None:
    for name, value in settings.items():
        try:
            await conn.execute("SELECT set_config($1, $2, false)", name, value)
        except asyncpg.PostgresError as err:  # e.g. a PostgreSQL-compatible server without this setting
            log.warning("database setting %s=%s not applied: %s", name, value, err)


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection going back to the pool needs: no open transaction.

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``
    on every release, a round trip per operation; CareHub keeps no session state on pooled
    connections (no advisory locks, cursors, LISTEN or SET), so a transaction left open by a
    cancelled operation is all there is to undo.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


@asynccontextmanager
async def open_database(dsn: str, *, min_size: int = 2, max_size: int = 10) -> AsyncIterator[Database]:
    """Open a pool; needs a running trio-asyncio loop (``trio_asyncio.open_loop()``).

    The pool is created lazily-tolerant: if the server is down at start-up the first
    operations fail with connection errors and later ones succeed once it is back.
    """
    pool = await trio_asyncio.aio_as_trio(asyncpg.create_pool)(
        dsn, min_size=min_size, max_size=max_size, command_timeout=30, max_inactive_connection_lifetime=60,
        reset=_reset,
    )
    try:
        yield Database(pool, dsn)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await trio_asyncio.aio_as_trio(pool.close)()


@asynccontextmanager
async def open_threaded_database(
    dsn: str, *, min_size: int = 2, max_size: int = 10, settings: dict[str, str] | None = None
) -> AsyncIterator[Database]:
    """Like :func:`open_database`, on an asyncio loop in a thread of its own (:class:`ThreadedDatabase`).

    ``settings`` are set on each of its connections (e.g. planner settings for a pool that only
    runs key lookups); one the server does not know is skipped with a warning, not an error.
    """
    loop = asyncio.SelectorEventLoop()  # not new_event_loop(): trio-asyncio refuses that inside Trio
    # each round trip wakes the database thread, which then waits for the GIL: at most this long
    # while the Trio thread is busy (Python's default is 5 ms; ten round trips a commit)
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    thread = threading.Thread(target=serve, name="carehub-db", daemon=True)
    thread.start()
    try:
        async def create() -> asyncpg.Pool:
            return await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, command_timeout=30, max_inactive_connection_lifetime=60,
                reset=_reset, init=functools.partial(_apply_settings, settings or {}),
            )

        pool = await _in_loop(loop, create())
        try:
            yield ThreadedDatabase(pool, dsn, loop)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await _in_loop(loop, pool.close())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(thread.join, 5.0)
        if not thread.is_alive():
            loop.close()

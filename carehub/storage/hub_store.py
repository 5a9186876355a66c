"""PostgreSQL implementation of the hub's storage port (:class:`carehub.hub.HubStore`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
import trio

from carehub.hub import (
    AlreadyHandled,
    BadMessage,
    Commit,
    CommitResult,
    HubError,
    Record,
    ScheduledRow,
    StorageUnavailable,
    StoredState,
    StreamItem,
    UnknownRecipient,
    VersionConflict,
    utcnow,
)

from .db import Database
from .keyring import KeyRing

log = logging.getLogger("carehub.storage.hub_store")

#: seal field of sensitive delivery bodies (chat text): kept readable for the retention period
DELIVERY_FIELD = "deliveries.body"


def _scheduled(r: asyncpg.Record) -> ScheduledRow:
    return ScheduledRow(
        r["id"], r["target"], r["type"], r["body"].encode(), r["due_at"], r["reminder_key"], r["attempts"]
    )


def _item(r: asyncpg.Record) -> StreamItem:
    return StreamItem(r["account_id"], r["seq"], r["msg_id"], r["type"], r["body"].encode(), r["created_at"])


class _Reject(Exception):
    """One commit of a batch cannot be made; the others can be retried without it."""

    def __init__(self, index: int, error: HubError) -> None:
        super().__init__(error.message)
        self.index = index
        self.error = error


async def _write(conn: asyncpg.Connection, commits: Sequence[Commit]) -> list[CommitResult]:
    """Write a batch of commits inside the caller's transaction, a few round trips in all."""
    now = utcnow()
    consumed = [(i, c.consumed) for i, c in enumerate(commits) if c.consumed is not None]
    if consumed:
        # first, so a second dispatch of the same stored message changes nothing
        gone = {
            r["id"]
            for r in await conn.fetch(
                "DELETE FROM scheduled_messages WHERE id = ANY($1::varchar[]) RETURNING id",
                [cid for _, cid in consumed],
            )
        }
        for i, cid in consumed:
            if cid not in gone:
                raise _Reject(i, AlreadyHandled(f"stored message {cid} was already handled"))
    versions = [c.expected_version for c in commits]
    inserts = [(i, c) for i, c in enumerate(commits) if c.state is not None and c.expected_version == 0]
    updates = [(i, c) for i, c in enumerate(commits) if c.state is not None and c.expected_version > 0]
    if inserts:
        # a unique violation here means another writer created the actor: the caller isolates it
        await conn.executemany(
            "INSERT INTO actor_state (address, kind, state, version, updated_at) VALUES ($1, $2, $3, 1, $4)",
            [(c.address, c.kind, c.state.decode(), c.now or now) for _, c in inserts if c.state is not None],
        )
        for i, _ in inserts:
            versions[i] = 1
    if updates:
        done = {
            r["address"]
            for r in await conn.fetchmany(
                "UPDATE actor_state SET state = $3, version = version + 1, updated_at = $4"
                " WHERE address = $1 AND version = $2 RETURNING address",
                [(c.address, c.expected_version, c.state.decode(), c.now or now) for _, c in updates
                 if c.state is not None],
            )
        }
        for i, c in updates:
            if c.address not in done:
                raise _Reject(i, VersionConflict(f"{c.address} moved past version {c.expected_version}"))
            versions[i] += 1
    events = [
        (c.address, versions[i], t, body.decode(), c.now or now)
        for i, c in enumerate(commits)
        for t, body in c.events
    ]
    if events:
        await conn.executemany(
            "INSERT INTO actor_events (address, version, type, body, created_at) VALUES ($1, $2, $3, $4, $5)", events
        )
    delivered: list[list[StreamItem]] = [[] for _ in commits]
    wanted: dict[str, int] = {}
    for c in commits:
        for d in c.deliveries:
            wanted[d.account_id] = wanted.get(d.account_id, 0) + 1
    if wanted:
        # lock streams in a fixed order so two batches never deadlock
        accounts = sorted(wanted)
        rows = await conn.fetchmany(
            "UPDATE delivery_streams SET last_seq = last_seq + $2 WHERE account_id = $1 RETURNING account_id, last_seq",
            [(a, wanted[a]) for a in accounts],
        )
        next_seq = {r["account_id"]: r["last_seq"] - wanted[r["account_id"]] + 1 for r in rows}
        inserts_d: list[tuple[Any, ...]] = []
        for i, c in enumerate(commits):
            at = c.now or now
            for d in c.deliveries:
                seq = next_seq.get(d.account_id)
                if seq is None:
                    raise _Reject(i, UnknownRecipient(f"no account {d.account_id!r} to deliver to"))
                next_seq[d.account_id] = seq + 1
                inserts_d.append((d.account_id, seq, d.msg_id, d.type, d.stored or d.body.decode(), at))
                delivered[i].append(StreamItem(d.account_id, seq, d.msg_id, d.type, d.body, at))
        await conn.executemany(
            "INSERT INTO deliveries (account_id, seq, msg_id, type, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            inserts_d,
        )
    cancels = [
        (c.address, list(c.cancel_keys) + [s.key for s in c.scheduled if s.key is not None])
        for c in commits
        if c.cancel_keys or any(s.key is not None for s in c.scheduled)
    ]
    if cancels:
        await conn.executemany(
            "DELETE FROM scheduled_messages WHERE target = $1 AND reminder_key = ANY($2::varchar[])", cancels
        )
    scheduled = [
        (s.id, s.target, s.type, s.body.decode(), s.due_at, s.key, c.now or now) for c in commits for s in c.scheduled
    ]
    if scheduled:
        await conn.executemany(
            "INSERT INTO scheduled_messages (id, target, type, body, due_at, reminder_key, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            scheduled,
        )
    await _write_records(conn, [r for c in commits for r in c.records])
    return [CommitResult(versions[i], delivered[i]) for i in range(len(commits))]


_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")


async def _write_records(conn: asyncpg.Connection, records: Sequence[Record]) -> None:
    """Update each row by key, insert the ones that were not there (portable: no ON CONFLICT).

    Tables and columns were checked by :meth:`PostgresHubStore.commit` (declared projections, plain names).
    """
    groups: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[Record]] = {}
    for rec in records:
        groups.setdefault((rec.table, tuple(rec.key), tuple(rec.values)), []).append(rec)
    for (table, keys, cols), recs in groups.items():
        rows = [(*r.key.values(), *r.values.values()) for r in recs]
        n = len(keys)
        where = " AND ".join(f"{k} = ${i + 1}" for i, k in enumerate(keys))
        if cols:
            sets = ", ".join(f"{c} = ${n + i + 1}" for i, c in enumerate(cols))
            found = {
                tuple(r[k] for k in keys)
                for r in await conn.fetchmany(
                    f"UPDATE {table} SET {sets} WHERE {where} RETURNING {', '.join(keys)}", rows
                )
            }
        else:
            found = set()
        missing = [row for row in rows if tuple(row[:n]) not in found]
        if missing:
            columns = ", ".join((*keys, *cols))
            marks = ", ".join(f"${i + 1}" for i in range(n + len(cols)))
            await conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", missing)


#: connection settings for the hub store's pool: all its queries are key lookups, and the generic plan
#: PostgreSQL caches for the one-statement commit would otherwise scan small tables (a bench's 1,000
#: delivery streams) instead of using their keys
HUB_STORE_SETTINGS = {"enable_seqscan": "off", "plan_cache_mode": "force_generic_plan"}

#: a batch of plain commits (state, events, deliveries, new stored messages) written as one statement:
#: one round trip, committed on its own (no BEGIN/COMMIT). The last CTE's check turns a version
#: conflict or a missing delivery stream into an error, so such a batch writes nothing and goes to
#: the general path, which finds the commit that cannot be made. Stream rows are locked in account
#: order (``lk``) so two batches never deadlock. Writable CTEs and multi-array ``unnest`` are
#: PostgreSQL's; a compatible database that does not understand them gets the general path
#: (``_OneStatement``), which is plain SQL.
_ONE_STATEMENT = """
WITH upd AS (
    UPDATE actor_state a SET state = u.state, version = a.version + 1, updated_at = u.at
    FROM unnest($1::varchar[], $2::bigint[], $3::text[], $4::timestamptz[]) AS u(address, expected, state, at)
    WHERE a.address = u.address AND a.version = u.expected
    RETURNING 1
), ins AS (
    INSERT INTO actor_state (address, kind, state, version, updated_at)
    SELECT i.address, i.kind, i.state, 1, i.at
    FROM unnest($5::varchar[], $6::varchar[], $7::text[], $8::timestamptz[]) AS i(address, kind, state, at)
    RETURNING 1
), ev AS (
    INSERT INTO actor_events (address, version, type, body, created_at)
    SELECT * FROM unnest($9::varchar[], $10::bigint[], $11::varchar[], $12::text[], $13::timestamptz[])
    RETURNING 1
), lk AS (
    SELECT account_id FROM delivery_streams WHERE account_id = ANY($14::varchar[]) ORDER BY account_id FOR UPDATE
), st AS (
    UPDATE delivery_streams d SET last_seq = d.last_seq + w.n
    FROM lk JOIN unnest($14::varchar[], $15::bigint[]) AS w(account_id, n) ON w.account_id = lk.account_id
    WHERE d.account_id = lk.account_id
    RETURNING d.account_id, d.last_seq, w.n
), dl AS (
    INSERT INTO deliveries (account_id, seq, msg_id, type, body, created_at)
    SELECT x.account_id, st.last_seq - st.n + x.place, x.msg_id, x.type, x.body, x.at
    FROM unnest($16::varchar[], $17::bigint[], $18::varchar[], $19::varchar[], $20::text[], $21::timestamptz[])
        AS x(account_id, place, msg_id, type, body, at)
    JOIN st ON st.account_id = x.account_id
    RETURNING 1
), sc AS (
    INSERT INTO scheduled_messages (id, target, type, body, due_at, reminder_key, created_at)
    SELECT * FROM unnest($22::varchar[], $23::varchar[], $24::varchar[], $25::text[], $26::timestamptz[],
                         $27::varchar[], $28::timestamptz[])
    RETURNING 1
)
SELECT NULL::varchar AS account_id,
       CASE WHEN (SELECT count(*) FROM upd) = cardinality($1::varchar[])
                 AND (SELECT count(*) FROM st) = cardinality($14::varchar[])
            THEN 0::bigint
            ELSE ('batch not applied: ' || (SELECT count(*) FROM upd) || ' of ' || cardinality($1::varchar[])
                  || ' updates, ' || (SELECT count(*) FROM st) || ' of ' || cardinality($14::varchar[])
                  || ' streams')::bigint
       END AS last_seq
UNION ALL
SELECT account_id, last_seq FROM st
"""


def _append(columns: tuple[list[Any], ...], *values: Any) -> None:
    for column, value in zip(columns, values, strict=True):
        column.append(value)


def _fits_one_statement(commits: Sequence[Commit]) -> bool:
    return not any(
        c.consumed is not None or c.cancel_keys or c.records or any(s.key is not None for s in c.scheduled)
        for c in commits
    )


async def _write_one_statement(conn: asyncpg.Connection, commits: Sequence[Commit]) -> list[CommitResult]:
    """:func:`_write` for a batch that :func:`_fits_one_statement`, in one round trip; raises (writing
    nothing) when any commit of it cannot be made."""
    now = utcnow()
    upd: tuple[list[Any], ...] = ([], [], [], [])
    ins: tuple[list[Any], ...] = ([], [], [], [])
    ev: tuple[list[Any], ...] = ([], [], [], [], [])
    dl: tuple[list[Any], ...] = ([], [], [], [], [], [])
    sc: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
    versions = []
    wanted: dict[str, int] = {}
    for c in commits:
        at = c.now or now
        version = c.expected_version
        if c.state is not None:
            version += 1
            if c.expected_version:
                _append(upd, c.address, c.expected_version, c.state.decode(), at)
            else:
                _append(ins, c.address, c.kind, c.state.decode(), at)
        versions.append(version)
        for t, body in c.events:
            _append(ev, c.address, version, t, body.decode(), at)
        for d in c.deliveries:
            # its place among this batch's rows for the same person (seq = new last_seq - count + place)
            place = wanted[d.account_id] = wanted.get(d.account_id, 0) + 1
            _append(dl, d.account_id, place, d.msg_id, d.type, d.stored or d.body.decode(), at)
        for s in c.scheduled:
            _append(sc, s.id, s.target, s.type, s.body.decode(), s.due_at, s.key, at)
    accounts = sorted(wanted)
    rows = await conn.fetch(_ONE_STATEMENT, *upd, *ins, *ev, accounts, [wanted[a] for a in accounts], *dl, *sc)
    next_seq = {r["account_id"]: r["last_seq"] - wanted[r["account_id"]] + 1 for r in rows if r["account_id"]}
    results = []
    for c, version in zip(commits, versions, strict=True):
        at = c.now or now
        delivered = []
        for d in c.deliveries:
            seq = next_seq[d.account_id]
            next_seq[d.account_id] = seq + 1
            delivered.append(StreamItem(d.account_id, seq, d.msg_id, d.type, d.body, at))
        results.append(CommitResult(version, delivered))
    return results


class _OneStatement:
    #: False once the server did not understand the statement (a PostgreSQL-compatible database)
    usable = True


async def _commit_many(conn: asyncpg.Connection, commits: Sequence[Commit]) -> list[CommitResult | HubError]:
    """Commit a batch in one transaction; a commit that cannot be made fails alone."""
    if _OneStatement.usable and _fits_one_statement(commits):
        try:
            return list(await _write_one_statement(conn, commits))
        except (asyncpg.PostgresSyntaxError, asyncpg.FeatureNotSupportedError, asyncpg.UndefinedFunctionError) as err:
            _OneStatement.usable = False
            log.warning("this database does not take the one-statement commit (%s); using the general path", err)
        except asyncpg.PostgresError:
            pass  # one statement, so nothing was written: the general path finds the commit that failed
    try:
        async with conn.transaction():
            return list(await _write(conn, commits))
    except _Reject as reject:
        if len(commits) == 1:
            return [reject.error]
        rest = [c for i, c in enumerate(commits) if i != reject.index]
        results = await _commit_many(conn, rest)
        results.insert(reject.index, reject.error)
        return results
    except asyncpg.UniqueViolationError:
        if len(commits) == 1:
            return [VersionConflict(f"{commits[0].address} was created by another writer")]
        return [(await _commit_many(conn, [c]))[0] for c in commits]
    except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.SyntaxOrAccessError) as err:
        # one commit's query-table rows do not fit their table: fail that commit alone
        if len(commits) == 1:
            return [StorageUnavailable(f"could not save {commits[0].address}: {err}; nothing was changed")]
        return [(await _commit_many(conn, [c]))[0] for c in commits]


class _Done:
    __slots__ = ("done", "error", "row_id")

    def __init__(self, row_id: str) -> None:
        self.row_id = row_id
        self.done = trio.Event()
        self.error: BaseException | None = None


class _Pending:
    __slots__ = ("commit", "done", "error", "result")

    def __init__(self, commit: Commit) -> None:
        self.commit = commit
        self.done = trio.Event()
        self.result: CommitResult | None = None
        self.error: BaseException | None = None


async def _load(conn: asyncpg.Connection, address: str) -> StoredState:
    row = await conn.fetchrow("SELECT state, version FROM actor_state WHERE address = $1", address)
    if row is None:
        return StoredState(None, 0)
    return StoredState(row["state"].encode(), row["version"])


class PostgresHubStore:
    """The hub's store. Commits are grouped: while one batch is being written, the next ones
    queue, and go together in one transaction (group commit). At low load a commit goes alone
    at once; under load a handful of round trips carry many actors' messages.

    Run :meth:`run` in a nursery (``open_hub_store`` does); without it commits go one by one.
    """

    def __init__(
        self, db: Database, *, keyring: KeyRing | None = None, max_batch: int = 128, writers: int = 3
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.max_batch = max_batch
        self.writers = writers
        self._send, self._recv = trio.open_memory_channel[_Pending](100_000)
        self._running = False
        self.batches = 0
        self.batched_commits = 0
        #: performed stored messages waiting for their row to be deleted (see complete_scheduled)
        self._done: list[_Done] = []
        self._done_wake = trio.Event()
        #: the projection tables the behaviours declared and :meth:`confirm_projections` found
        self.projections: frozenset[str] = frozenset()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(self.writers):
                nursery.start_soon(self._writer)
            nursery.start_soon(self._completer)
            self._running = True
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._running = False

    async def _writer(self) -> None:
        while True:
            batch = [await self._recv.receive()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._recv.receive_nowait())
                except trio.WouldBlock:
                    break
            self.batches += 1
            self.batched_commits += len(batch)
            try:
                results = await self.db.run(_commit_many, [p.commit for p in batch])
            except Exception as err:
                for p in batch:
                    p.error = StorageUnavailable(f"could not save {p.commit.address}: {err}; nothing was changed")
                    p.done.set()
                continue
            for p, r in zip(batch, results, strict=True):
                if isinstance(r, HubError):
                    p.error = r
                else:
                    p.result = r
                p.done.set()

    async def load_state(self, address: str) -> StoredState:
        return await self.db.run(_load, address)

    async def confirm_projections(self, tables: frozenset[str]) -> None:
        """The declared projection tables exist (in the search path); raises HubError naming those missing."""
        bad = sorted(t for t in tables if not _IDENT.fullmatch(t))
        found = {r["name"] for r in await self.db.fetch(
            "SELECT c.relname::text AS name FROM pg_class c WHERE c.relname::text = ANY($1::text[])"
            " AND c.relkind = 'r' AND pg_table_is_visible(c.oid)", sorted(tables))}
        missing = sorted(set(tables) - found) + bad
        if missing:
            raise HubError(f"the hub cannot start: projection tables {missing} do not exist (migrations not applied?)")
        self.projections = self.projections | tables

    def _check_records(self, commit: Commit) -> None:
        for rec in commit.records:
            if rec.table not in self.projections or not all(_IDENT.fullmatch(c) for c in (*rec.key, *rec.values)):
                raise BadMessage(f"{commit.address} may not write table {rec.table!r} ({[*rec.key, *rec.values]})")

    def _seal(self, commit: Commit) -> Commit:
        if self.keyring is None or not any(d.sensitive for d in commit.deliveries):
            return commit
        ring = self.keyring
        # one message to several people is sealed once: the rows hold the same body for each of them
        sealed: dict[bytes, str] = {}
        rows = []
        for d in commit.deliveries:
            if d.sensitive:
                stored = sealed.get(d.body)
                if stored is None:
                    stored = sealed[d.body] = ring.seal(d.body.decode(), field=DELIVERY_FIELD)
                d = dataclasses.replace(d, stored=stored)
            rows.append(d)
        return dataclasses.replace(commit, deliveries=rows)

    def _open(self, item: StreamItem) -> StreamItem:
        if self.keyring is not None and item.body.startswith(b"sm4gcm:"):
            return dataclasses.replace(item, body=self.keyring.open(item.body.decode(), field=DELIVERY_FIELD).encode())
        return item

    async def commit(self, commit: Commit) -> CommitResult:
        self._check_records(commit)
        commit = self._seal(commit)
        if not self._running:
            result = (await self.db.run(_commit_many, [commit]))[0]
        else:
            pending = _Pending(commit)
            await self._send.send(pending)
            await pending.done.wait()
            if pending.error is not None:
                raise pending.error
            assert pending.result is not None
            return pending.result
        if isinstance(result, HubError):
            raise result
        return result

    async def schedule_in(
        self, conn: asyncpg.Connection, tells: Sequence[tuple[str, msgspec.Struct]], now: dt.datetime,
    ) -> None:
        """Durable tells (``(address, message)``, due now) written inside the caller's transaction on ``conn``.

        For a domain repository whose step must cause an effect exactly when it commits (a bill
        order paid -> push it to the HIS): the rows are the hub's outbox, so the scheduler performs
        them within its poll interval, and again after a restart until they succeed. The message
        must be one the target's effect or actor kind accepts by its type name.
        """
        if tells:
            await conn.executemany(
                "INSERT INTO scheduled_messages (id, target, type, body, due_at, reminder_key, created_at)"
                " VALUES ($1, $2, $3, $4, $5, NULL, $5)",
                [(uuid.uuid4().hex, target, type(message).__name__, msgspec.json.encode(message).decode(), now)
                 for target, message in tells],
            )

    async def due_scheduled(self, before: dt.datetime, limit: int) -> list[ScheduledRow]:
        rows = await self.db.fetch(
            "SELECT id, target, type, body, due_at, reminder_key, attempts FROM scheduled_messages"
            " WHERE due_at <= $1 ORDER BY due_at LIMIT $2",
            before, limit,
        )
        return [_scheduled(r) for r in rows]

    async def next_due(self) -> dt.datetime | None:
        value: dt.datetime | None = await self.db.fetchval("SELECT min(due_at) FROM scheduled_messages")
        return value

    async def complete_scheduled(self, row_id: str) -> None:
        """Delete a performed stored message's row.

        While one delete runs, the next ones gather and go as one statement: in a booking release
        every booking's HIS push ends here, and one commit (one WAL flush) each made the slot pools'
        commits wait behind them.
        """
        if not self._running:
            await self.db.execute("DELETE FROM scheduled_messages WHERE id = $1", row_id)
            return
        pending = _Done(row_id)
        self._done.append(pending)
        self._done_wake.set()
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error

    async def _completer(self) -> None:
        while True:
            await self._done_wake.wait()
            self._done_wake = trio.Event()
            batch, self._done = self._done, []
            if not batch:
                continue
            try:
                await self.db.execute(
                    "DELETE FROM scheduled_messages WHERE id = ANY($1::varchar[])", [p.row_id for p in batch]
                )
            except Exception as err:
                for p in batch:
                    p.error = err
            for p in batch:
                p.done.set()

    async def postpone_scheduled(self, row_id: str, due_at: dt.datetime) -> None:
        await self.db.execute(
            "UPDATE scheduled_messages SET due_at = $2, attempts = attempts + 1 WHERE id = $1", row_id, due_at
        )

    async def read_stream(self, account_id: str, after_seq: int, limit: int) -> list[StreamItem]:
        rows = await self.db.fetch(
            "SELECT account_id, seq, msg_id, type, body, created_at FROM deliveries"
            " WHERE account_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            account_id, after_seq, limit,
        )
        return [self._open(_item(r)) for r in rows]

    async def stream_bounds(self, account_id: str) -> tuple[int, int]:
        """(first seq still kept, last seq) of an account's stream; (0, 0) when empty."""

        async def op(conn: asyncpg.Connection) -> tuple[int, int]:
            last = await conn.fetchval("SELECT last_seq FROM delivery_streams WHERE account_id = $1", account_id)
            first = await conn.fetchval("SELECT min(seq) FROM deliveries WHERE account_id = $1", account_id)
            return int(first or (last or 0) + 1), int(last or 0)

        return await self.db.run(op)

    async def open_streams(self, devices: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int, int]]:
        """For each (account, device) signing in: (first seq still kept, last seq, the device's stored cursor),
        in one crossing for all of them (the ``/ws`` gateway batches the connections signing in together)."""
        accounts = sorted({account for account, _ in devices})

        async def op(conn: asyncpg.Connection) -> dict[tuple[str, str], tuple[int, int, int]]:
            lasts = {r["account_id"]: int(r["last_seq"]) for r in await conn.fetch(
                "SELECT account_id, last_seq FROM delivery_streams WHERE account_id = ANY($1::varchar[])", accounts)}
            firsts = {r["account_id"]: int(r["first"]) for r in await conn.fetch(
                "SELECT account_id, min(seq) AS first FROM deliveries WHERE account_id = ANY($1::varchar[])"
                " GROUP BY account_id", accounts)}
            cursors = {(r["account_id"], r["device_id"]): int(r["acked_seq"]) for r in await conn.fetch(
                "SELECT account_id, device_id, acked_seq FROM stream_cursors WHERE account_id = ANY($1::varchar[])"
                " AND device_id = ANY($2::varchar[])", accounts, sorted({device for _, device in devices}))}
            out = {}
            for account, device in devices:
                last = lasts.get(account, 0)
                out[(account, device)] = (firsts.get(account, last + 1), last, cursors.get((account, device), 0))
            return out

        return await self.db.run(op)

    async def save_cursor(self, account_id: str, device_id: str, seq: int) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            now = utcnow()
            status = await conn.execute(
                "UPDATE stream_cursors SET acked_seq = $3, updated_at = $4"
                " WHERE account_id = $1 AND device_id = $2 AND acked_seq < $3",
                account_id, device_id, seq, now,
            )
            if status == "UPDATE 0":
                exists = await conn.fetchval(
                    "SELECT 1 FROM stream_cursors WHERE account_id = $1 AND device_id = $2", account_id, device_id
                )
                if not exists:
                    await conn.execute(
                        "INSERT INTO stream_cursors (account_id, device_id, acked_seq, updated_at)"
                        " VALUES ($1, $2, $3, $4)",
                        account_id, device_id, seq, now,
                    )

        await self.db.run(op)

    async def load_cursor(self, account_id: str, device_id: str) -> int:
        value = await self.db.fetchval(
            "SELECT acked_seq FROM stream_cursors WHERE account_id = $1 AND device_id = $2", account_id, device_id
        )
        return int(value or 0)

    async def purge_deliveries(self, older_than: dt.datetime) -> int:
        status = await self.db.execute("DELETE FROM deliveries WHERE created_at < $1", older_than)
        return int(status.split()[-1])

    async def reminders_due(self, now: dt.datetime) -> int:
        return int(await self.db.fetchval("SELECT count(*) FROM scheduled_messages WHERE due_at <= $1", now) or 0)


@asynccontextmanager
async def open_hub_store(db: Database, keyring: KeyRing | None = None) -> AsyncIterator[PostgresHubStore]:
    store = PostgresHubStore(db, keyring=keyring)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        try:
            yield store
        finally:
            nursery.cancel_scope.cancel()

"""The hub knows no domain table: behaviours declare their projections, the store confirms them at
open_hub, and domain repositories schedule durable tells through the hub store (issue #16)."""

from __future__ import annotations

import datetime as dt

import asyncpg
import msgspec
import pytest
import trio

from carehub.hub import BadMessage, Behaviour, Context, Decision, HubError, Record, open_hub
from carehub.storage.db import Database
from carehub.storage.hub_store import open_hub_store


class Ledger(msgspec.Struct):
    rows: int = 0


class Write(msgspec.Struct):
    table: str


class NoShows(Behaviour[Ledger]):
    """Writes a ``no_shows`` row per message (or a row of whatever table it is told, to be refused)."""

    kind = "noshows"
    state_type = Ledger
    messages = {"Write": Write}
    projections = frozenset({"no_shows"})

    def initial(self, key: str) -> Ledger:
        return Ledger()

    def handle(self, state: Ledger, message: msgspec.Struct, ctx: Context) -> Decision[Ledger]:
        assert isinstance(message, Write)
        n = state.rows + 1
        return Decision(Ledger(n), reply=n, records=(Record(message.table, {"booking_id": f"{ctx.key}-{n}"}, {
            "patient_id": "P1", "session_id": "s", "day": dt.date(2026, 12, 4), "recorded_at": ctx.now}),))


class Ghost(NoShows):
    kind = "ghost"
    projections = frozenset({"no_such_projection"})


async def test_a_behaviour_writes_the_projection_it_declared(db: Database) -> None:
    with trio.fail_after(10):
        async with open_hub_store(db) as store, open_hub(store, [NoShows()]) as hub:
            assert await hub.ask("noshows/a", Write("no_shows")) == 1
    assert await db.fetchval("SELECT count(*) FROM no_shows WHERE booking_id = 'a-1'") == 1


async def test_a_record_for_a_table_the_behaviour_did_not_declare_is_refused_and_nothing_is_written(
    db: Database,
) -> None:
    with trio.fail_after(10):
        async with open_hub_store(db) as store, open_hub(store, [NoShows()]) as hub:
            with pytest.raises(BadMessage) as refused:
                await hub.ask("noshows/b", Write("bookings"))
            assert "bookings" in refused.value.message
    assert await db.fetchval("SELECT count(*) FROM actor_state WHERE address = 'noshows/b'") == 0


async def test_the_hub_refuses_to_start_when_a_declared_projection_table_is_missing(db: Database) -> None:
    with trio.fail_after(10):
        async with open_hub_store(db) as store:
            with pytest.raises(HubError) as refused:
                async with open_hub(store, [NoShows(), Ghost()]):
                    pass  # pragma: no cover - the hub must not start
    assert "no_such_projection" in refused.value.message


class Ping(msgspec.Struct):
    text: str


async def test_a_repository_schedules_a_durable_tell_inside_its_own_transaction(db: Database) -> None:
    now = dt.datetime.now(dt.UTC)
    with trio.fail_after(10):
        async with open_hub_store(db) as store:

            async def kept(conn: asyncpg.Connection) -> None:
                async with conn.transaction():
                    await store.schedule_in(conn, [("pingfx/kept", Ping("a"))], now)

            async def rolled_back(conn: asyncpg.Connection) -> None:
                async with conn.transaction():
                    await store.schedule_in(conn, [("pingfx/lost", Ping("b"))], now)
                    raise LookupError("the domain step failed after scheduling")

            await db.run(kept)
            with pytest.raises(LookupError):
                await db.run(rolled_back)
            due = await store.due_scheduled(now + dt.timedelta(seconds=1), 10)
    assert [(r.target, r.type, msgspec.json.decode(r.body)) for r in due] == [("pingfx/kept", "Ping", {"text": "a"})]

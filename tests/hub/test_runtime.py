"""The actor runtime against real PostgreSQL: activation, back-pressure, supervision, reminders."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
import trio
from trio_asyncio import aio_as_trio

from carehub.hub import (
    ActorCrashed,
    ActorQuarantined,
    Commit,
    CommitResult,
    DeliveryRow,
    Hub,
    HubSettings,
    MailboxFull,
    Refusal,
    open_hub,
)
from carehub.storage.db import Database
from carehub.storage.hub_store import open_hub_store

from .kinds import Add, Announce, Announcer, Counter, Explode, Get, Note, Probe, Refuse, RemindMe


@asynccontextmanager
async def start_hub(db: Database, **settings: float) -> AsyncIterator[Hub]:
    async with open_hub_store(db) as store, open_hub(store, [Counter()], HubSettings(**settings)) as hub:  # type: ignore[arg-type]
        yield hub


@pytest.fixture
async def hub(db: Database) -> AsyncIterator[Hub]:
    async with start_hub(db) as h:
        yield h


async def test_concurrent_first_asks_share_one_activation(hub: Hub, db: Database) -> None:
    results: list[int] = []

    async def add() -> None:
        results.append(await hub.ask("counter/a", Add(1)))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for _ in range(200):
                nursery.start_soon(add)
    assert sorted(results) == list(range(1, 201))
    assert hub.snapshot()["actors_by_kind"] == {"counter": 1}
    assert await db.fetchval("SELECT version FROM actor_state WHERE address = 'counter/a'") == 200


async def test_full_mailbox_pushes_back_on_the_sender(db: Database, database_url: str) -> None:
    async with start_hub(db, mailbox_size=2, mailbox_wait_seconds=0.3) as hub:
        await hub.ask("counter/slow", Add(1))
        blocker = await aio_as_trio(asyncpg.connect)(database_url)
        tx = blocker.transaction()
        await aio_as_trio(tx.start)()
        # hold the actor's row so its next commit waits, as under a slow disk
        await aio_as_trio(blocker.execute)("SELECT 1 FROM actor_state WHERE address = 'counter/slow' FOR UPDATE")
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(3):  # one being handled, two waiting: the mailbox is full
                    nursery.start_soon(hub.tell, "counter/slow", Add(1))
                await trio.sleep(0.2)
                with trio.fail_after(5), pytest.raises(MailboxFull, match="messages waiting"):
                    await hub.ask("counter/slow", Add(1))
                assert hub.pushback_total >= 1
                await aio_as_trio(tx.rollback)()
        finally:
            await aio_as_trio(blocker.close)()
        with trio.fail_after(5):
            assert await hub.ask("counter/slow", Get()) == 4


async def test_crashing_handler_answers_the_asker_and_restarts_from_stored_state(hub: Hub) -> None:
    await hub.ask("counter/c", Add(5))
    await hub.ask("counter/c", Note("kept"))
    with pytest.raises(ActorCrashed, match="RuntimeError: boom"):
        await hub.ask("counter/c", Explode())
    assert await hub.ask("counter/c", Get()) == 5
    live = hub.live_actors("counter/c")
    assert live and live[0]["summary"] == "total=5"
    snapshot = hub._activations["counter/c"].state  # type: ignore[index]
    assert snapshot.notes == ["kept"], "the half-done change of the crashed handler must be gone"


async def test_a_refusal_is_an_error_for_the_asker_but_not_a_crash(hub: Hub) -> None:
    with pytest.raises(Refusal, match="not today"):
        await hub.ask("counter/r", Refuse())
    assert hub.crashes_total == 0
    assert await hub.ask("counter/r", Add(1)) == 1


async def test_a_crash_loop_quarantines_the_actor_and_raises_an_alarm(db: Database) -> None:
    async with start_hub(db, crash_limit=3, crash_window_seconds=60) as hub:
        for _ in range(3):
            with pytest.raises(ActorCrashed):
                await hub.ask("counter/q", Explode())
        with pytest.raises(ActorQuarantined, match="quarantined"):
            await hub.ask("counter/q", Get())
        snapshot = hub.snapshot()
        assert [q["address"] for q in snapshot["quarantined"]] == ["counter/q"]
        assert any("counter/q" in a["text"] for a in snapshot["alarms"])
        # the rest of the hub carries on
        assert await hub.ask("counter/other", Add(2)) == 2
        assert hub.release("counter/q")
        assert await hub.ask("counter/q", Get()) == 0


async def test_idle_actors_are_passivated_and_come_back_with_their_state(db: Database) -> None:
    async with start_hub(db, idle_seconds=0.2) as hub:
        await hub.ask("counter/p", Add(7))
        assert hub.is_active("counter/p")
        await trio.sleep(0.6)
        assert not hub.is_active("counter/p")
        assert await hub.ask("counter/p", Get()) == 7


async def test_a_reminder_fires_its_message_at_the_due_time(hub: Hub) -> None:
    await hub.ask("counter/t", RemindMe(0.3, "wake up"))
    with trio.fail_after(5):
        while hub._activations["counter/t"].state.notes != ["wake up"]:  # type: ignore[index]
            await trio.sleep(0.05)
    assert hub.reminders_fired == 1
    assert hub.reminders_late == 0


async def test_a_delivery_is_committed_to_the_recipients_stream_before_the_reply(hub: Hub, db: Database) -> None:
    await db.execute(
        "INSERT INTO accounts (id, login, display_name, roles, created_at) VALUES ('u1', 'u1', 'U', 'patient', now())"
    )
    await db.execute("INSERT INTO delivery_streams (account_id) VALUES ('u1')")
    await hub.ask("counter/d", Add(1, notify="u1"))
    await hub.ask("counter/d", Add(1, notify="u1"))
    rows = await db.fetch("SELECT seq, type FROM deliveries WHERE account_id = 'u1' ORDER BY seq")
    assert [(r["seq"], r["type"]) for r in rows] == [(1, "counter.added"), (2, "counter.added")]


async def test_a_delivery_to_an_unknown_account_changes_nothing(hub: Hub, db: Database) -> None:
    await hub.ask("counter/u", Add(1))
    with pytest.raises(Exception, match="no account 'ghost'"):
        await hub.ask("counter/u", Add(1, notify="ghost"))
    assert await hub.ask("counter/u", Get()) == 1
    assert await db.fetchval("SELECT count(*) FROM actor_events WHERE address = 'counter/u'") == 1


async def test_concurrent_commits_of_many_actors_share_transactions_and_one_bad_commit_fails_alone(
    hub: Hub, db: Database
) -> None:
    await db.execute(
        "INSERT INTO accounts (id, login, display_name, roles, created_at) VALUES ('u2', 'u2', 'U', 'patient', now())"
    )
    await db.execute("INSERT INTO delivery_streams (account_id) VALUES ('u2')")
    outcomes: dict[str, object] = {}

    async def add(name: str, notify: str) -> None:
        try:
            outcomes[name] = await hub.ask(f"counter/{name}", Add(1, notify=notify))
        except Exception as err:
            outcomes[name] = err

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(add, f"n{i}", "ghost" if i == 50 else "u2")
    assert isinstance(outcomes.pop("n50"), Exception)
    assert set(outcomes.values()) == {1}
    store = hub.store
    assert store.batches < store.batched_commits, "commits were grouped"  # type: ignore[attr-defined]
    seqs = [r["seq"] for r in await db.fetch("SELECT seq FROM deliveries WHERE account_id = 'u2' ORDER BY seq")]
    assert seqs == list(range(1, 100))


async def test_batches_delivering_to_the_same_people_in_any_order_all_commit_with_gapless_streams(
    db: Database,
) -> None:
    """Concurrent group commits to overlapping streams: every commit lands, each stream stays 1..n, and each
    commit is told the sequence numbers that were stored."""
    people = [f"g{i}" for i in range(6)]
    for person in people:
        await db.execute(
            "INSERT INTO accounts (id, login, display_name, roles, created_at) VALUES ($1, $1, 'G', 'patient', now())",
            person,
        )
        await db.execute("INSERT INTO delivery_streams (account_id) VALUES ($1)", person)
    sent: dict[str, int] = dict.fromkeys(people, 0)
    results: list[CommitResult] = []

    async def post(i: int) -> None:
        order = random.Random(i).sample(people, 4)  # each commit reaches four people, in its own order
        for person in order:
            sent[person] += 1
        deliveries = [DeliveryRow(p, f"m{i}", "note", b'{"i": %d}' % i) for p in order]
        results.append(await store.commit(Commit(f"counter/g{i}", "counter", 0, b'{"total": 0}', (), deliveries)))

    async with open_hub_store(db) as store:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(300):
                    nursery.start_soon(post, i)
    assert len(results) == 300
    for person in people:
        rows = await db.fetch("SELECT seq FROM deliveries WHERE account_id = $1 ORDER BY seq", person)
        seqs = [r["seq"] for r in rows]
        assert seqs == list(range(1, sent[person] + 1))
    # what each commit was told matches what was stored
    told = {(item.account_id, item.seq, item.msg_id) for r in results for item in r.delivered}
    rows = await db.fetch("SELECT account_id, seq, msg_id FROM deliveries")
    stored = {(r["account_id"], r["seq"], r["msg_id"]) for r in rows}
    assert told == stored


async def test_an_effect_waits_while_the_hub_has_a_queue_of_work_and_runs_right_after(db: Database) -> None:
    """A booking release: the HIS push of each new booking must not hold up the answers to the people in line."""
    probe = Probe()
    async with open_hub_store(db) as store, open_hub(store, [Announcer()], effects=[probe]) as hub:
        await hub.ask("announcer/a", Announce(0))  # the actor is active; its first effect runs at once
        with trio.fail_after(5):
            while not probe.calls:
                await trio.sleep(0.01)
        assert hub.effects_deferred == 0
        probe.calls.clear()
        busy_until = trio.current_time() + 3.0

        async def someones_answer() -> None:
            while trio.current_time() < busy_until:
                work = time.perf_counter() + 0.0003
                while time.perf_counter() < work:  # a frame's worth of work, ...
                    pass
                await trio.lowlevel.checkpoint()  # ... and the next one waits its turn

        async with trio.open_nursery() as nursery:
            for _ in range(100):  # 100 people's work in every turn of the loop: ~30 ms a turn
                nursery.start_soon(someones_answer)
            assert await hub.ask("announcer/a", Announce(1)) == 1
            assert trio.current_time() < busy_until - 1.0, "the booking itself was answered while busy"
        with trio.fail_after(5):
            while not probe.calls:
                await trio.sleep(0.01)
    (n, called_at), = probe.calls
    assert n == 1
    assert busy_until <= called_at < busy_until + 1.0
    assert hub.effects_deferred == 1

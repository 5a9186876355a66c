"""The audit trail: a hash chain that shows edits, deletions and reordering, stays linear under
concurrent appends, can be searched and exported, and survives retention purges."""

from __future__ import annotations

import csv
import datetime as dt
import io

import asyncpg
import pytest
import trio

from carehub.storage.audit import AuditChainBroken, AuditEntry, AuditLog, Outcome
from carehub.storage.db import Database
from carehub.storage.keyring import KeyRing

NOW = dt.datetime.now(dt.UTC)


GENESIS = "0" * 64


@pytest.fixture
async def audit(db: Database) -> AuditLog:
    # these tests count entries from the first one: start from an empty log, not the seeded one
    await db.execute("DELETE FROM audit_log")
    await db.execute(
        "UPDATE audit_head SET last_id = 0, last_hash = $1, anchor_id = 0, anchor_hash = $1, anchor_at = NULL",
        GENESIS,
    )
    return AuditLog(db, KeyRing.generate())


def _entry(i: int, **overrides: object) -> AuditEntry:
    fields: dict[str, object] = {
        "action": "record.read" if i % 2 else "record.write",
        "target": f"patient/P{i % 3}/records",
        "actor_id": f"doc{i % 2}",
        "actor_roles": ["doctor"],
        "source_ip": "10.0.0.7",
        "detail": {"n": i, "reason": "复诊"},
    }
    fields.update(overrides)
    return AuditEntry(**fields)  # type: ignore[arg-type]


async def _fill(audit: AuditLog, n: int) -> None:
    for i in range(1, n + 1):
        await audit.append(_entry(i))


async def test_a_chain_of_entries_verifies(audit: AuditLog, db: Database) -> None:
    first = await audit.append(AuditEntry("auth.login", actor_id="admin", actor_roles={"admin"}, source_ip="::1"))
    await audit.append(AuditEntry("auth.login_failed", outcome="denied", detail={"login": "nobody"}))
    await audit.append_many([_entry(i) for i in range(3, 8)])

    async def grant_role(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await audit.append_in(conn, AuditEntry("role.grant", target="account/doc9", actor_id="admin",
                                                   actor_roles=["admin"], detail={"role": "pharmacist"}))

    await db.run(grant_role)

    report = await audit.verify_chain()
    assert report.ok, report.message
    assert report.checked == 8
    assert first.prev_hash == "0" * 64
    assert [r.id for r in await audit.search(limit=3)] == [8, 7, 6]  # newest first


async def test_editing_an_entrys_detail_in_sql_breaks_the_chain_at_that_entry(audit: AuditLog, db: Database) -> None:
    await _fill(audit, 6)
    await db.execute("""UPDATE audit_log SET detail = '{"n":4,"reason":"无"}' WHERE id = 4""")

    report = await audit.verify_chain()

    assert not report.ok
    assert (report.first_bad_id, report.problem) == (4, "edited")
    assert report.checked == 3


async def test_an_edit_that_also_replaces_the_hash_is_still_detected(audit: AuditLog, db: Database) -> None:
    await _fill(audit, 4)
    # without the integrity key a forger can only copy some other valid-looking hash
    await db.execute("UPDATE audit_log SET outcome = 'denied', hash = (SELECT hash FROM audit_log WHERE id = 1)"
                     " WHERE id = 2")

    report = await audit.verify_chain()

    assert (report.ok, report.first_bad_id, report.problem) == (False, 2, "edited")


async def test_deleting_an_entry_is_detected(audit: AuditLog, db: Database) -> None:
    await _fill(audit, 6)
    await db.execute("DELETE FROM audit_log WHERE id = 3")

    report = await audit.verify_chain()

    assert (report.ok, report.first_bad_id, report.problem) == (False, 3, "deleted")
    assert "3" in report.message


async def test_deleting_the_newest_entry_is_detected(audit: AuditLog, db: Database) -> None:
    await _fill(audit, 3)
    await db.execute("DELETE FROM audit_log WHERE id = 3")

    report = await audit.verify_chain()

    assert (report.ok, report.first_bad_id, report.problem) == (False, 3, "deleted")


async def test_deleting_an_entry_and_renumbering_the_rest_is_detected(audit: AuditLog, db: Database) -> None:
    await _fill(audit, 5)
    await db.execute("DELETE FROM audit_log WHERE id = 2")
    await db.execute("UPDATE audit_log SET id = id - 1 WHERE id > 2")
    await db.execute("UPDATE audit_head SET last_id = 4")

    report = await audit.verify_chain()

    assert (report.ok, report.first_bad_id, report.problem) == (False, 2, "deleted")


async def test_swapping_two_entries_is_reported_as_reordered(audit: AuditLog, db: Database) -> None:
    await _fill(audit, 5)
    await db.execute("UPDATE audit_log SET id = 100 WHERE id = 3")
    await db.execute("UPDATE audit_log SET id = 3 WHERE id = 4")
    await db.execute("UPDATE audit_log SET id = 4 WHERE id = 100")

    report = await audit.verify_chain()

    assert (report.ok, report.first_bad_id, report.problem) == (False, 3, "reordered")


async def test_concurrent_appends_still_form_a_valid_chain(audit: AuditLog, db: Database) -> None:
    # two more writers on the same tables, as other processes would be, and appends made inside
    # other transactions: only the database's lock on the chain head keeps them in one line
    others = [AuditLog(db, audit.keyring), AuditLog(db, audit.keyring)]
    ids: list[int] = []

    async def append(log: AuditLog, i: int) -> None:
        ids.append((await log.append(_entry(i))).id)

    async def append_in_transaction(i: int) -> None:
        async def op(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                await conn.execute("SELECT 1")  # the audited work
                return (await audit.append_in(conn, _entry(i))).id

        ids.append(await db.run(op))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(60):
                nursery.start_soon(append, [audit, *others][i % 3], i)
            for i in range(60, 75):
                nursery.start_soon(append_in_transaction, i)

    assert sorted(ids) == list(range(1, 76))
    report = await audit.verify_chain()
    assert report.ok, report.message
    assert report.checked == 75


async def test_an_entry_in_a_rolled_back_transaction_leaves_no_trace(audit: AuditLog, db: Database) -> None:
    await _fill(audit, 2)

    async def failing_write(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await audit.append_in(conn, AuditEntry("record.write", target="patient/P1/records"))
            raise RuntimeError("the write it records failed")

    with pytest.raises(RuntimeError):
        await db.run(failing_write)
    entry = await audit.append(_entry(3))

    assert entry.id == 3
    assert (await audit.verify_chain()).ok


async def test_search_combines_filters(audit: AuditLog) -> None:
    await _fill(audit, 9)
    await audit.append(AuditEntry("record.read", target="patient/P_1/records", outcome=Outcome.DENIED))

    reads = await audit.search(action="record.read")
    assert {r.action for r in reads} == {"record.read"} and len(reads) == 6
    p1 = await audit.search(target_prefix="patient/P1/")
    assert sorted(r.detail["n"] for r in p1) == [1, 4, 7]
    assert [r.target for r in await audit.search(target_prefix="patient/P_")] == ["patient/P_1/records"]
    assert [r.outcome for r in await audit.search(outcome="denied")] == [Outcome.DENIED]
    assert len(await audit.search(actor="doc1", action="record.read")) == 5
    assert await audit.search(since=NOW + dt.timedelta(days=1)) == []
    assert [r.id for r in await audit.search(limit=2, offset=1)] == [9, 8]
    with pytest.raises(ValueError, match="limit"):
        await audit.search(limit=0)


async def test_csv_export_has_a_header_and_the_entries(audit: AuditLog) -> None:
    await _fill(audit, 3)
    await audit.append(AuditEntry("auth.login_failed", outcome="denied", detail={"login": "=HYPERLINK(1)"},
                                  target="=cmd|' /C calc'!A0"))

    rows = list(csv.reader(io.StringIO(await audit.export_csv())))

    assert rows[0] == ["id", "at", "actor_id", "actor_roles", "action", "target", "outcome", "source_ip", "detail",
                       "prev_hash", "hash"]
    assert [r[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    assert rows[1][4] == "record.read" and rows[1][5] == "patient/P1/records" and rows[1][3] == "doctor"
    assert rows[4][5].startswith("'=")  # not a formula when opened in a spreadsheet
    only_denied = list(csv.reader(io.StringIO(await audit.export_csv(outcome="denied"))))
    assert len(only_denied) == 2


async def test_purge_keeps_the_remainder_verifiable(audit: AuditLog) -> None:
    old = NOW - dt.timedelta(days=800)
    for i in range(5):
        await audit.append(_entry(i, at=old + dt.timedelta(minutes=i)))
    await _fill(audit, 3)

    purged = await audit.purge_older_than(NOW - dt.timedelta(days=365))

    assert purged == 5
    head = await audit.head()
    assert head.anchor_id == 5
    report = await audit.verify_chain()
    assert report.ok and report.checked == 3, report.message
    await audit.append(_entry(9))
    assert (await audit.verify_chain()).ok
    assert await audit.purge_older_than(NOW - dt.timedelta(days=365)) == 0


async def test_purge_refuses_less_than_six_months_retention(audit: AuditLog) -> None:
    with pytest.raises(ValueError, match="183 days"):
        await audit.purge_older_than(NOW - dt.timedelta(days=30))


async def test_purge_refuses_to_erase_a_broken_chain(audit: AuditLog, db: Database) -> None:
    old = NOW - dt.timedelta(days=800)
    for i in range(4):
        await audit.append(_entry(i, at=old))
    await db.execute("UPDATE audit_log SET actor_id = 'someone else' WHERE id = 2")

    with pytest.raises(AuditChainBroken, match="entry 2"):
        await audit.purge_older_than(NOW - dt.timedelta(days=365))
    assert len(await audit.search()) == 4

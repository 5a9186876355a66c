"""Key rotation over a real table: every value moves to the new key and stays readable and
tamper-evident; a row changed behind CareHub's back is caught, never re-tagged."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg
import pytest
import trio
import trio_asyncio

from carehub.storage.db import Database
from carehub.storage.keyring import IntegrityError, KeyRing
from carehub.storage.rotation import RotationIncomplete, rotate_table

TABLE = "rotation_patients"
TAGGED = ("name", "id_number", "phone")


async def _create_table(db: Database) -> None:
    await db.execute(
        f"CREATE TABLE {TABLE} (id varchar(32) PRIMARY KEY, name varchar(100) NOT NULL,"
        " id_number text NOT NULL, phone text, tag char(64) NOT NULL)"
    )


def _row(ring: KeyRing, i: int, phone: str | None = None) -> tuple[str, str, str, str | None, str]:
    row_id, name = f"P{i:05d}", f"病人{i}"
    id_number = ring.seal(f"1101011990030{i:05d}", field="id_number")
    sealed_phone = ring.seal_optional(phone or (f"138{i:08d}" if i % 7 else None), field="phone")
    tag = ring.integrity_tag(TABLE, row_id, {"name": name, "id_number": id_number, "phone": sealed_phone})
    return row_id, name, id_number, sealed_phone, tag


async def _insert(db: Database, rows: Iterable[tuple[str, str, str, str | None, str]]) -> None:
    async def op(conn: asyncpg.Connection) -> None:
        await conn.executemany(
            f"INSERT INTO {TABLE} (id, name, id_number, phone, tag) VALUES ($1, $2, $3, $4, $5)", list(rows)
        )

    await db.run(op)


async def _all(db: Database) -> list[asyncpg.Record]:
    return await db.fetch(f"SELECT id, name, id_number, phone, tag FROM {TABLE} ORDER BY id")


def _check(ring: KeyRing, r: asyncpg.Record) -> None:
    ring.check_integrity(TABLE, r["id"], {c: r[c] for c in TAGGED}, r["tag"])


async def _rotate(db: Database, ring: KeyRing, *, batch: int = 100) -> int:
    return await rotate_table(
        db, ring, table=TABLE, id_column="id", columns=["id_number", "phone"], tag_column="tag",
        tag_columns=TAGGED, batch=batch,
    )


async def test_rotation_re_encrypts_every_value_to_the_new_key_and_all_stay_readable(db: Database) -> None:
    ring = KeyRing.generate("k1")
    await _create_table(db)
    await _insert(db, [_row(ring, i) for i in range(1, 351)])
    ring.add_key("k2")
    ring.rotate_to("k2")

    with trio.fail_after(30):
        changed = await _rotate(db, ring)

    assert changed == 350
    rows = await _all(db)
    for i, r in enumerate(rows, start=1):
        assert ring.key_id_of(r["id_number"]) == "k2"
        assert r["phone"] is None or ring.key_id_of(r["phone"]) == "k2"
        assert ring.open(r["id_number"], field="id_number") == f"1101011990030{i:05d}"
        assert ring.open_optional(r["phone"], field="phone") == (f"138{i:08d}" if i % 7 else None)
        _check(ring, r)
    assert await _rotate(db, ring) == 0
    ring.retire_key("k1")  # nothing needs it any more
    assert all(ring.open(r["id_number"], field="id_number") for r in await _all(db))


async def test_a_row_changed_behind_the_apps_back_fails_check_integrity(db: Database) -> None:
    ring = KeyRing.generate()
    await _create_table(db)
    await _insert(db, [_row(ring, 1), _row(ring, 2)])
    # a valid ciphertext of the right field, copied from another patient: decrypts fine, still caught
    await db.execute(f"UPDATE {TABLE} SET phone = (SELECT phone FROM {TABLE} WHERE id = 'P00002') WHERE id = 'P00001'")
    first, second = await _all(db)

    assert ring.open(first["phone"], field="phone") == "13800000002"
    with pytest.raises(IntegrityError, match="P00001"):
        _check(ring, first)
    _check(ring, second)


async def test_rotation_leaves_a_tampered_row_under_its_old_key_and_reports_it(db: Database) -> None:
    ring = KeyRing.generate("k1")
    await _create_table(db)
    await _insert(db, [_row(ring, i) for i in range(1, 6)])
    await db.execute(f"UPDATE {TABLE} SET name = '别人' WHERE id = 'P00003'")
    ring.add_key("k2")
    ring.rotate_to("k2")

    with trio.fail_after(30), pytest.raises(RotationIncomplete) as caught:
        await _rotate(db, ring, batch=2)

    assert caught.value.rotated == 4
    assert list(caught.value.failed) == ["P00003"]
    rows = {r["id"]: r for r in await _all(db)}
    assert ring.key_id_of(rows["P00003"]["id_number"]) == "k1"  # not re-tagged: the tampering stays visible
    with pytest.raises(IntegrityError):
        _check(ring, rows["P00003"])
    for row_id in ("P00001", "P00002", "P00004", "P00005"):
        assert ring.key_id_of(rows[row_id]["id_number"]) == "k2"
        _check(ring, rows[row_id])


async def test_rotation_never_overwrites_a_value_the_app_writes_meanwhile(db: Database, database_url: str) -> None:
    ring = KeyRing.generate("k1")
    await _create_table(db)
    await _insert(db, [_row(ring, i) for i in range(1, 21)])
    ring.add_key("k2")
    ring.rotate_to("k2")
    # the application, already on k2, changes P00005's phone; its transaction is still open
    writer = await trio_asyncio.aio_as_trio(asyncpg.connect)(database_url)
    try:
        _, _, id_number, phone, tag = _row(ring, 5, phone="13999999999")
        await trio_asyncio.aio_as_trio(writer.execute)("BEGIN")
        await trio_asyncio.aio_as_trio(writer.execute)(
            f"UPDATE {TABLE} SET id_number = $1, phone = $2, tag = $3 WHERE id = 'P00005'", id_number, phone, tag
        )
        changed: list[int] = []

        async def rotate() -> None:
            changed.append(await _rotate(db, ring, batch=50))

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(rotate)
                # rotation read the old committed value and now waits for the writer's row lock
                while not await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                ):
                    await trio.sleep(0.01)
                await trio_asyncio.aio_as_trio(writer.execute)("COMMIT")
    finally:
        await trio_asyncio.aio_as_trio(writer.close)()

    assert changed == [19]
    rows = {r["id"]: r for r in await _all(db)}
    assert ring.open(rows["P00005"]["phone"], field="phone") == "13999999999"
    for r in rows.values():
        assert ring.key_id_of(r["id_number"]) == "k2"
        _check(ring, r)

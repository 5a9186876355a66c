"""Outpatient bills and their payment orders (OUT-7, OUT-13, OUT-14, ME-6).

``bills`` (copied from the HIS or made by a self-service test order), ``bill_orders`` and
``bill_order_items`` (one WeChat Pay order paying a set of bills), ``test_catalogue`` and
``test_orders``. The steps that must hold together are one transaction each, named for the step:
:meth:`BillStore.settle` (an order paid: its bills paid once, or the money refunded whole),
:meth:`BillStore.refund` (an admin refund), :meth:`BillStore.create_order`. The HIS push and the
refund those steps cause are durable tells scheduled in the same transaction through the hub
store (:meth:`carehub.storage.hub_store.PostgresHubStore.schedule_in`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import msgspec

from ..db import Database
from ..hub_store import PostgresHubStore

#: a durable tell: the actor or effect address, and the message
Tell = tuple[str, msgspec.Struct]


class BillStore:
    def __init__(self, db: Database, hub_store: PostgresHubStore) -> None:
        self.db = db
        self.hub_store = hub_store

    # ---- who may see what --------------------------------------------------------------------

    async def family(self, account_id: str) -> list[str]:
        """The patients linked to the account with their consent, oldest link first."""
        rows = await self.db.fetch(
            "SELECT patient_id FROM account_patients WHERE account_id = $1 AND consent_status = 'granted'"
            " ORDER BY created_at", account_id,
        )
        return [r["patient_id"] for r in rows]

    # ---- bills -------------------------------------------------------------------------------

    async def copy_from_his(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Copy HIS charges (rows in ``bills`` column order from ``id`` to ``created_at``): a new one is
        inserted, a still-unpaid one follows the HIS; what we recorded as paid or refunded stays ours."""

        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                for row in rows:
                    bill_id, name, quantity, amount, status, at = row[0], row[6], row[8], row[9], row[10], row[12]
                    done = await conn.execute(
                        "UPDATE bills SET status = $2, name = $3, quantity = $4, amount_fen = $5, updated_at = $6"
                        " WHERE id = $1 AND status = 'unpaid'", bill_id, status, name, quantity, amount, at)
                    if done == "UPDATE 0" and not await conn.fetchval("SELECT 1 FROM bills WHERE id = $1", bill_id):
                        await conn.execute(
                            "INSERT INTO bills (id, source, his_id, patient_id, visit_id, slip, code, name, category,"
                            " quantity, amount_fen, status, order_no, occurred_at, created_at, updated_at)"
                            " VALUES ($1, 'his', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, $13, $13)",
                            *row)

        try:
            await self.db.run(op)
        except asyncpg.UniqueViolationError:
            pass  # a refresh running beside this one inserted the same charge first

    async def of_patients(self, patients: list[str], status: str | None) -> list[dict[str, Any]]:
        """The patients' bills (of one ``status``, or all), latest first."""
        rows = await self.db.fetch(
            "SELECT * FROM bills WHERE patient_id = ANY($1::varchar[]) AND ($2::varchar IS NULL OR status = $2)"
            " ORDER BY occurred_at DESC, id LIMIT 500", patients, status,
        )
        return [dict(r) for r in rows]

    async def of_slip(self, patient_id: str, slip: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT * FROM bills WHERE patient_id = $1 AND slip = $2 ORDER BY occurred_at, id", patient_id, slip)
        return [dict(r) for r in rows]

    async def by_ids(self, ids: list[str]) -> list[dict[str, Any]]:
        rows = await self.db.fetch("SELECT * FROM bills WHERE id = ANY($1::varchar[])", ids)
        return [dict(r) for r in rows]

    async def visit_fees(self, patients: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The patients' bookings (with their registration fee's order status) and their bills that
        are not cancelled, oldest first: what the fee details per visit are made of (OUT-13)."""

        async def op(conn: asyncpg.Connection) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            bookings = await conn.fetch(
                "SELECT b.id, b.patient_id, b.day, b.slot_at, b.status, b.fee_fen, b.department_id,"
                " a.display_name AS doctor_name, d.name AS department_name,"
                " (SELECT o.status FROM payment_orders o WHERE o.booking_id = b.id ORDER BY o.created_at DESC"
                " LIMIT 1) AS fee_status"
                " FROM bookings b JOIN accounts a ON a.id = b.doctor_id"
                " LEFT JOIN departments d ON d.id = b.department_id"
                " WHERE b.patient_id = ANY($1::varchar[]) ORDER BY b.slot_at DESC LIMIT 200", patients,
            )
            bills = await conn.fetch(
                "SELECT * FROM bills WHERE patient_id = ANY($1::varchar[]) AND status <> 'cancelled'"
                " ORDER BY occurred_at, id", patients,
            )
            return [dict(r) for r in bookings], [dict(r) for r in bills]

        return await self.db.run(op)

    # ---- orders ------------------------------------------------------------------------------

    async def order(self, out_trade_no: str) -> dict[str, Any] | None:
        """A bill order with its bills (``items``); None: no such order."""
        orders = await self.db.run(_orders_with_items, "out_trade_no = $1", out_trade_no)
        return orders[0] if orders else None

    async def orders_of(self, account_id: str) -> list[dict[str, Any]]:
        """An account's bill orders, newest first, each with its bills (``items``)."""
        return await self.db.run(_orders_with_items, "account_id = $1", account_id)

    async def order_status(self, out_trade_no: str) -> str | None:
        status: str | None = await self.db.fetchval(
            "SELECT status FROM bill_orders WHERE out_trade_no = $1", out_trade_no)
        return status

    async def create_order(self, out_trade_no: str, account_id: str, patient_id: str, bill_ids: list[str],
                           total_fen: int, status: str, now: dt.datetime) -> str | None:
        """A new order for ``bill_ids`` (sorted); a retry of the same order answers its status.

        None: the number is taken by another account's order or one for other bills.
        """

        async def op(conn: asyncpg.Connection) -> str | None:
            async with conn.transaction():
                existing = await conn.fetchrow("SELECT * FROM bill_orders WHERE out_trade_no = $1", out_trade_no)
                if existing is not None:  # a client retrying with its client_ref
                    same = sorted(r["bill_id"] for r in await conn.fetch(
                        "SELECT bill_id FROM bill_order_items WHERE out_trade_no = $1", out_trade_no))
                    if existing["account_id"] != account_id or same != bill_ids:
                        return None
                    return str(existing["status"])
                await conn.execute(
                    "INSERT INTO bill_orders (out_trade_no, account_id, patient_id, total_fen, status, refunded_fen,"
                    " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
                    out_trade_no, account_id, patient_id, total_fen, status, now)
                await conn.executemany("INSERT INTO bill_order_items (out_trade_no, bill_id) VALUES ($1, $2)",
                                       [(out_trade_no, i) for i in bill_ids])
                return status

        return await self.db.run(op)

    async def move_order(self, out_trade_no: str, *, was: str, status: str, now: dt.datetime,
                         note: str | None = None) -> bool:
        """Move an order from ``was`` to ``status`` (a close after a refused create); False if it was not ``was``."""
        done = await self.db.execute(
            "UPDATE bill_orders SET status = $3, note = COALESCE($4, note), updated_at = $5"
            " WHERE out_trade_no = $1 AND status = $2", out_trade_no, was, status, note, now)
        return done != "UPDATE 0"

    async def order_exists(self, out_trade_no: str) -> bool:
        return await self.db.fetchval("SELECT 1 FROM bill_orders WHERE out_trade_no = $1", out_trade_no) is not None

    async def settle(
        self, out_trade_no: str, transaction_id: str, now: dt.datetime, *, created: str, paid: str, refunding: str,
        bill_unpaid: str, bill_paid: str, refund_no: str, note: str,
        on_paid: Sequence[Tell], on_refund: Callable[[int], Sequence[Tell]],
    ) -> tuple[str, int] | None:
        """The gateway says the order is paid, in one transaction under row locks.

        Only an order still ``created`` moves: to ``paid`` with its bills (all still unpaid) and the
        ``on_paid`` tells; or, when some bill was paid by another order or withdrawn, to
        ``refunding`` with the ``on_refund(total_fen)`` tells. Answers (what happened, the order's
        total): ``"paid"``, ``"refunding"`` or ``"replayed"`` (not ``created`` any more: nothing
        changes); None: no such order.
        """

        async def op(conn: asyncpg.Connection) -> tuple[str, int] | None:
            async with conn.transaction():
                order = await conn.fetchrow("SELECT * FROM bill_orders WHERE out_trade_no = $1 FOR UPDATE",
                                            out_trade_no)
                if order is None:
                    return None
                total = int(order["total_fen"])
                if order["status"] != created:
                    return "replayed", total  # a repeated notification, or one after a close: nothing changes
                bills = await conn.fetch(
                    "SELECT b.id, b.status FROM bills b JOIN bill_order_items i ON i.bill_id = b.id"
                    " WHERE i.out_trade_no = $1 ORDER BY b.id FOR UPDATE OF b", out_trade_no)
                if bills and all(b["status"] == bill_unpaid for b in bills):
                    await conn.execute(
                        "UPDATE bill_orders SET status = $4, transaction_id = $2, paid_at = $3, updated_at = $3"
                        " WHERE out_trade_no = $1 AND status = $5", out_trade_no, transaction_id, now, paid, created)
                    await conn.execute(
                        "UPDATE bills SET status = $4, order_no = $1, updated_at = $3"
                        " WHERE id = ANY($2::varchar[]) AND status = $5",
                        out_trade_no, [b["id"] for b in bills], now, bill_paid, bill_unpaid)
                    await self.hub_store.schedule_in(conn, on_paid, now)
                    return "paid", total
                await conn.execute(
                    "UPDATE bill_orders SET status = $6, transaction_id = $2, paid_at = $3, updated_at = $3,"
                    " refund_no = $4, note = $5 WHERE out_trade_no = $1 AND status = $7",
                    out_trade_no, transaction_id, now, refund_no, note, refunding, created)
                await self.hub_store.schedule_in(conn, on_refund(total), now)
                return "refunding", total

        return await self.db.run(op)

    async def refund(
        self, out_trade_no: str, now: dt.datetime, *, paid: str, refunding: str, bill_paid: str,
        bill_refunded: str, refund_no: str, note: str, tells: Callable[[int], Sequence[Tell]],
    ) -> bool:
        """An admin's refund of a paid order, in one transaction: the order ``refunding``, its bills
        ``refunded``, the ``tells(total_fen)`` scheduled. False: the order is not ``paid``."""

        async def op(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                order = await conn.fetchrow(
                    "UPDATE bill_orders SET status = $5, refund_no = $2, note = $3, updated_at = $4"
                    " WHERE out_trade_no = $1 AND status = $6 RETURNING total_fen",
                    out_trade_no, refund_no, note, now, refunding, paid)
                if order is None:
                    return False
                await conn.execute("UPDATE bills SET status = $3, updated_at = $2"
                                   " WHERE order_no = $1 AND status = $4", out_trade_no, now, bill_refunded, bill_paid)
                await self.hub_store.schedule_in(conn, tells(int(order["total_fen"])), now)
                return True

        return await self.db.run(op)

    async def refund_settled(self, out_trade_no: str, refunded_fen: int, now: dt.datetime, *, refunding: str,
                             refunded: str) -> bool:
        """The refund came back: ``refunding`` -> ``refunded``. False: no such order."""

        async def op(conn: asyncpg.Connection) -> bool:
            await conn.execute(
                "UPDATE bill_orders SET status = $4, refunded_fen = $2, updated_at = $3"
                " WHERE out_trade_no = $1 AND status = $5", out_trade_no, refunded_fen, now, refunded, refunding)
            return await conn.fetchval("SELECT 1 FROM bill_orders WHERE out_trade_no = $1", out_trade_no) is not None

        return await self.db.run(op)

    async def for_his(self, out_trade_no: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """An order and its bills, each with its self-service test order (``test_order_id``, ``ordered_at``)."""

        async def op(conn: asyncpg.Connection) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
            order = await conn.fetchrow("SELECT * FROM bill_orders WHERE out_trade_no = $1", out_trade_no)
            if order is None:
                return None, []
            rows = await conn.fetch(
                "SELECT b.*, t.id AS test_order_id, t.created_at AS ordered_at FROM bills b"
                " LEFT JOIN test_orders t ON t.bill_id = b.id WHERE b.order_no = $1 ORDER BY b.id", out_trade_no)
            return dict(order), [dict(r) for r in rows]

        return await self.db.run(op)

    # ---- the self-service test catalogue -----------------------------------------------------

    async def catalogue(self, *, active_only: bool) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT * FROM test_catalogue WHERE active OR NOT $1 ORDER BY category, code", active_only)
        return [dict(r) for r in rows]

    async def put_test(self, values: tuple[Any, ...]) -> bool:
        """Add or change a test (``code, name, category, price_fen, description, notice, active, updated_at,
        updated_by``). False: another change of the same new test got there first."""

        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                done = await conn.execute(
                    "UPDATE test_catalogue SET name = $2, category = $3, price_fen = $4, description = $5,"
                    " notice = $6, active = $7, updated_at = $8, updated_by = $9 WHERE code = $1", *values)
                if done == "UPDATE 0":
                    await conn.execute(
                        "INSERT INTO test_catalogue (code, name, category, price_fen, description, notice, active,"
                        " updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", *values)

        try:
            await self.db.run(op)
        except asyncpg.UniqueViolationError:
            return False
        return True

    async def withdraw_test(self, code: str, by: str, now: dt.datetime) -> bool:
        done = await self.db.execute("UPDATE test_catalogue SET active = false, updated_at = $2, updated_by = $3"
                                     " WHERE code = $1", code, now, by)
        return done != "UPDATE 0"

    async def active_test(self, code: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow("SELECT * FROM test_catalogue WHERE code = $1 AND active", code)
        return None if row is None else dict(row)

    async def order_test(self, order_id: str, account_id: str, patient_id: str, test: dict[str, Any], bill_id: str,
                         status: str, now: dt.datetime) -> dict[str, Any]:
        """A test order and its bill, in one transaction (a retry with the same ``order_id`` adds nothing);
        answers the bill."""

        async def op(conn: asyncpg.Connection) -> dict[str, Any]:
            async with conn.transaction():
                if not await conn.fetchval("SELECT 1 FROM test_orders WHERE id = $1", order_id):
                    await conn.execute(
                        "INSERT INTO bills (id, source, his_id, patient_id, visit_id, slip, code, name, category,"
                        " quantity, amount_fen, status, order_no, occurred_at, created_at, updated_at)"
                        " VALUES ($1, 'self', NULL, $2, NULL, NULL, $3, $4, $5, 1, $6, $8, NULL, $7, $7, $7)",
                        bill_id, patient_id, test["code"], test["name"], test["category"], test["price_fen"], now,
                        status)
                    await conn.execute(
                        "INSERT INTO test_orders (id, account_id, patient_id, code, bill_id, created_at)"
                        " VALUES ($1, $2, $3, $4, $5, $6)", order_id, account_id, patient_id, test["code"], bill_id,
                        now)
                row = await conn.fetchrow("SELECT * FROM bills WHERE id = $1", bill_id)
                assert row is not None
                return dict(row)

        return await self.db.run(op)


async def _orders_with_items(conn: asyncpg.Connection, where: str, value: str) -> list[dict[str, Any]]:
    orders = [dict(r) for r in await conn.fetch(
        f"SELECT * FROM bill_orders WHERE {where} ORDER BY created_at DESC LIMIT 200", value)]
    if not orders:
        return orders
    items = await conn.fetch(
        "SELECT i.out_trade_no AS item_of, b.* FROM bills b JOIN bill_order_items i ON i.bill_id = b.id"
        " WHERE i.out_trade_no = ANY($1::varchar[]) ORDER BY b.id", [o["out_trade_no"] for o in orders])
    by_order: dict[str, list[dict[str, Any]]] = {}
    for r in items:
        by_order.setdefault(r["item_of"], []).append(dict(r))
    for o in orders:
        o["items"] = by_order.get(o["out_trade_no"], [])
    return orders


__all__ = ["BillStore"]

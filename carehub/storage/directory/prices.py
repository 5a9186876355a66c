"""The price list and its change history (ADM-6)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from carehub.errors import Conflict

from ..audit import AuditEntry
from ._base import DirectoryRepository, Editor, escape_like

_PRICE = "code, name, category, unit, price_fen, active, updated_at"


class PriceStore(DirectoryRepository):
    """Price items; every change is kept."""

    async def prices(
        self, *, search: str | None, category: str | None, everything: bool = False
    ) -> list[dict[str, Any]]:
        """Active items (``everything``: taken-off ones too, for admins), by category and code."""
        rows = await self.db.fetch(
            f"SELECT {_PRICE} FROM price_items WHERE ($3 OR active)"
            " AND ($1::varchar IS NULL OR name LIKE $1 ESCAPE '!' OR code LIKE $1 ESCAPE '!')"
            " AND ($2::varchar IS NULL OR category = $2) ORDER BY category, code",
            escape_like(search) if search else None, category, everything,
        )
        return [dict(r) for r in rows]

    async def put_price(self, editor: Editor, code: str, item: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create or change a price item, keeping the change; None when nothing changed."""
        new = (item["name"], item.get("category", ""), item["unit"], item["price_fen"], item.get("active", True))

        async def op(conn: asyncpg.Connection) -> dict[str, Any] | None:
            old = await conn.fetchrow(f"SELECT {_PRICE} FROM price_items WHERE code = $1 FOR UPDATE", code)
            if old is None:
                await conn.execute(
                    "INSERT INTO price_items (code, name, category, unit, price_fen, active, updated_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, now())", code, *new,
                )
                before: tuple[Any, ...] = (None,) * 5
            else:
                before = (old["name"], old["category"], old["unit"], old["price_fen"], old["active"])
                if before == new:
                    return None
                await conn.execute(
                    "UPDATE price_items SET name = $2, category = $3, unit = $4, price_fen = $5, active = $6,"
                    " updated_at = now() WHERE code = $1", code, *new,
                )
            await conn.execute(
                "INSERT INTO price_changes (code, changed_at, changed_by, old_name, new_name, old_category,"
                " new_category, old_unit, new_unit, old_price_fen, new_price_fen, old_active, new_active)"
                " VALUES ($1, now(), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                code, editor.account_id, *(v for pair in zip(before, new, strict=True) for v in pair),
            )
            return {"old_price_fen": before[3], "new_price_fen": new[3]}

        # no audit entry for a change that changed nothing
        async def run(conn: asyncpg.Connection) -> dict[str, Any] | None:
            async with conn.transaction():
                change = await op(conn)
                if change is not None:
                    await self.audit.append_in(conn, AuditEntry(
                        action="price.change", target=f"price/{code}", actor_id=editor.account_id,
                        actor_roles=editor.roles, source_ip=editor.ip, detail=change,
                    ))
                return change

        try:
            return await self.db.run(run)
        except asyncpg.UniqueViolationError:  # two admins creating the same item at once
            raise Conflict("同时有其他修改，请刷新后重试 (changed concurrently, try again)") from None

    async def price_history(self, *, code: str | None, limit: int) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT c.id, c.code, c.changed_at, c.changed_by, a.display_name AS changed_by_name,"
            " c.old_name, c.new_name, c.old_category, c.new_category, c.old_unit, c.new_unit,"
            " c.old_price_fen, c.new_price_fen, c.old_active, c.new_active"
            " FROM price_changes c LEFT JOIN accounts a ON a.id = c.changed_by"
            f" WHERE $1::varchar IS NULL OR c.code = $1 ORDER BY c.id DESC LIMIT {int(limit)}",
            code,
        )
        return [dict(r) for r in rows]

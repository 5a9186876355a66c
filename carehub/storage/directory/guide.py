"""Visit guide pages (PUB-5, GUIDE-1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from carehub.errors import NotFound

from ._base import DirectoryRepository, Editor


class GuideStore(DirectoryRepository):
    """Visit guide pages by slug."""

    async def guide(self, *, everything: bool = False) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT slug, title, sort_order, hidden, updated_at FROM guide_pages WHERE $1 OR NOT hidden"
            " ORDER BY sort_order, slug", everything,
        )
        return [dict(r) for r in rows]

    async def guide_page(self, slug: str, *, everything: bool = False) -> dict[str, Any]:
        """One page; ``everything``: hidden pages too, with ``hidden`` and ``sort_order`` (for admins)."""
        extra = ", sort_order, hidden" if everything else ""
        row = await self.db.fetchrow(
            f"SELECT slug, title, body, updated_at{extra} FROM guide_pages WHERE slug = $1 AND ($2 OR NOT hidden)",
            slug, everything,
        )
        if row is None:
            raise NotFound(f"就医指南 {slug} 不存在 (no guide page {slug})")
        return dict(row)

    async def put_guide_page(self, editor: Editor, slug: str, page: Mapping[str, Any]) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            args = (slug, page["title"], page["body"], page.get("sort_order", 0), page.get("hidden", False),
                    editor.account_id)
            status = await conn.execute(
                "UPDATE guide_pages SET title = $2, body = $3, sort_order = $4, hidden = $5, updated_at = now(),"
                " updated_by = $6 WHERE slug = $1", *args,
            )
            if status == "UPDATE 0":
                await conn.execute(
                    "INSERT INTO guide_pages (slug, title, body, sort_order, hidden, updated_at, updated_by)"
                    " VALUES ($1, $2, $3, $4, $5, now(), $6)", *args,
                )

        await self._change(editor, "guide.change", f"guide/{slug}", {"title": page["title"]}, op)

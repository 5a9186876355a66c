"""Hospital news (PUB-3)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import asyncpg

from carehub.errors import NotFound

from ._base import DirectoryRepository, Editor, new_id


class NewsStore(DirectoryRepository):
    """News articles: published, hidden, scheduled."""

    async def news(
        self, *, now: dt.datetime, limit: int, offset: int, everything: bool = False
    ) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT id, title, summary, cover_url, published_at, hidden FROM news"
            " WHERE $1 OR (NOT hidden AND published_at <= $2) ORDER BY published_at DESC, id"
            f" LIMIT {int(limit)} OFFSET {int(offset)}",
            everything, now,
        )
        return [dict(r) for r in rows]

    async def news_item(self, news_id: str, *, now: dt.datetime, everything: bool = False) -> dict[str, Any]:
        """One article; ``everything``: hidden and scheduled ones too, with ``hidden`` (for admins)."""
        extra = ", hidden" if everything else ""
        row = await self.db.fetchrow(
            f"SELECT id, title, summary, body, cover_url, published_at{extra} FROM news"
            " WHERE id = $1 AND ($3 OR (NOT hidden AND published_at <= $2))", news_id, now, everything,
        )
        if row is None:
            raise NotFound(f"新闻 {news_id} 不存在 (no news {news_id})")
        return dict(row)

    async def create_news(self, editor: Editor, item: Mapping[str, Any]) -> str:
        news_id = new_id()

        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO news (id, title, summary, body, cover_url, published_at, hidden, created_by, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())",
                news_id, item["title"], item.get("summary", ""), item["body"], item.get("cover_url", ""),
                item["published_at"], item.get("hidden", False), editor.account_id,
            )

        await self._change(editor, "news.create", f"news/{news_id}", {"title": item["title"]}, op)
        return news_id

    async def change_news(self, editor: Editor, news_id: str, changes: Mapping[str, Any]) -> None:
        columns = {"title", "summary", "body", "cover_url", "published_at", "hidden"}
        assert set(changes) <= columns, set(changes) - columns
        await self._update(editor, "news", news_id, changes, "news.change", f"news/{news_id}", f"新闻 {news_id} 不存在")

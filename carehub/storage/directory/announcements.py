"""Announcements shown for a period, with read counts (ADM-5)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import asyncpg

from carehub.errors import NotFound

from ._base import DirectoryRepository, Editor, check_period, new_id

_ANNOUNCEMENT = "n.id, n.title, n.body, n.starts_at, n.ends_at, n.withdrawn, n.created_at, n.updated_at"


class AnnouncementStore(DirectoryRepository):
    """Announcements and who read them."""

    async def current_announcements(self, *, now: dt.datetime, reader: str | None) -> list[dict[str, Any]]:
        """Announcements showing now, newest first; ``read`` says whether ``reader`` marked each read."""
        rows = await self.db.fetch(
            f"SELECT {_ANNOUNCEMENT}, EXISTS (SELECT 1 FROM announcement_reads r WHERE r.announcement_id = n.id"
            " AND r.account_id = $2) AS has_read FROM announcements n"
            " WHERE NOT n.withdrawn AND n.starts_at <= $1 AND n.ends_at > $1 ORDER BY n.starts_at DESC, n.id",
            now, reader,
        )
        return [
            {"id": r["id"], "title": r["title"], "body": r["body"], "starts_at": r["starts_at"],
             "ends_at": r["ends_at"], **({"read": r["has_read"]} if reader is not None else {})}
            for r in rows
        ]

    async def all_announcements(self, *, now: dt.datetime) -> list[dict[str, Any]]:
        """Every announcement with its read count and whether it is showing now (for admins)."""
        rows = await self.db.fetch(
            f"SELECT {_ANNOUNCEMENT}, (SELECT count(*) FROM announcement_reads r WHERE r.announcement_id = n.id)"
            " AS read_count FROM announcements n ORDER BY n.starts_at DESC, n.id"
        )
        return [
            {**dict(r), "showing": not r["withdrawn"] and r["starts_at"] <= now < r["ends_at"]} for r in rows
        ]

    async def create_announcement(self, editor: Editor, item: Mapping[str, Any]) -> str:
        announcement_id = new_id()
        check_period(item["starts_at"], item["ends_at"])

        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO announcements (id, title, body, starts_at, ends_at, withdrawn, created_by, created_at,"
                " updated_at) VALUES ($1, $2, $3, $4, $5, false, $6, now(), now())",
                announcement_id, item["title"], item["body"], item["starts_at"], item["ends_at"], editor.account_id,
            )

        detail = {"title": item["title"], "starts_at": item["starts_at"], "ends_at": item["ends_at"]}
        await self._change(editor, "announcement.create", f"announcement/{announcement_id}", detail, op)
        return announcement_id

    async def change_announcement(self, editor: Editor, announcement_id: str, changes: Mapping[str, Any]) -> None:
        columns = {"title", "body", "starts_at", "ends_at", "withdrawn"}
        assert set(changes) <= columns, set(changes) - columns

        async def check(conn: asyncpg.Connection) -> None:
            row = await conn.fetchrow("SELECT starts_at, ends_at FROM announcements WHERE id = $1", announcement_id)
            if row is not None:
                check_period(changes.get("starts_at", row["starts_at"]), changes.get("ends_at", row["ends_at"]))

        await self._update(
            editor, "announcements", announcement_id, changes, "announcement.change",
            f"announcement/{announcement_id}", f"公告 {announcement_id} 不存在", before=check,
        )

    async def mark_read(self, announcement_id: str, account_id: str, *, now: dt.datetime) -> bool:
        """Count ``account_id`` as a reader of a showing announcement; False if it had already read it."""

        async def op(conn: asyncpg.Connection) -> bool:
            showing = await conn.fetchval(
                "SELECT 1 FROM announcements WHERE id = $1 AND NOT withdrawn AND starts_at <= $2 AND ends_at > $2",
                announcement_id, now,
            )
            if not showing:
                raise NotFound(f"公告 {announcement_id} 不存在或已下线 (no current announcement)")
            try:
                status = await conn.execute(
                    "INSERT INTO announcement_reads (announcement_id, account_id, read_at)"
                    " SELECT $1::varchar, $2::varchar, $3::timestamptz"
                    " WHERE NOT EXISTS (SELECT 1 FROM announcement_reads WHERE announcement_id = $1"
                    " AND account_id = $2)",
                    announcement_id, account_id, now,
                )
            except asyncpg.UniqueViolationError:  # the same account, twice at once
                return False
            return bool(status == "INSERT 0 1")

        return await self.db.run(op)

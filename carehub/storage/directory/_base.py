"""What every directory repository shares: who edits, and a change audited in its own transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg

from carehub.errors import Conflict, Invalid, NotFound

from ..audit import AuditEntry, AuditLog
from ..db import Database


@dataclasses.dataclass(frozen=True, slots=True)
class Editor:
    """Who makes a change (an admin), for the audit trail and ``updated_by`` columns."""

    account_id: str
    roles: tuple[str, ...]
    ip: str | None


class DirectoryRepository:
    """Base of the directory's repositories: queries and audited changes over a :class:`Database`."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def _change(self, editor: Editor, action: str, target: str, detail: Mapping[str, Any], op: Any,
                      *args: Any) -> Any:
        """Run ``op(conn, *args)`` and record ``action`` on ``target`` in one transaction."""

        async def run(conn: asyncpg.Connection) -> Any:
            async with conn.transaction():
                result = await op(conn, *args)
                await self.audit.append_in(conn, AuditEntry(
                    action=action, target=target, actor_id=editor.account_id, actor_roles=editor.roles,
                    source_ip=editor.ip, detail=detail,
                ))
                return result

        try:
            return await self.db.run(run)
        except asyncpg.UniqueViolationError:  # two admins creating the same thing at once
            raise Conflict("同时有其他修改，请刷新后重试 (changed concurrently, try again)") from None
        except (asyncpg.ForeignKeyViolationError, asyncpg.CheckViolationError) as err:
            # the checks above come first; this is the database's word when they raced a change
            raise Invalid(f"数据不一致，请刷新后重试 ({err.constraint_name})") from None

    async def _update(
        self, editor: Editor, table: str, row_id: str, changes: Mapping[str, Any], action: str, target: str,
        missing: str, before: Any = None,
    ) -> None:
        """Change some columns of the row ``row_id`` of ``table`` (a table with ``id`` and ``updated_at``)."""

        async def op(conn: asyncpg.Connection) -> None:
            if before is not None:
                await before(conn)
            names = sorted(changes)
            sets = ", ".join([f"{name} = ${i + 2}" for i, name in enumerate(names)] + ["updated_at = now()"])
            status = await conn.execute(
                f"UPDATE {table} SET {sets} WHERE id = $1", row_id, *(changes[n] for n in names)
            )
            if status == "UPDATE 0":
                raise NotFound(missing)

        await self._change(editor, action, target, summary(changes), op)


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def check_period(starts_at: dt.datetime, ends_at: dt.datetime) -> None:
    if ends_at <= starts_at:
        raise Invalid("结束时间必须晚于开始时间 (ends_at must be after starts_at)")


def summary(changes: Mapping[str, Any]) -> dict[str, Any]:
    """What an audit entry says about a change: short values as they are, long text by its size."""
    return {k: (f"<{len(v)} 字>" if isinstance(v, str) and len(v) > 80 else v) for k, v in changes.items()}


def escape_like(text: str) -> str:
    return "%" + text.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"

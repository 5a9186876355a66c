"""Roles with their permission sets and menus (tables ``roles``, ``role_permissions``, ``role_menus``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import asyncpg

from ..db import Database


@dataclasses.dataclass(frozen=True, slots=True)
class RoleRow:
    name: str
    description: str
    builtin: bool
    permissions: frozenset[str]
    menus: tuple[str, ...]


class RoleStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(
        self, defaults: Mapping[str, Iterable[str]], default_menus: Mapping[str, Iterable[str]]
    ) -> list[RoleRow]:
        """Every role; on first start (no roles yet) the built-in ``defaults`` are copied in first."""

        async def op(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            async with conn.transaction():
                await conn.execute("LOCK TABLE roles IN EXCLUSIVE MODE")
                if not await conn.fetchval("SELECT count(*) FROM roles"):
                    for name, perms in defaults.items():
                        await conn.execute(
                            "INSERT INTO roles (name, description, builtin) VALUES ($1, $2, true)", name, name
                        )
                        await conn.executemany(
                            "INSERT INTO role_permissions (role, permission) VALUES ($1, $2)",
                            [(name, p) for p in sorted(perms)],
                        )
                        await conn.executemany(
                            "INSERT INTO role_menus (role, menu) VALUES ($1, $2)",
                            [(name, m) for m in default_menus[name]],
                        )
            return list(
                await conn.fetch(
                    "SELECT r.name, r.description, r.builtin,"
                    " (SELECT string_agg(permission, ',') FROM role_permissions p WHERE p.role = r.name) AS perms,"
                    " (SELECT string_agg(menu, ',') FROM role_menus m WHERE m.role = r.name) AS menus"
                    " FROM roles r ORDER BY r.name"
                )
            )

        rows = await self.db.run(op)
        return [
            RoleRow(
                r["name"], r["description"], r["builtin"],
                frozenset(filter(None, (r["perms"] or "").split(","))),
                tuple(sorted(filter(None, (r["menus"] or "").split(",")))),
            )
            for r in rows
        ]

    async def put(self, name: str, description: str, permissions: Sequence[str], menus: Sequence[str]) -> None:
        """Create or replace one role's description, permission set and menus, in one transaction."""

        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                exists = await conn.fetchval("SELECT 1 FROM roles WHERE name = $1 FOR UPDATE", name)
                if exists:
                    await conn.execute("UPDATE roles SET description = $2 WHERE name = $1", name, description)
                else:
                    await conn.execute("INSERT INTO roles (name, description) VALUES ($1, $2)", name, description)
                await conn.execute("DELETE FROM role_permissions WHERE role = $1", name)
                await conn.execute("DELETE FROM role_menus WHERE role = $1", name)
                await conn.executemany(
                    "INSERT INTO role_permissions (role, permission) VALUES ($1, $2)", [(name, p) for p in permissions]
                )
                await conn.executemany(
                    "INSERT INTO role_menus (role, menu) VALUES ($1, $2)", [(name, m) for m in menus]
                )

        await self.db.run(op)

"""Admin-managed roles: permission sets and menus, kept in the database, cached in memory."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import asyncpg

from carehub.storage.db import Database

from .permissions import ALL_PERMISSIONS, MENUS, PERMISSIONS

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


class RoleRefused(Exception):
    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclasses.dataclass(frozen=True)
class Role:
    name: str
    description: str
    builtin: bool
    permissions: frozenset[str]
    menus: tuple[str, ...]


class RoleTable:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.roles: dict[str, Role] = {}

    @property
    def permissions(self) -> dict[str, frozenset[str]]:
        return {name: role.permissions for name, role in self.roles.items()}

    async def load(self) -> None:
        """Copy the built-in roles in on first start, then read every role."""

        async def op(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            async with conn.transaction():
                await conn.execute("LOCK TABLE roles IN EXCLUSIVE MODE")
                if not await conn.fetchval("SELECT count(*) FROM roles"):
                    for name, perms in PERMISSIONS.items():
                        await conn.execute(
                            "INSERT INTO roles (name, description, builtin) VALUES ($1, $2, true)", name, name
                        )
                        await conn.executemany(
                            "INSERT INTO role_permissions (role, permission) VALUES ($1, $2)",
                            [(name, p) for p in sorted(perms)],
                        )
                        await conn.executemany(
                            "INSERT INTO role_menus (role, menu) VALUES ($1, $2)", [(name, m) for m in MENUS[name]]
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
        self.roles = {
            r["name"]: Role(
                r["name"], r["description"], r["builtin"],
                frozenset(filter(None, (r["perms"] or "").split(","))),
                tuple(sorted(filter(None, (r["menus"] or "").split(",")))),
            )
            for r in rows
        }

    async def put(self, name: str, description: str, permissions: Iterable[str], menus: Iterable[str]) -> Role:
        """Create or replace a role's permission set and menus."""
        perms = frozenset(permissions)
        if not name or len(name) > 40 or not set(name) <= _NAME_CHARS:
            raise RoleRefused("role names are 1-40 characters of a-z, 0-9, _ and -")
        unknown = perms - ALL_PERMISSIONS
        if unknown:
            raise RoleRefused(f"unknown permissions {sorted(unknown)}; known: {sorted(ALL_PERMISSIONS)}")
        if name == "admin" and not {"admin.roles", "admin.accounts"} <= perms:
            raise RoleRefused("the admin role must keep admin.roles and admin.accounts (or nobody could undo it)", 409)
        menu_list = sorted(set(menus))
        if any(not m or len(m) > 60 for m in menu_list):
            raise RoleRefused("menu names are 1-60 characters")

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
                    "INSERT INTO role_permissions (role, permission) VALUES ($1, $2)",
                    [(name, p) for p in sorted(perms)],
                )
                await conn.executemany(
                    "INSERT INTO role_menus (role, menu) VALUES ($1, $2)", [(name, m) for m in menu_list]
                )

        await self.db.run(op)
        await self.load()
        return self.roles[name]

    def menus_for(self, roles: Iterable[str]) -> list[str]:
        seen: set[str] = set()
        for role in roles:
            if role in self.roles:
                seen.update(self.roles[role].menus)
        return sorted(seen)

"""Admin-managed roles: permission sets and menus, kept in the database, cached in memory."""

from __future__ import annotations

from collections.abc import Iterable

from carehub.storage.identity.roles import RoleRow, RoleStore

from .errors import RoleRefused
from .permissions import ALL_PERMISSIONS, MENUS, PERMISSIONS

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")

#: a role as this node knows it (name, description, builtin, permissions, menus)
Role = RoleRow


class RoleTable:
    def __init__(self, store: RoleStore) -> None:
        self.store = store
        self.roles: dict[str, Role] = {}

    @property
    def permissions(self) -> dict[str, frozenset[str]]:
        return {name: role.permissions for name, role in self.roles.items()}

    async def load(self) -> None:
        """Copy the built-in roles in on first start, then read every role."""
        self.roles = {role.name: role for role in await self.store.load(PERMISSIONS, MENUS)}

    async def put(self, name: str, description: str, permissions: Iterable[str], menus: Iterable[str]) -> Role:
        """Create or replace a role's permission set and menus."""
        perms = frozenset(permissions)
        if not name or len(name) > 40 or not set(name) <= _NAME_CHARS:
            raise RoleRefused("role names are 1-40 characters of a-z, 0-9, _ and -")
        unknown = perms - ALL_PERMISSIONS
        if unknown:
            raise RoleRefused(f"unknown permissions {sorted(unknown)}; known: {sorted(ALL_PERMISSIONS)}")
        if name == "admin" and not {"admin.roles", "admin.accounts"} <= perms:
            raise RoleRefused(
                "the admin role must keep admin.roles and admin.accounts (or nobody could undo it)", code="refused"
            )
        menu_list = sorted(set(menus))
        if any(not m or len(m) > 60 for m in menu_list):
            raise RoleRefused("menu names are 1-60 characters")
        await self.store.put(name, description, sorted(perms), menu_list)
        await self.load()
        return self.roles[name]

    def menus_for(self, roles: Iterable[str]) -> list[str]:
        seen: set[str] = set()
        for role in roles:
            if role in self.roles:
                seen.update(self.roles[role].menus)
        return sorted(seen)

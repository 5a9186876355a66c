"""Roles own permission sets; every route and WebSocket operation names the permission it needs.

Kept as data so the identity issue can move it into admin-managed tables without touching the
routes (they only ever ask ``principal.can(permission)``).
"""

from __future__ import annotations

from typing import Literal

Permission = Literal[
    "account.self",  # read own account, call own actors
    "directory.read",
    "actor.call",
    "topic.publish",
    "admin.accounts",
    "admin.verify",
    "admin.audit",
    "ops.view",
    "ops.manage",
]

ROLES = ("patient", "doctor", "pharmacist", "admin", "ops", "partner")

PERMISSIONS: dict[str, frozenset[str]] = {
    "patient": frozenset({"account.self", "directory.read", "actor.call"}),
    "doctor": frozenset({"account.self", "directory.read", "actor.call"}),
    "pharmacist": frozenset({"account.self", "directory.read", "actor.call"}),
    "admin": frozenset(
        {"account.self", "directory.read", "actor.call", "topic.publish", "admin.accounts", "admin.verify",
         "admin.audit"}
    ),
    "ops": frozenset({"account.self", "directory.read", "actor.call", "topic.publish", "ops.view", "ops.manage"}),
    "partner": frozenset({"directory.read", "topic.publish"}),
}


def role_permissions(roles: frozenset[str]) -> frozenset[str]:
    perms: set[str] = set()
    for role in roles:
        perms |= PERMISSIONS.get(role, frozenset())
    return frozenset(perms)


def may_subscribe(roles: frozenset[str], account_id: str, topic: str) -> bool:
    """Topics: ``ops`` (ops dashboard), ``broadcast/<name>`` (hall screens, announcements)."""
    if topic == "ops":
        return "ops.view" in role_permissions(roles)
    return topic.startswith("broadcast/") and len(topic) <= 200


def may_publish(roles: frozenset[str], topic: str) -> bool:
    return topic.startswith("broadcast/") and "topic.publish" in role_permissions(roles)

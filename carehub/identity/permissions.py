"""Roles own permission sets; every route and WebSocket operation names the permission it needs.

:data:`PERMISSIONS` and :data:`MENUS` are the built-in defaults, copied into the ``roles`` tables
at first start; from then on admins manage roles, their permissions and menus
(:class:`carehub.identity.roles.RoleTable`). Routes only ever ask ``principal.can(permission)``.
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
    "admin.roles",
    "patient.read",  # a patient's medical data, within a care relationship
    "admin.directory",  # departments, doctors, hospital content, price list, triage rules
    "admin.schedule",  # slot rules, rosters and their approval, session changes
    "admin.bookings",  # booking records, no-show rules and the blacklist
    "clinic.queue",  # a doctor's own sessions: call, skip, recall, mark seen; roster requests
    "booking.partner",  # third-party booking channels (provincial platform, kiosks)
    "admin.messaging",  # notice templates, outside channels, partners' publish permissions (MSG-1)
]

#: every permission a role may be given
ALL_PERMISSIONS = frozenset(Permission.__args__)  # type: ignore[attr-defined]

ROLES = ("patient", "doctor", "pharmacist", "admin", "ops", "partner")

PERMISSIONS: dict[str, frozenset[str]] = {
    "patient": frozenset({"account.self", "directory.read", "actor.call"}),
    "doctor": frozenset({"account.self", "directory.read", "actor.call", "patient.read", "clinic.queue"}),
    "pharmacist": frozenset({"account.self", "directory.read", "actor.call"}),
    "admin": frozenset(
        {"account.self", "directory.read", "actor.call", "topic.publish", "admin.accounts", "admin.verify",
         "admin.audit", "admin.roles", "admin.directory", "admin.schedule", "admin.bookings", "admin.messaging"}
    ),
    "ops": frozenset({"account.self", "directory.read", "actor.call", "topic.publish", "ops.view", "ops.manage"}),
    "partner": frozenset({"directory.read", "topic.publish", "booking.partner"}),
}


#: menus each built-in role sees in the web clients
MENUS: dict[str, tuple[str, ...]] = {
    "patient": ("home", "booking", "consultation", "payments", "family", "messages"),
    "doctor": ("workbench", "consultations", "patients", "schedule", "messages"),
    "pharmacist": ("review", "dispensing", "messages"),
    "admin": ("accounts", "roles", "verifications", "audit", "directory", "statistics"),
    "ops": ("dashboard", "actors", "alarms"),
    "partner": (),
}


def role_permissions(roles: frozenset[str], table: dict[str, frozenset[str]] | None = None) -> frozenset[str]:
    source = PERMISSIONS if table is None else table
    perms: set[str] = set()
    for role in roles:
        perms |= source.get(role, frozenset())
    return frozenset(perms)


def may_subscribe(permissions: frozenset[str], account_id: str, topic: str) -> bool:
    """Topics: ``ops`` (ops dashboard), ``broadcast/<name>`` (hall screens, announcements),
    ``queue/<session>`` (live positions of a waiting line)."""
    if topic == "ops":
        return "ops.view" in permissions
    if topic.startswith("queue/"):
        # a session's waiting line: positions by opaque booking id, no names (OUT-12)
        return "account.self" in permissions and len(topic) <= 200
    return topic.startswith("broadcast/") and len(topic) <= 200


def may_publish(permissions: frozenset[str], topic: str) -> bool:
    return topic.startswith("broadcast/") and "topic.publish" in permissions

"""Who is calling: accounts, roles, permissions and session tokens.

Minimal on purpose (hub foundation); the identity-and-security issue adds SMS sign-in, staff
two-factor, partner signatures and real-name verification behind the same ``Identity`` and
``Principal`` surface, so callers do not change.
"""

from .permissions import PERMISSIONS, ROLES, Permission, may_publish, may_subscribe, role_permissions
from .service import AuthFailed, Identity, Principal

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "AuthFailed",
    "Identity",
    "Permission",
    "Principal",
    "may_publish",
    "may_subscribe",
    "role_permissions",
]

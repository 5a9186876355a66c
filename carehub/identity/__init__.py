"""Who is calling: accounts, roles, permissions and session tokens.

Minimal on purpose (hub foundation); the identity-and-security issue adds SMS sign-in, staff
two-factor, partner signatures and real-name verification behind the same ``Identity`` and
``Principal`` surface, so callers do not change.
"""

from .permissions import PERMISSIONS, ROLES, Permission, may_publish, may_subscribe, role_permissions
from .ratelimit import RateLimited, RateLimiter
from .service import (
    STAFF_ROLES,
    VERIFIED,
    AccountLocked,
    AuthFailed,
    Identity,
    IdentitySettings,
    NewAccount,
    Principal,
    SmsUnavailable,
    normalise_phone,
    password_problem,
)

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "STAFF_ROLES",
    "VERIFIED",
    "AccountLocked",
    "AuthFailed",
    "Identity",
    "IdentitySettings",
    "NewAccount",
    "Permission",
    "Principal",
    "RateLimited",
    "RateLimiter",
    "SmsUnavailable",
    "may_publish",
    "may_subscribe",
    "normalise_phone",
    "password_problem",
    "role_permissions",
]

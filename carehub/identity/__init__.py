"""Who is calling, and what they may see: the identity domain (docs/security.md).

- :mod:`.service` ``Identity``: accounts, sign-in (patients by SMS code, staff by password and
  TOTP, with per-account-and-address throttling), session tokens, ``Principal``.
- :mod:`.roles` ``RoleTable``: admin-managed roles, permission sets and menus;
  :mod:`.permissions` the built-in defaults.
- :mod:`.patients` ``Patients``: real-name verification and family members (ME-1, ME-2);
  :mod:`.idcard` GB 11643 ID numbers; :mod:`.masking` how personal data is shown.
- :mod:`.care` ``CareAccess``: who may read whose medical data; :mod:`.partners` HMAC-SM3 signed
  partner requests (SCH-9); :mod:`.signatures` SM2 signatures of doctors and pharmacists.
- :mod:`.errors`: what identity refuses, by code (no HTTP status).

SQL lives in :mod:`carehub.storage.identity`; every object is built once in :mod:`carehub.app`.
"""

from .errors import AccountLocked, AuthFailed, IdentityInvalid, LoginTaken, RateLimited, SmsUnavailable
from .permissions import PERMISSIONS, ROLES, Permission, may_publish, may_subscribe, role_permissions
from .ratelimit import RateLimiter
from .service import (
    STAFF_ROLES,
    VERIFIED,
    Identity,
    IdentitySettings,
    NewAccount,
    Principal,
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
    "IdentityInvalid",
    "IdentitySettings",
    "LoginTaken",
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

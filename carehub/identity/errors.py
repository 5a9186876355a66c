"""What identity refuses: sign-in, patients, partners, roles, signatures. Codes, never HTTP statuses.

::

    CareHubError (carehub.errors)
    ├── AuthFailed          "auth_failed": wrong login, password, TOTP or SMS code; bad token
    ├── AccountLocked       "account_locked": too many failures; ``retry_after`` seconds until the lock ends
    ├── RateLimited         "rate_limited": too many attempts; ``retry_after`` seconds until the next one
    ├── SmsUnavailable      "sms_unavailable": no SMS gateway, or it refused to send
    ├── LoginTaken          "login_taken": a new account's login or phone is already used
    ├── IdentityInvalid     "invalid": an account, phone or key request breaks a rule of its own
    ├── InvalidIdNumber     "invalid_id_number": not a GB 11643 resident ID number (the message says why)
    ├── PatientRefused      a family-member or verification rule; ``code`` says which
    │   │                   (consent_pending, verification_required, duplicate, mismatch, family_limit ...)
    │   ├── PatientNotFound         "not_found": no such person on this account
    │   └── VerificationUnavailable "verification_unavailable": the face check cannot be used now
    ├── PartnerRefused      a partner's signed request is refused; ``code`` says why
    │                       (unsigned, stale_timestamp, bad_nonce, unknown_key, bad_signature,
    │                       operation_not_allowed, replayed, rate_limited)
    ├── RoleRefused         "invalid" (a bad role) or "refused" (the admin role must keep its rights)
    └── NoSigningKey        "no_signing_key": a signer without a key pair

``retry_after`` (whole seconds) is read by :func:`carehub.http.errors.from_error`, which sends it
as the ``Retry-After`` header. The HTTP status of every code is in :data:`carehub.http.errors.STATUS`.
"""

from __future__ import annotations

import datetime as dt
import math

from carehub.errors import CareHubError, Invalid, NotFound
from carehub.storage.identity.accounts import LoginTaken

__all__ = [
    "AccountLocked",
    "AuthFailed",
    "IdentityInvalid",
    "InvalidIdNumber",
    "LoginTaken",
    "NoSigningKey",
    "PartnerRefused",
    "PatientNotFound",
    "PatientRefused",
    "RateLimited",
    "RoleRefused",
    "SmsUnavailable",
    "VerificationUnavailable",
]


class AuthFailed(CareHubError):
    """Sign-in or token check failed; the message is safe to show."""

    code = "auth_failed"


class AccountLocked(CareHubError):
    """Password sign-in is locked until ``until`` (for this account, or for this account from one address)."""

    code = "account_locked"

    def __init__(self, until: dt.datetime, *, now: dt.datetime | None = None) -> None:
        local = until.astimezone(dt.timezone(dt.timedelta(hours=8)))
        super().__init__(f"连续登录失败次数过多，账号已锁定至 {local:%H:%M} (account locked)")
        self.until = until
        seconds = (until - (now or dt.datetime.now(dt.UTC))).total_seconds()
        self.retry_after = max(1, int(seconds))


class RateLimited(CareHubError):
    """Too many attempts; ``retry_after`` seconds until the next one is allowed."""

    code = "rate_limited"

    def __init__(self, retry_after: float, message: str) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class SmsUnavailable(CareHubError):
    """The SMS gateway is not configured or refused to send."""

    code = "sms_unavailable"


class IdentityInvalid(Invalid):
    """An account, phone number or partner key request that breaks a rule of its own."""


class InvalidIdNumber(Invalid):
    """The number is not a valid resident ID number; the message (Chinese) says why."""

    code = "invalid_id_number"


class PatientRefused(CareHubError):
    """A request about a person that the rules refuse; ``code`` says which rule."""


class PatientNotFound(PatientRefused, NotFound):
    code = "not_found"

    def __init__(self, message: str = "没有这个就诊人 (no such person on this account)") -> None:
        super().__init__(message)


class VerificationUnavailable(PatientRefused):
    code = "verification_unavailable"


class PartnerRefused(CareHubError):
    """A partner's signed request is refused; ``retry_after`` is set for ``rate_limited``."""

    def __init__(self, message: str, *, code: str, retry_after: int | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class RoleRefused(CareHubError):
    """A role change the rules refuse: ``invalid`` (a bad name or permission) or ``refused``."""

    code = "invalid"


class NoSigningKey(CareHubError):
    """The signer has no key pair (every doctor and pharmacist is given one when created)."""

    code = "no_signing_key"

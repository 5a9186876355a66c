"""The one place where errors become HTTP statuses. Bodies: ``{"error": {"code", "message"}}``.

Domain errors (:class:`carehub.errors.CareHubError`) and hub errors (:class:`carehub.hub.HubError`)
carry a stable ``code`` and no status; :data:`STATUS` maps every code either can carry to the
status its HTTP route answers with (a ``/ws`` command's reply carries the same status). A code
missing here is a bug: ``tests/http/test_error_codes.py`` finds every code the package raises.
"""

from __future__ import annotations

from typing import Any

from carehub.errors import CareHubError
from carehub.hub import HubError

#: error code -> HTTP status, for every code a domain, an actor or the hub may raise
STATUS: dict[str, int] = {
    # the hub (carehub.hub.errors)
    "hub_error": 500,
    "refused": 409,
    "invalid_transition": 409,
    "unknown_actor": 404,
    "bad_message": 400,
    "mailbox_full": 429,
    "actor_crashed": 500,
    "actor_quarantined": 503,
    "timeout": 504,
    "storage_unavailable": 503,
    "version_conflict": 503,
    "hub_stopping": 503,
    "already_handled": 409,
    "unknown_recipient": 422,
    # generic domain codes (carehub.errors)
    "not_found": 404,
    "invalid": 422,
    "forbidden": 403,
    "unavailable": 503,
    "not_configured": 503,
    "conflict": 409,
    "busy": 503,
    # outpatient: bookings, payment, the visit day, schedule
    "blacklisted": 403,
    "verification_required": 403,
    "bad_code": 422,
    "outside_window": 409,
    "wrong_day": 409,
    "full": 409,
    "duplicate_booking": 409,
    "invalid_state": 409,
    "already_decided": 409,
    "payment_unknown": 503,
    "payment_refused": 409,
    "payment_unavailable": 503,
    "payment_not_offered": 409,
    "roster_incomplete": 409,
    "payment_timeout": 504,
    "slot_taken": 409,
    "session_over": 409,
    "session_cancelled": 409,
    "not_open": 409,
    "not_started": 409,
    "too_late": 409,
    "unpaid": 409,
    "not_paid": 409,
    "already_paid": 409,
    "amount_mismatch": 409,
    "queue_empty": 409,
    "mismatch": 409,
    # identity: accounts, patients, partners
    "unauthenticated": 401,
    "auth_failed": 401,
    "account_locked": 423,
    "rate_limited": 429,
    "sms_unavailable": 503,
    "login_taken": 409,
    "consent_pending": 409,
    "duplicate": 409,
    "family_limit": 409,
    "invalid_id_number": 422,
    "guardian_consent_required": 422,
    "verification_unavailable": 503,
    "not_in_your_care": 404,
    "bad_key": 422,
    "key_ring_mismatch": 503,
    "integrity_error": 500,
    "no_signing_key": 500,
    # partners' signed requests (carehub.identity.partners)
    "unsigned": 401,
    "stale_timestamp": 401,
    "bad_nonce": 401,
    "unknown_key": 401,
    "bad_signature": 401,
    "replayed": 401,
    "operation_not_allowed": 403,
    # chat
    "empty_message": 422,
    "message_too_long": 422,
    # message center (carehub.messaging, carehub.actors.notifier)
    "messaging_refused": 409,
    "bad_template": 422,
    "unknown_notice_kind": 404,
    "publish_not_allowed": 403,
    "notice_not_found": 404,
    "notice_sending": 409,
    "no_channel": 409,
    "bad_preferences": 422,
    # the publish API (carehub.messaging.publishing, carehub/http/rest/open_messages.py)
    "recipient_not_found": 404,
    "idempotency_conflict": 409,
    "wrong_audience": 422,
    "too_many_messages": 422,
    # uploads and requests
    "unsupported_type": 415,
    "too_large": 413,
    "bad_request": 400,
    # the web layer itself
    "database_unavailable": 503,
    "migrations_pending": 503,
    "not_quarantined": 404,
    "internal_error": 500,
}


def status_of(code: str) -> int:
    """The HTTP status for an error code (409 for a refusal nobody listed: see the module docstring)."""
    return STATUS.get(code, 409)


class ApiError(Exception):
    """An HTTP answer that is not a success: status, code, message (and headers such as ``Retry-After``)."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.retryable = retryable

    def body(self) -> dict[str, dict[str, Any]]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.retryable:
            error["retryable"] = True
        return {"error": error}


def from_error(err: HubError | CareHubError, *, headers: dict[str, str] | None = None) -> ApiError:
    """The HTTP answer to a hub or domain error, by its code.

    An error with a ``retry_after`` (whole seconds; e.g. ``AccountLocked``, ``RateLimited``) is
    answered with that ``Retry-After`` header; a retryable 503 without one gets a short default.
    """
    status = status_of(err.code)
    retry_after = getattr(err, "retry_after", None)
    if headers is None and retry_after:
        headers = {"Retry-After": str(int(retry_after))}
    if headers is None and err.retryable and status == 503:
        headers = {"Retry-After": "5" if err.code == "storage_unavailable" else "1"}
    return ApiError(status, err.code, err.message, headers=headers, retryable=err.retryable)


def from_hub(err: HubError) -> ApiError:
    """:func:`from_error` for a hub error (kept for the routes that only ask actors)."""
    return from_error(err)

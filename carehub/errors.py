"""The domain error vocabulary: what a hospital rule refused, with a stable code and no HTTP status.

::

    CareHubError            code, message, retryable (the same three as carehub.hub.HubError)
    ├── NotFound            "not_found": no such thing, or not one this caller may see
    ├── Invalid             "invalid": the input breaks a rule of its own (a field, a range)
    ├── Forbidden           "forbidden": the caller may not do this to this thing
    ├── Conflict            "conflict": the change clashes with what is stored (try again after a refresh)
    ├── Unavailable         "unavailable" (retryable): a dependency is down; nothing was changed
    └── NotConfigured       "not_configured": the outside system this needs is not set up here

Domain packages raise these, or a subclass of their own where a caller must tell them apart
(``BookingRefused``, ``PatientRefused`` ...), each with the ``code`` that says what happened. The
code alone decides the HTTP status, in one table (:mod:`carehub.http.errors`); the same code is
the ``error.code`` a client sees over HTTP and on ``/ws``.
"""

from __future__ import annotations

from typing import ClassVar


class CareHubError(Exception):
    """Base of every domain error. ``message`` is shown to people (Chinese first, English after)."""

    code: ClassVar[str] = "refused"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]  # an instance may narrow its class's code
        if retryable is not None:
            self.retryable = retryable  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class NotFound(CareHubError):
    code = "not_found"


class Invalid(CareHubError):
    code = "invalid"


class Forbidden(CareHubError):
    code = "forbidden"


class Conflict(CareHubError):
    code = "conflict"


class Unavailable(CareHubError):
    code = "unavailable"
    retryable = True


class NotConfigured(CareHubError):
    """The outside system this step needs (payment gateway, HIS ...) is not configured."""

    code = "not_configured"


__all__ = ["CareHubError", "Conflict", "Forbidden", "Invalid", "NotConfigured", "NotFound", "Unavailable"]

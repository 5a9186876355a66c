"""Outpatient's domain errors: what a booking, bill or schedule rule refused, by code (no HTTP status).

::

    CareHubError (carehub.errors)
    ├── BookingRefused      booking, check-in, the blacklist ("blacklisted", "bad_code", "busy" ...)
    ├── BillRefused         bills, bill orders, the test catalogue ("already_paid", "payment_unknown" ...)
    └── ScheduleRefused     slot rules and rosters ("invalid", "already_decided", "roster_incomplete" ...)

The slot pool's own refusals are :class:`carehub.hub.Refusal` (a hub error) with the same kind of
codes; :data:`carehub.http.errors.STATUS` gives every code its HTTP status, in one place.
"""

from __future__ import annotations

from carehub.errors import CareHubError, NotConfigured


class BookingRefused(CareHubError):
    """A booking-side rule refused (``code`` says which); default ``refused``."""


class BillRefused(CareHubError):
    """A rule about bills or bill orders refused; default ``refused``."""


class ScheduleRefused(CareHubError):
    """A slot rule or roster is not acceptable; default ``invalid`` (the input breaks a rule)."""

    code = "invalid"

__all__ = ["BillRefused", "BookingRefused", "NotConfigured", "ScheduleRefused"]

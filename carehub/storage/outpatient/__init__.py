"""Outpatient's repositories: one module per aggregate, each method one ``Database.run`` crossing.

=================  =========================================================================
module             tables
=================  =========================================================================
``bookings``       ``bookings``, ``payment_orders`` (read: the slot pools' projection)
``sessions``       ``clinic_sessions``, ``doctors``, ``queue_calls`` (read: search, cards, hall screens)
``blacklist``      ``blacklist``, ``no_shows``, ``no_show_rule``
``schedule``       ``slot_rules``, ``rosters``
``bills``          ``bills``, ``bill_orders``, ``bill_order_items``, ``test_catalogue``, ``test_orders``
=================  =========================================================================

The slot pool and waiting queue actors write their projection tables through the hub (a
:class:`carehub.hub.Record` committed with their state); these stores only read those.
"""

from __future__ import annotations

from .bills import BillStore
from .blacklist import BlacklistStore
from .bookings import BookingStore
from .schedule import ScheduleStore
from .sessions import SessionStore

__all__ = ["BillStore", "BlacklistStore", "BookingStore", "ScheduleStore", "SessionStore"]

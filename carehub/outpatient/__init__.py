"""Outpatient services around the slot-pool and queue actors: schedule, booking, payment, visit day.

The actors (:mod:`carehub.actors.slot_pool`, :mod:`carehub.actors.waiting_queue`) decide; this
package is their I/O shell: it reads and writes what needs storage or an outside system, then
asks the actors. :class:`Outpatient` bundles it for the HTTP routes.
"""

from __future__ import annotations

import dataclasses

from carehub.channels.his import HisClient
from carehub.channels.payment import WeChatPay

from .bills import BillRefused, Bills
from .booking import Bookings
from .errors import BookingRefused
from .schedule import Schedule, ScheduleError


@dataclasses.dataclass
class Outpatient:
    schedule: Schedule
    bookings: Bookings
    pay: WeChatPay | None
    his: HisClient | None
    bills: Bills


__all__ = ["BillRefused", "Bills", "BookingRefused", "Bookings", "Outpatient", "Schedule", "ScheduleError"]

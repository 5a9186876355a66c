"""Outpatient services around the slot-pool and queue actors: schedule, booking, payment, visit day.

The actors (:mod:`carehub.actors.slot_pool`, :mod:`carehub.actors.waiting_queue`) decide; this
package is their I/O shell: it reads and writes what needs storage (through the repositories of
:mod:`carehub.storage.outpatient`) or an outside system, then asks the actors. :class:`Outpatient`
bundles it for the HTTP routes; its errors are :mod:`carehub.outpatient.errors`.
"""

from __future__ import annotations

import dataclasses

from carehub.channels.his import HisClient
from carehub.channels.payment import WeChatPay
from carehub.config import Config

from .bills import Bills
from .booking import Bookings
from .errors import BillRefused, BookingRefused, NotConfigured, ScheduleRefused
from .schedule import Schedule


@dataclasses.dataclass(frozen=True)
class Hospital:
    """The hospital as payment orders name it (from :class:`carehub.config.Config`, ``hospital_*``)."""

    city_id: str
    name: str
    med_inst_no: str
    #: the payer of a request that names none (the demo's; empty in a real deployment)
    default_openid: str

    @classmethod
    def from_config(cls, config: Config) -> Hospital:
        return cls(config.hospital_city_id, config.hospital_name, config.hospital_med_inst_no,
                   config.pay_default_openid)


@dataclasses.dataclass
class Outpatient:
    schedule: Schedule
    bookings: Bookings
    pay: WeChatPay | None
    his: HisClient | None
    bills: Bills
    hospital: Hospital = dataclasses.field(default_factory=lambda: Hospital.from_config(Config()))


__all__ = [
    "BillRefused", "Bills", "BookingRefused", "Bookings", "Hospital", "NotConfigured", "Outpatient", "Schedule",
    "ScheduleRefused",
]

"""The hall screens of a department (OUT-12): the latest calls, and each room's line.

Masked names only (``张*``, as the queue actor keeps them): a hall screen is read by everyone in
the room.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from carehub.actors.slot_pool import BEIJING
from carehub.actors.waiting_queue import GetQueue
from carehub.hub import Hub

from .booking import Bookings

#: how many of the line a screen shows after the one being seen
NEXT_UP = 3


class HallScreens:
    def __init__(self, bookings: Bookings, hub: Hub) -> None:
        self.bookings = bookings
        self.hub = hub

    async def calls(self, department_id: str, limit: int) -> list[dict[str, Any]]:
        return await self.bookings.calls(department_id, limit)

    async def rooms(self, department_id: str) -> list[dict[str, Any]]:
        """Each session of the department today with someone in line: who is seen, who is next."""
        today = dt.datetime.now(BEIJING).date()
        sessions = await self.bookings.sessions(department_id=department_id, doctor_id=None, name=None,
                                                specialty=None, day_from=today, days=1)
        found = []
        for s in sessions:
            line = await self.hub.ask(f"queue/{s['session_id']}", GetQueue())
            if line["calling"] is None and not line["waiting"]:
                continue
            found.append({"room": s["room"], "doctor_name": s["doctor_name"],
                          "calling": None if line["calling"] is None else line["calling"]["label"],
                          "next": [w["label"] for w in line["waiting"][:NEXT_UP]], "waiting": len(line["waiting"])})
        return found


__all__ = ["HallScreens"]

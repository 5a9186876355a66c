"""The hall screens (``/display/<department>``): a long poll for a department's calls (OUT-12).

A hall screen signs in as nobody, so it cannot subscribe to ``broadcast/display/<department>``
over ``/ws`` (topics need an account). Instead it asks ``GET .../calls/wait?after=<at>``: the
answer comes at once when there is a call newer than ``after``, otherwise as soon as the waiting
queue publishes one on that topic (the route listens to the topic on this node), or after
``wait`` seconds with the same calls. The screen asks again at once, so a call reaches it within
one round trip; after a restart its next request simply reaches the new process. A draining
node (restart) answers its waiting screens within a quarter of a second.

Each answer also carries ``rooms``: for every session of the department today with someone in
line, who is being seen and the next few (masked names, as the calls carry them).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import msgspec
import trio
from quart import request

from carehub.hub import Hub
from carehub.hub.topics import Outbound
from carehub.outpatient import Outpatient
from carehub.outpatient.hall import HallScreens

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator
from .args import int_arg

DEPARTMENT_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class DisplayCall(msgspec.Struct):
    label: str
    room: str
    kind: str
    at: str
    text: str


class DisplayRoom(msgspec.Struct):
    room: str
    doctor_name: str
    #: the masked name being seen now, if anyone
    calling: str | None
    #: the next few in line
    next: list[str]
    waiting: int


class DisplayCallsView(msgspec.Struct):
    department_id: str
    topic: str
    calls: list[DisplayCall]
    rooms: list[DisplayRoom]


class _Wake:
    """A topic subscriber that only notes that something was published."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = trio.Event()

    def offer(self, item: Outbound) -> None:
        self.event.set()


def _after_arg() -> dt.datetime | None:
    raw = request.args.get("after")
    if not raw:
        return None
    try:
        at = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_request", "after 应为 ISO 时间 (query parameter 'after')") from None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _newer(calls: list[dict[str, Any]], after: dt.datetime | None) -> bool:
    return after is None or (bool(calls) and dt.datetime.fromisoformat(calls[0]["at"]) > after)


def register(r: RouteDecorator, *, outpatient: Outpatient, hub: Hub, draining: Callable[[], bool]) -> None:
    hall = HallScreens(outpatient.bookings, hub)

    @r("GET", "/api/v1/display/<department_id>/calls/wait",
       summary="Hall screen: the latest calls once there is one newer than `after` (long poll, at most `wait` s)",
       permission=None, tag="queue", query=("after", "wait", "limit"), response=DisplayCallsView)
    async def wait_calls(ctx: RequestContext, department_id: str) -> Any:
        if not DEPARTMENT_ID.fullmatch(department_id):  # departments.id: varchar(32), letters and digits
            raise ApiError(404, "not_found", "没有这个科室 (no such department)")
        after = _after_arg()
        wait = int_arg("wait", 20, 0, 25)
        limit = int_arg("limit", 10, 1, 50)
        topic = f"broadcast/display/{department_id}"
        wake = _Wake()
        hub.topics.subscribe(topic, wake)  # before reading, so a call committed meanwhile wakes us
        try:
            calls = await hall.calls(department_id, limit)
            if not _newer(calls, after):
                with trio.move_on_after(wait):
                    while not wake.event.is_set() and not draining():
                        with trio.move_on_after(0.25):
                            await wake.event.wait()
                calls = await hall.calls(department_id, limit)
        finally:
            hub.topics.unsubscribe(topic, wake)
        rooms = await hall.rooms(department_id)
        return {"department_id": department_id, "topic": topic, "calls": calls, "rooms": rooms}

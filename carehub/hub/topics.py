"""Topics: best-effort fan-out of events to whoever is subscribed right now.

A topic is a name (``queue/cardio-am``, ``ops``); subscribers are live connections. Nothing
here is stored: what must reach a person goes through their delivery stream instead. A
published event is built once and shared by every subscriber, so each connection encodes it
at most once per wire format (see :class:`Outbound`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, Protocol


class Priority(enum.IntEnum):
    #: May be dropped or coalesced for a slow consumer (positions, dashboards).
    LOW = 0
    #: Never dropped while the connection lives (replies, stream deliveries, errors).
    CRITICAL = 1


@dataclasses.dataclass(eq=False, slots=True)
class Outbound:
    """A frame on its way to one or more connections."""

    frame: Mapping[str, Any]
    priority: Priority = Priority.CRITICAL
    coalesce: str | None = None
    #: Encoded forms by codec name, filled lazily by the first connection of that codec.
    encoded: dict[str, bytes | str] = dataclasses.field(default_factory=dict)


class Subscriber(Protocol):
    def offer(self, item: Outbound) -> None:
        """Queue ``item`` without blocking (the subscriber applies its own buffer policy)."""
        ...


class Topics:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}
        self.published = 0
        self.fanned_out = 0

    def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        self._subscribers.setdefault(topic, set()).add(subscriber)

    def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        subs = self._subscribers.get(topic)
        if subs is not None:
            subs.discard(subscriber)
            if not subs:
                del self._subscribers[topic]

    def subscriber_count(self, topic: str) -> int:
        return len(self._subscribers.get(topic, ()))

    def topic_count(self) -> int:
        return len(self._subscribers)

    def publish(
        self, topic: str, type: str, body: Mapping[str, Any], *, coalesce: str | None = None,
        priority: Priority = Priority.LOW,
    ) -> int:
        """Offer an event to every current subscriber; returns how many there were."""
        subs = self._subscribers.get(topic)
        self.published += 1
        if not subs:
            return 0
        item = Outbound(
            {"op": "event", "topic": topic, "type": type, "body": body},
            priority=priority,
            coalesce=None if coalesce is None else f"{topic}\x00{coalesce}",
        )
        for sub in tuple(subs):
            sub.offer(item)
        self.fanned_out += len(subs)
        return len(subs)

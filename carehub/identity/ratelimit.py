"""Sliding-window rate limits per key (a phone, an IP, a partner), kept in this node's memory.

Several hub nodes each count on their own until the scale-out issue moves the counters to
Redis; the SMS provider's own per-number limits stay as the outer fence.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence

from .errors import RateLimited


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 200_000) -> None:
        self._clock = clock
        self._hits: dict[str, collections.deque[float]] = {}
        self._max_keys = max_keys

    def check(self, key: str, limits: Sequence[tuple[int, float]], message: str) -> None:
        """Raise :class:`RateLimited` if one more hit would break any ``(count, seconds)`` limit."""
        hits = self._hits.get(key)
        if not hits:
            return
        now = self._clock()
        longest = max(seconds for _, seconds in limits)
        while hits and hits[0] <= now - longest:
            hits.popleft()
        for count, seconds in limits:
            recent = [t for t in hits if t > now - seconds]
            if len(recent) >= count:
                raise RateLimited(recent[-count] + seconds - now, message)

    def hit(self, key: str) -> None:
        if len(self._hits) >= self._max_keys:
            self._hits.clear()  # memory bound; worst case a burst gets a fresh window
        self._hits.setdefault(key, collections.deque()).append(self._clock())

    def take(self, key: str, limits: Sequence[tuple[int, float]], message: str) -> None:
        self.check(key, limits, message)
        self.hit(key)

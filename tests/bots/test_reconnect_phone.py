"""How a bench phone waits before reconnecting: the ``bye``'s advice, else the welcome's bounds with jitter."""

from __future__ import annotations

import random

from carehub.bots.bench.reconnect import RECONNECT_MAX_MS, RECONNECT_MIN_MS, Phone


def test_a_phone_backs_off_within_min_and_a_doubling_ceiling_capped_at_max() -> None:
    phone = Phone("token", "phone-1")
    random.seed(7)
    for attempt in range(1, 12):
        ceiling = min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2**attempt) / 1000
        waits = [phone.backoff(attempt) for _ in range(200)]
        assert all(RECONNECT_MIN_MS / 1000 <= w <= ceiling for w in waits)
    assert max(phone.backoff(30) for _ in range(500)) > 0.8 * RECONNECT_MAX_MS / 1000


def test_a_phone_takes_the_welcomes_reconnect_bounds_and_stream_end() -> None:
    phone = Phone("token", "phone-1")
    phone.welcomed({"op": "welcome", "stream": {"first_seq": 1, "last_seq": 42, "resume_after": 42},
                    "reconnect": {"min_ms": 200, "max_ms": 800}})
    assert (phone.min_ms, phone.max_ms, phone.last_seq) == (200, 800, 42)
    assert all(0.2 <= phone.backoff(5) <= 0.8 for _ in range(100))


def test_a_phone_keeps_the_byes_advice_and_the_last_seq_it_was_delivered() -> None:
    phone = Phone("token", "phone-1")
    phone.on_frame(None, {"op": "deliver", "seq": 7, "id": "m7"}, 0.0)  # type: ignore[arg-type]
    phone.on_frame(None, {"op": "bye", "code": 1012, "reason": "restart", "reconnect_after_ms": 3100}, 0.0)  # type: ignore[arg-type]
    assert (phone.last_seq, phone.bye_ms) == (7, 3100)

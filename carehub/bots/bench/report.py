"""What the bench reports: one JSON line per result on stdout, progress on stderr, and the statistics."""

from __future__ import annotations

import array
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

#: the latency goal of the hub workloads (fanout, durable): p99 under 100 ms
GOAL_P99_MS = 100.0


def note(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """One result: one JSON line on stdout."""
    print(json.dumps(result, ensure_ascii=False), flush=True)


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (``q`` in 0..100)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def merge_samples(blobs: Sequence[bytes]) -> list[float]:
    values: list[float] = []
    for blob in blobs:
        arr = array.array("d")
        arr.frombytes(blob)
        values.extend(arr)
    values.sort()
    return values


def latency_fields(ordered: Sequence[float], prefix: str = "") -> dict[str, float | None]:
    return {
        f"{prefix}p50_ms": rounded(percentile(ordered, 50)),
        f"{prefix}p99_ms": rounded(percentile(ordered, 99)),
        f"{prefix}max_ms": rounded(ordered[-1] if ordered else None),
    }


def array_bytes(values: array.array[float]) -> bytes:
    """Samples as bytes, the cheapest way through a worker's pipe (:func:`merge_samples` reads them back)."""
    return values.tobytes()


def split(items: Sequence[Any], n: int) -> list[list[Any]]:
    """``items`` dealt round-robin into ``n`` parts (one per client process)."""
    return [list(items[i::n]) for i in range(n)]

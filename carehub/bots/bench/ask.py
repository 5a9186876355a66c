"""``ask``: the HTTP ask round trip (``POST /api/v1/call``) at a fixed, open-loop rate."""

from __future__ import annotations

import array
import collections
import time
from typing import TYPE_CHECKING, Any

import orjson
import trio

from .report import array_bytes, emit, latency_fields, merge_samples, percentile, rounded
from .wire import LeanHTTP
from .worker import WorkerBase

if TYPE_CHECKING:
    from .session import Bench


class AskCommands(WorkerBase):
    """A worker's side of ``ask``."""

    async def cmd_ask(self, calls: list[tuple[str, str]], rate: float, duration: float, warmup: float,
                      conns: int = 32) -> dict[str, Any]:
        """POST /api/v1/call at a fixed rate (open loop) over ``conns`` kept-alive HTTP/1.1
        connections; ``calls`` are ``(token, actor address)``. A request waits for a free
        connection (that wait is reported as send lag, not as latency)."""
        lat = array.array("d")
        lags = array.array("d")
        errors: collections.Counter[str] = collections.Counter()
        free_send, free = trio.open_memory_channel[LeanHTTP | None](conns)
        for _ in range(conns):
            free_send.send_nowait(None)  # opened on first use
        opened: list[LeanHTTP] = []

        async def one(k: int, due: float, record: bool, http: LeanHTTP | None) -> None:
            token, to = calls[k % len(calls)]
            body = orjson.dumps({"to": to, "type": "GetConversation", "body": {}})
            started = time.monotonic()
            try:
                if http is None or http.closed:
                    http = await LeanHTTP.open(self.host, self.port, self.src)
                    opened.append(http)
                status, _ = await http.post("/api/v1/call", body, f"Bearer {token}")
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError) as err:
                errors[type(err).__name__] += 1
                http = None
            else:
                elapsed = (time.monotonic() - started) * 1000.0
                if status != 200:
                    errors[str(status)] += 1
                elif record:
                    lat.append(elapsed)
                    lags.append((started - due) * 1000.0)
            free_send.send_nowait(http)

        async def phase(seconds: float, record: bool) -> None:
            t0 = time.monotonic() + 0.05
            async with trio.open_nursery() as nursery:
                for k in range(int(rate * seconds)):
                    due = t0 + k / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await trio.sleep(delay)
                    http = await free.receive()
                    nursery.start_soon(one, k, due, record, http)

        try:
            await phase(warmup, False)
            started = time.monotonic()
            await phase(duration, True)
            elapsed = time.monotonic() - started
        finally:
            for http in opened:
                await trio.aclose_forcefully(http.stream)
        return {"lat": array_bytes(lat), "lag": array_bytes(lags), "errors": dict(errors), "seconds": elapsed}


def run(bench: Bench, rate: int) -> None:
    args = bench.args
    accounts = bench.accounts.ensure(max(args.accounts, 2), "doctor")
    calls = []
    for i in range(0, len(accounts) - 1, 2):
        a, b = accounts[i], accounts[i + 1]
        calls.append((a.token, "conversation/" + "~".join(sorted([a.id, b.id]))))
    pool = bench.workers(1)
    try:
        window = bench.cpu(pool)
        pool.send(0, "ask", calls=calls, rate=float(rate), duration=args.duration, warmup=2.0)
        time.sleep(2.0)
        window.start()
        reply = pool.recv(0, timeout=args.duration + 180)
        cpu = window.stop()
        lat = merge_samples([reply["lat"]])
        lag = merge_samples([reply["lag"]])
        emit(bench.base("ask") | {
            "rate": rate,
            **latency_fields(lat),
            "achieved_per_s": round(len(lat) / max(reply["seconds"], 1e-6), 1),
            "requests": len(lat),
            "errors": reply["errors"],
            "message": "GetConversation",
            "duration_s": args.duration,
            "send_lag_p99_ms": rounded(percentile(lag, 99)),
            **cpu,
        })
    finally:
        bench.release(pool)

"""``fanout``: one publisher, N topic subscribers; deliveries per second and their latency."""

from __future__ import annotations

import array
import collections
import json
import math
import multiprocessing.connection
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from .report import GOAL_P99_MS, array_bytes, emit, latency_fields, merge_samples, note, percentile, rounded, split
from .wire import Frame, LeanWS, ServerClosed, open_session
from .worker import WorkerBase, Workers

if TYPE_CHECKING:
    from .session import Bench

DEFAULT_FANOUT_SUBS = (100, 1000, 5000)
DEFAULT_FANOUT_STEPS = (2000, 5000, 10000, 15000, 20000, 30000, 40000, 60000)
GOAL_FANOUT_PER_S = 20000.0


class FanoutCommands(WorkerBase):
    """A worker's side of ``fanout``: subscribers count what arrives; one worker publishes."""

    def __init__(self, conn: multiprocessing.connection.Connection, index: int, url: str, src: str | None) -> None:
        super().__init__(conn, index, url, src)
        self.fan_step = -1
        self.fan_count = 0
        self.fan_lat = array.array("d")
        self.fan_first = math.inf
        self.fan_last = 0.0
        self.pub_replies = 0
        self.pub_subscribers = 0
        self.pub_errors: collections.Counter[str] = collections.Counter()

    def _on_fanout(self, ws: LeanWS, frame: Frame, now: float) -> Frame | None:
        if frame.get("op") == "event":
            body = frame.get("body")
            if isinstance(body, dict) and body.get("step") == self.fan_step:
                self.fan_count += 1
                self.fan_lat.append((now - body["t"]) * 1000.0)
                if now < self.fan_first:
                    self.fan_first = now
                self.fan_last = now
        return None

    async def cmd_fan_reset(self, step: int) -> dict[str, Any]:
        self.fan_step = step
        self.fan_count = 0
        self.fan_lat = array.array("d")
        self.fan_first = math.inf
        self.fan_last = 0.0
        return {}

    async def cmd_fan_count(self) -> dict[str, Any]:
        return {"received": self.fan_count}

    async def cmd_fan_collect(self) -> dict[str, Any]:
        return {"received": self.fan_count, "lat": array_bytes(self.fan_lat),
                "first": self.fan_first, "last": self.fan_last}

    def _on_publisher(self, ws: LeanWS, frame: Frame, now: float) -> Frame | None:
        if frame.get("op") == "reply":
            self.pub_replies += 1
            if frame.get("ok"):
                self.pub_subscribers += int(frame["result"]["subscribers"])
            else:
                self.pub_errors[str(frame.get("error", {}).get("code"))] += 1
        elif frame.get("op") == "error":
            self.pub_errors[str(frame.get("code"))] += 1
        return None

    async def cmd_publish(self, token: str, topic: str, step: int, rate: float, count: int,
                          critical: bool) -> dict[str, Any]:
        """Publish ``count`` events at ``rate``/s; each body carries its send time and sequence."""
        ws = await open_session(self.host, self.port, self.src, token, f"bench-publisher-{step}")
        self.pub_replies = self.pub_subscribers = 0
        self.pub_errors = collections.Counter()
        ws.handler = self._on_publisher
        lags = array.array("d")
        closed: list[int | None] = []

        async def read() -> None:
            try:
                await ws.run()
            except ServerClosed as err:
                closed.append(err.code)  # e.g. 4008: the hub found this connection's send buffer stuck
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                closed.append(1006)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                t0 = time.monotonic() + 0.05
                first = 0.0
                for k in range(count):
                    due = t0 + k / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await trio.sleep(delay)
                    if closed:
                        break
                    now = time.monotonic()
                    lags.append((now - due) * 1000.0)
                    if k == 0:
                        first = now
                    frame: Frame = {"op": "publish", "id": k, "topic": topic, "type": "bench.tick",
                                    "body": {"seq": k, "t": now, "step": step}}
                    if critical:
                        frame["critical"] = True
                    try:
                        await ws.send(frame)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        closed.append(1006)
                        break
                last_sent = time.monotonic()
                with trio.move_on_after(30):
                    while self.pub_replies < len(lags) and not closed:
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await ws.aclose()
        ordered = sorted(lags)
        if closed:
            self.pub_errors[f"publisher connection closed by the hub (code {closed[0]})"] += 1
        return {"sent": len(lags), "replies": self.pub_replies, "subscribers_sum": self.pub_subscribers,
                "errors": dict(self.pub_errors), "first": first, "last_sent": last_sent,
                "lag_p99_ms": percentile(ordered, 99), "lag_max_ms": ordered[-1] if ordered else None}

    # -- durable 1:1 messages


def run(bench: Bench, subs_levels: Sequence[int]) -> None:
    args = bench.args
    accounts = bench.accounts.ensure(args.accounts)
    admin = bench.accounts.admin_token()
    for subs in subs_levels:
        procs = args.procs or 2
        receivers = bench.workers(procs)
        publisher = bench.workers(1)
        topic = f"broadcast/bench-{bench.run}-{subs}"
        try:
            specs = [(accounts[i % len(accounts)].token, f"fan-{bench.run}-{subs}-{i}") for i in range(subs)]
            replies = receivers.all("open", [
                {"group": "fan", "specs": part, "handler": "fanout", "topic": topic,
                 "concurrency": args.concurrency} for part in split(specs, procs)
            ])
            subscribed = sum(r["ok"] for r in replies)
            if subscribed < subs:
                note(f"fanout: only {subscribed} of {subs} subscribers connected: "
                     f"{[r['errors'] for r in replies]}")
            steps = []
            for step, target in enumerate(args.steps or DEFAULT_FANOUT_STEPS):
                rate = target / max(subscribed, 1)  # events/s
                note(f"fanout: {subscribed} subscribers, {target} deliveries/s offered ({rate:.2f} events/s)")
                count = max(math.ceil(rate * args.step_seconds), 5)
                receivers.all("fan_reset", step=step)
                window = bench.cpu(receivers, publisher)
                window.start()
                publisher.send(0, "publish", token=admin, topic=topic, step=step, rate=rate, count=count,
                               critical=args.critical)
                pub = publisher.recv(0, timeout=args.step_seconds * 10 + 120)
                expected = subscribed * pub["sent"]
                _drain(bench, receivers, expected)
                cpu = window.stop()
                collected = receivers.all("fan_collect")
                received = sum(c["received"] for c in collected)
                lat = merge_samples([c["lat"] for c in collected])
                last = max(c["last"] for c in collected)
                span = max(last - pub["first"], 1e-6)
                status = receivers.all("status", group="fan")
                row = {
                    "subs": subscribed,
                    "offered_deliveries_per_s": target,
                    "events_per_s": round(rate, 2),
                    "events": pub["sent"],
                    "deliveries_per_s": round(received / span, 1),
                    **latency_fields(lat),
                    "lost": expected - received,
                    "disconnected": sum(s["server_closed"] for s in status),
                    "publish_errors": pub["errors"],
                    "publisher_lag_p99_ms": rounded(pub["lag_p99_ms"]),
                    **cpu,
                }
                p99 = row["p99_ms"] if row["p99_ms"] is not None else math.inf
                row["sustained"] = bool(row["lost"] == 0 and p99 < GOAL_P99_MS and not pub["errors"]
                                        and not row["disconnected"])
                note("fanout step " + json.dumps(row, ensure_ascii=False))
                steps.append(row)
                # go on past the latency goal to find the capacity; stop once the hub is saturated
                if (row["deliveries_per_s"] < 0.9 * target or row["lost"] > 0.01 * expected or p99 > 1000
                        or row["disconnected"] or pub["errors"]):
                    break
            good = [r for r in steps if r["sustained"]]
            best = max(good, key=lambda r: r["deliveries_per_s"]) if good else steps[0]
            top = max(steps, key=lambda r: r["deliveries_per_s"])
            result = bench.base("fanout") | {
                "subs": subs,
                "deliveries_per_s": best["deliveries_per_s"],
                "p50_ms": best["p50_ms"],
                "p99_ms": best["p99_ms"],
                "max_ms": best["max_ms"],
                "lost": best["lost"],
                "sustained": best["sustained"],
                "offered_deliveries_per_s": best["offered_deliveries_per_s"],
                "events_per_s": best["events_per_s"],
                "events": best["events"],
                "critical": args.critical,
                "subscribed": subscribed,
                "client_procs": procs + 1,
                "client_cpu_pct": best["client_cpu_pct"],
                "client_cpu_max_proc_pct": best["client_cpu_max_proc_pct"],
                "hub_cpu_pct": best["hub_cpu_pct"],
                "machine_busy_pct": best["machine_busy_pct"],
                "max_deliveries_per_s": top["deliveries_per_s"],
                "at_max": {k: top[k] for k in ("offered_deliveries_per_s", "p50_ms", "p99_ms", "lost",
                                               "hub_cpu_pct", "client_cpu_pct")},
                "curve": [[r["offered_deliveries_per_s"], r["deliveries_per_s"], r["p99_ms"], r["lost"]]
                          for r in steps],
            }
            if subs == 1000:
                result["goal_met"] = bool(best["sustained"] and best["deliveries_per_s"] >= GOAL_FANOUT_PER_S)
            emit(result)
            receivers.all("close", group="fan")
        finally:
            bench.release(publisher)
            bench.release(receivers)


def _drain(bench: Bench, receivers: Workers, expected: int, quiet: float = 2.0, limit: float = 30.0) -> None:
    """Wait until ``expected`` deliveries arrived, or nothing more came for ``quiet`` s."""
    deadline = time.monotonic() + limit
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = sum(r["received"] for r in receivers.all("fan_count"))
        if count >= expected:
            return
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > quiet:
            return
        time.sleep(0.05)

# -- (c) durable 1:1 messages

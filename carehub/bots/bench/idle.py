"""``idle``: connections held open, and the hub's memory per connection (docs/benchmarks.md)."""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .machine import fd_headroom
from .report import emit, note, split

if TYPE_CHECKING:
    from .session import Bench

DEFAULT_IDLE_CONNS = (1000, 5000, 10000, 20000)
GOAL_IDLE_KB = 30.0


def run(bench: Bench, levels: Sequence[int]) -> None:
    """Hold each level of connections (patients, signed in) for ``--hold`` s; one result per level."""
    args = bench.args
    accounts = bench.accounts.ensure(args.accounts)
    top = max(levels)
    procs = args.procs or max(2, math.ceil(top / 5000))
    pool = bench.workers(procs)
    try:
        time.sleep(1.0)
        rss0, conns0 = bench.metrics.rss_and_connections()
        note(f"idle: hub RSS before {rss0 / 2**20:.1f} MB, {conns0:.0f} connections; {procs} client processes")
        held = 0
        for level in sorted(levels):
            target = level
            limited = None
            if bench.hub_pid is not None:
                room = fd_headroom(bench.hub_pid)
                if room is not None and level - held > room - 64:
                    target = held + max(room - 64, 0)
                    limited = (f"the hub process may open only {room} more file descriptors "
                               f"(RLIMIT_NOFILE); holding {target} of {level}")
                    note("idle: " + limited)
            specs = [(accounts[i % len(accounts)].token, f"idle-{bench.run}-{i}") for i in range(held, target)]
            window = bench.cpu(pool)
            window.start()
            started = time.monotonic()
            replies = pool.all("open", [
                {"group": "idle", "specs": part, "handler": "idle", "concurrency": args.concurrency}
                for part in split(specs, procs)
            ])
            open_seconds = time.monotonic() - started
            opening_cpu = window.stop()
            opened = sum(r["ok"] for r in replies)
            failed = sum(r["failed"] for r in replies)
            errors: collections.Counter[str] = collections.Counter()
            for r in replies:
                errors.update(r["errors"])
            held += opened
            note(f"idle: {held} connections open ({open_seconds:.0f} s to open {opened}); holding {args.hold:g} s")
            window = bench.cpu(pool)
            window.start()
            time.sleep(args.hold)
            hold_cpu = window.stop()
            statuses = pool.all("status", group="idle")
            still_open = sum(s["open"] for s in statuses)
            dropped = sum(s["server_closed"] for s in statuses)
            rss, conns = bench.metrics.rss_and_connections()
            per_conn = (rss - rss0) / max(still_open, 1) / 1024
            result = bench.base("idle") | {
                "conns": level,
                "held": still_open,
                "rss_per_conn_kb": round(per_conn, 2),
                "hub_rss_mb": round(rss / 2**20, 1),
                "hub_rss_before_mb": round(rss0 / 2**20, 1),
                "hub_connections": int(conns - conns0),
                "failed": failed,
                "dropped_by_server": dropped,
                "open_per_s": round(opened / max(open_seconds, 1e-6), 1),
                "hold_s": args.hold,
                "accounts": len(accounts),
                "client_procs": procs,
                "client_cpu_pct_opening": opening_cpu["client_cpu_pct"],
                "hub_cpu_pct_opening": opening_cpu["hub_cpu_pct"],
                "client_cpu_pct": hold_cpu["client_cpu_pct"],
                "hub_cpu_pct": hold_cpu["hub_cpu_pct"],
                "other_cpu_pct": hold_cpu["other_cpu_pct"],
                "goal_kb": GOAL_IDLE_KB,
                "goal_met": (per_conn <= GOAL_IDLE_KB and still_open >= level) if level >= 20000 else None,
            }
            if errors:
                result["errors"] = dict(errors.most_common(3))
            if limited:
                result["limited_by"] = limited
            emit(result)
        pool.all("close", group="idle")
    finally:
        bench.release(pool)


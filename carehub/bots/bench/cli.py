"""``./scripts/bench <mode> [--url http://HOST:PORT] [options]``: the command line (docs/benchmarks.md).

With no mode it runs the four hub workloads (idle, fanout, durable, ask); the outpatient ones
(release-burst, queue) and reconnect run when named. Without ``--url`` it starts its own hub
(:class:`.hub.OwnHub`) and stops it at the end, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

import httpx

from . import ask, durable, fanout, idle, notify, queue, reconnect, release_burst, web
from .accounts import DEMO_TOTP_SECRET
from .hub import OwnHub
from .machine import free_port, listener_pid, raise_nofile_limit
from .report import note
from .session import Bench

HUB_WORKLOADS = ("idle", "fanout", "durable", "ask")
MODES = ("all", *HUB_WORKLOADS, "release-burst", "queue", "reconnect", "web", "notify")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or a comma-separated list, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("numbers must be positive")
    return values


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or a comma-separated list, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("seconds must be >= 0")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="CareHub benchmark: one JSON line per result on stdout (docs/benchmarks.md).",
    )
    parser.add_argument("name", nargs="?", default="all",
                        choices=MODES,
                        help="the workload (default: all hub workloads, in this order: idle, fanout, durable, ask;"
                        " the outpatient ones, release-burst and queue, and reconnect run only when named)")
    parser.add_argument("--url", help="a running hub (default: start one, embedded PostgreSQL unless "
                        "CAREHUB_DATABASE_URL is set)")
    parser.add_argument("--conns", type=_int_list, help="idle: connections to hold (default 1000,5000,10000,20000);"
                        " reconnect: phones (default 10000)")
    parser.add_argument("--subs", type=_int_list, help="fanout: subscribers (default 100,1000,5000)")
    parser.add_argument("--pairs", type=int, default=500, help="durable: sender/receiver pairs (default 500)")
    parser.add_argument("--rate", type=int, default=200, help="ask: requests per second (default 200)")
    parser.add_argument("--steps", type=_int_list,
                        help="offered rates to step through: fanout deliveries/s, durable msgs/s")
    parser.add_argument("--step-seconds", type=float, default=10.0, help="length of each rate step (default 10)")
    parser.add_argument("--duration", type=float, default=20.0, help="ask: measured seconds (default 20)")
    parser.add_argument("--hold", type=float, default=30.0,
                        help="idle: seconds to hold each level, CPU measured meanwhile (default 30: a heartbeat round)")
    parser.add_argument("--critical", action="store_true",
                        help="fanout: publish as critical (never dropped; a stuck subscriber is disconnected)")
    parser.add_argument("--accounts", type=int, default=100,
                        help="idle/fanout/ask: bench accounts shared by the connections (default 100)")
    parser.add_argument("--procs", type=int, default=0, help="client worker processes (default: per workload)")
    parser.add_argument("--concurrency", type=int, default=100, help="connection set-ups in flight per process")
    parser.add_argument("--admin-login", default="admin")
    parser.add_argument("--admin-password", default=os.environ.get("CAREHUB_BENCH_ADMIN_PASSWORD", "carehub-demo"))
    parser.add_argument("--admin-totp-secret", default=os.environ.get("CAREHUB_BENCH_ADMIN_TOTP", DEMO_TOTP_SECRET),
                        help="base32 TOTP secret of the admin account, when staff sign-in asks for a code "
                        "(default: the demo hospital's; '' for none)")
    parser.add_argument("--run-id", help="name the bench accounts bench-<ID>-<role>-<i> and reuse those an earlier run "
                        "with the same ID created (default: a fresh random ID)")
    parser.add_argument("--hub-pid", type=int, help="pid of the hub at --url (found from its port when local)")
    parser.add_argument("--keep-hub-data", action="store_true", help="keep the started hub's data folder and log")
    group = parser.add_argument_group("outpatient workloads (release-burst, queue)")
    group.add_argument("--requests", type=int, default=10_000, help="release-burst: patients, one booking each")
    group.add_argument("--slots", type=int, default=500, help="release-burst: slots released at one instant")
    group.add_argument("--doctors", type=int, default=0, help="release-burst: doctors sharing the slots (default all)")
    group.add_argument("--spread", type=_floats, default=[0.0],
                       help="release-burst: patients send within this many seconds after the release (default 0);"
                       " a list runs one release for each, with the same patients")
    group.add_argument("--via", choices=("ws", "http"), default="ws",
                       help="release-burst: book with a booking.create command on the patient's open /ws connection"
                       " (default, as the app does) or with POST /api/v1/me/bookings")
    group.add_argument("--waiting", type=int, default=200, help="queue: patients checked in and waiting")
    group.add_argument("--calls", type=int, default=20, help="queue: calls the doctor makes")
    group.add_argument("--call-interval", type=float, default=2.0, help="queue: seconds between calls")
    group.add_argument("--queue-doctor", default="doctor6", help="queue: the doctor's login (demo: doctor6)")
    group.add_argument("--doctor-password", default="carehub-demo", help="queue: the doctor's password")
    group.add_argument("--client-nice", type=int, default=10,
                       help="release-burst: the load client's nice level in the burst (the hub keeps its CPU; 0: off)")
    group.add_argument("--sms-sim", help="the hub's SMS gateway simulator (default: the started hub's)")
    group.add_argument("--patients-file", help="release-burst, reconnect: keep the signed-in patients (tokens) in this"
                       " JSON file and reuse them on a later run against the same hub (its data kept), skipping the"
                       " minutes of sign-ins; made afresh when missing or for another URL, topped up when short")
    reconnect.add_arguments(parser)
    web.add_arguments(parser)
    notify.add_arguments(parser)
    return parser.parse_args(argv)


def run_mode(bench: Bench, name: str) -> None:
    args = bench.args
    if name == "idle":
        idle.run(bench, args.conns or idle.DEFAULT_IDLE_CONNS)
    elif name == "fanout":
        fanout.run(bench, args.subs or fanout.DEFAULT_FANOUT_SUBS)
    elif name == "durable":
        durable.run(bench, args.pairs)
    elif name == "ask":
        ask.run(bench, args.rate)
    elif name == "release-burst":
        release_burst.run(bench, args.requests, args.slots)
    elif name == "queue":
        queue.run(bench, args.waiting)
    elif name == "reconnect":
        reconnect.run(bench, (args.conns or [reconnect.DEFAULT_CONNS])[0])
    elif name == "web":
        web.run(bench)
    else:
        raise ValueError(f"no benchmark {name!r}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_nofile_limit()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    note(f"RLIMIT_NOFILE {limit}; {os.cpu_count()} CPUs")
    hub: OwnHub | None = None
    bench: Bench | None = None
    sims: notify.Simulators | None = None
    try:
        if args.name == "notify":
            # the providers' simulators first (they outlive hub restarts), then a hub pointed at them
            if args.url:
                raise SystemExit("scripts/bench: notify starts its own hub, pointed at its own simulators (no --url)")
            port = free_port()
            sims = notify.Simulators(port)
            hub = OwnHub(keep_data=args.keep_hub_data, env=sims.env)
            url = hub.start(port=port)
            hub_pid = hub.pid
        elif args.url:
            url = args.url
            hub_pid = args.hub_pid
            host = httpx.URL(url).host
            if hub_pid is None and host in ("127.0.0.1", "localhost"):
                hub_pid = listener_pid(httpx.URL(url).port or 80)
            note(f"using the hub at {url}" + (f" (pid {hub_pid})" if hub_pid else " (pid unknown: no hub CPU figures)"))
        else:
            hub = OwnHub(keep_data=args.keep_hub_data)
            url = hub.start()
            hub_pid = hub.pid
        bench = Bench(args, url, hub_pid, hub)
        names = list(HUB_WORKLOADS) if args.name == "all" else [args.name]
        for name in names:
            if name in HUB_WORKLOADS:
                note(f"--- {name}")
            if name == "notify":
                assert sims is not None
                notify.run(bench, sims)
            else:
                run_mode(bench, name)
            if hub is not None and hub.proc is not None and hub.proc.poll() is not None:
                raise RuntimeError(f"the hub exited (code {hub.proc.returncode}):\n{hub.log_tail()}")
        return 0
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    finally:
        if bench is not None:
            bench.close()
        if hub is not None:
            hub.stop()
        if sims is not None:
            sims.close()

"""``reconnect``: N phones connected, the hub restarts, every phone comes back as the real client does.

``./scripts/bench reconnect --conns 10000 [--url ...]``. ``--conns`` patients (each signed in by
SMS code, one phone each) hold a ``/ws`` connection, authenticated. Then the hub restarts: the
bench's own hub is stopped with SIGTERM (it sends every client a ``bye`` with its own
``reconnect_after_ms`` and closes with 1012) and started again on the same port and data; with
``--url`` the bench waits for the connections to drop (restart or kill the hub yourself) and
watches ``/readyz`` to see when it is back.

Each phone then does what a phone's client does (docs/protocol.md, "Slow consumers, heartbeats,
restarts"): it waits the ``bye``'s ``reconnect_after_ms`` (no ``bye``: a first back-off), and
retries a failed attempt (refused while the hub is down, closed, no ``welcome`` in 30 s) after a
full-jitter back-off, ``uniform(min_ms, min(max_ms, min_ms * 2**attempt))`` with ``reconnect
{min_ms, max_ms}`` of its last ``welcome``. An attempt is TCP connect, WebSocket handshake,
``auth`` with ``resume_after`` (the last ``seq`` it saw), and the ``welcome``.

Results (one JSON line): ``conns``, ``reconnected``, ``failed`` (phones not back within
``--reconnect-timeout``), ``seconds_to_all_back`` (from the hub ready again to the last
``welcome``), ``seconds_from_drop`` (from the first connection closed to the last ``welcome``),
``hub_down_s``, ``opens_per_s`` (welcomes over the time from the first to the last), the busiest
second (``peak_opens_per_s``), ``auth_p50_ms``/``auth_p99_ms``/``auth_max_ms`` (``auth`` sent to
``welcome`` received, successful attempts after the drop), ``attempts``, ``closed_by_code``
(attempts the hub closed or refused, by close code or error code, e.g. ``{"4001": n}``),
``attempt_errors`` (attempts that never reached the hub), ``drop_codes`` (how the restart closed
the connections: ``{"1012": n}``), ``timeline`` (welcomes per second from the hub ready).
"""

from __future__ import annotations

import argparse
import array
import collections
import math
import multiprocessing.connection
import random
import time
from typing import TYPE_CHECKING, Any

import httpx
import trio

from carehub.bots.client import CallFailed

from .machine import listener_pid
from .report import array_bytes, emit, latency_fields, merge_samples, note, rounded, split
from .wire import Frame, LeanWS, ServerClosed
from .worker import Group, WorkerBase

if TYPE_CHECKING:
    from .session import Bench

DEFAULT_CONNS = 10_000
GOAL_SECONDS = 10.0
#: the protocol's advice until a welcome says otherwise (docs/protocol.md, welcome.reconnect)
RECONNECT_MIN_MS = 500
RECONNECT_MAX_MS = 15_000
#: one attempt: connect, handshake, auth, welcome
ATTEMPT_TIMEOUT = 30.0

_CONNECT_ERRORS = (OSError, ConnectionError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)


class Phone:
    """One patient's phone: its token, device, where its stream is, and the reconnect advice it has."""

    __slots__ = ("bye_ms", "device", "last_seq", "max_ms", "min_ms", "token")

    def __init__(self, token: str, device: str) -> None:
        self.token = token
        self.device = device
        self.last_seq: int | None = None
        self.min_ms = RECONNECT_MIN_MS
        self.max_ms = RECONNECT_MAX_MS
        self.bye_ms: int | None = None

    def backoff(self, attempt: int) -> float:
        """Seconds before retry ``attempt`` (1, 2, ...): full jitter between min_ms and a doubling ceiling."""
        ceiling = min(self.max_ms, self.min_ms * 2 ** min(attempt, 16))
        return random.uniform(self.min_ms, ceiling) / 1000

    def on_frame(self, ws: LeanWS, frame: Frame, now: float) -> Frame | None:
        op = frame.get("op")
        if op == "deliver" and isinstance(frame.get("seq"), int):
            self.last_seq = frame["seq"]
        elif op == "bye":
            advice = frame.get("reconnect_after_ms")
            self.bye_ms = advice if isinstance(advice, int) and advice >= 0 else None
        return None

    def welcomed(self, frame: Frame) -> None:
        stream = frame.get("stream") or {}
        if self.last_seq is None and isinstance(stream.get("last_seq"), int):
            self.last_seq = stream["last_seq"]
        advice = frame.get("reconnect") or {}
        if isinstance(advice.get("min_ms"), int) and isinstance(advice.get("max_ms"), int):
            self.min_ms, self.max_ms = advice["min_ms"], max(advice["max_ms"], advice["min_ms"])


class ReconnectCommands(WorkerBase):
    """A worker's side of ``reconnect``: phones that stay connected and come back after a drop."""

    def __init__(self, conn: multiprocessing.connection.Connection, index: int, url: str, src: str | None) -> None:
        super().__init__(conn, index, url, src)
        self._reset_reconnect()

    def _reset_reconnect(self) -> None:
        self.rc_connected = 0
        self.rc_opened = 0
        self.rc_open_errors: collections.Counter[str] = collections.Counter()
        self.rc_open_failed = 0
        self.rc_drops: collections.Counter[str] = collections.Counter()
        self.rc_first_drop = math.inf
        self.rc_welcomes = array.array("d")  # arrival times of the welcomes after a drop
        self.rc_auth = array.array("d")  # ms from auth sent to welcome received
        self.rc_attempts = 0
        self.rc_closed: collections.Counter[str] = collections.Counter()
        self.rc_errors: collections.Counter[str] = collections.Counter()
        self.rc_bye_ms = array.array("d")

    async def _attempt(self, phone: Phone, resume: bool) -> tuple[LeanWS, float, float]:
        """One connection attempt: ``(ws, auth sent, welcome arrived)``; raises what went wrong."""
        with trio.fail_after(ATTEMPT_TIMEOUT):
            ws = await LeanWS.open(self.host, self.port, self.src)
            try:
                auth: Frame = {"op": "auth", "token": phone.token, "device": phone.device}
                if resume and phone.last_seq is not None:
                    auth["resume_after"] = phone.last_seq
                sent = time.monotonic()
                await ws.send(auth)
                welcome, at = await ws.expect_at("welcome")
            except BaseException:
                await trio.aclose_forcefully(ws.stream)
                raise
        phone.welcomed(welcome)
        return ws, sent, at

    async def _live(self, grp: Group, phone: Phone, ws: LeanWS) -> None:
        """Hold the connection, and after each drop come back as the client does."""
        while True:
            ws.handler = phone.on_frame
            phone.bye_ms = None
            try:
                await ws.run()
            except ServerClosed as err:
                code = str(err.code or 1006)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                code = "1006"
            finally:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(ws.stream)
            self.rc_connected -= 1
            self.rc_drops[code] += 1
            self.rc_first_drop = min(self.rc_first_drop, time.monotonic())
            if phone.bye_ms is not None:
                self.rc_bye_ms.append(float(phone.bye_ms))
                await trio.sleep(phone.bye_ms / 1000)
            else:
                await trio.sleep(phone.backoff(1))
            attempt = 1
            while True:
                self.rc_attempts += 1
                try:
                    ws, sent, at = await self._attempt(phone, resume=True)
                    break
                except ServerClosed as err:
                    self.rc_closed[str(err.code or 1006)] += 1
                except CallFailed as err:  # an error frame or a bye (its code: 4001 ...) before the welcome
                    self.rc_closed[err.code] += 1
                except _CONNECT_ERRORS as err:
                    self.rc_errors[type(err).__name__ + (f": {str(err)[:50]}" if isinstance(err, ConnectionError)
                                                         else "")] += 1
                attempt += 1
                await trio.sleep(phone.backoff(attempt))
            self.rc_connected += 1
            self.rc_welcomes.append(at)
            self.rc_auth.append((at - sent) * 1000.0)
            grp.conns.append(ws)

    async def cmd_phones_open(self, phones: list[tuple[str, str]], concurrency: int = 100,
                              open_limit: float = 900.0) -> dict[str, Any]:
        """Connect and authenticate one phone per ``(token, device)``, retrying a failed attempt after a
        back-off for up to ``open_limit`` s; each phone then lives on (``_live``)."""
        self._reset_reconnect()
        grp = await self._group("reconnect")
        limiter = trio.CapacityLimiter(concurrency)
        started = time.monotonic()

        async def one(token: str, device: str) -> None:
            phone = Phone(token, device)
            attempt = 0
            while True:  # a phone that could not connect tries again, as the app does, until the set-up ends
                attempt += 1
                async with limiter:
                    try:
                        ws, _sent, _at = await self._attempt(phone, resume=False)
                        break
                    except (CallFailed, ServerClosed, *_CONNECT_ERRORS) as err:
                        self.rc_open_errors[f"{type(err).__name__}: {str(err)[:80]}"] += 1
                if time.monotonic() - started > open_limit:
                    self.rc_open_failed += 1
                    return
                await trio.sleep(phone.backoff(attempt))
            self.rc_opened += 1
            self.rc_connected += 1
            grp.conns.append(ws)
            assert grp.nursery is not None
            grp.nursery.start_soon(self._live, grp, phone, ws)

        async with trio.open_nursery() as nursery:
            for token, device in phones:
                nursery.start_soon(one, token, device)
        return {"ok": self.rc_opened, "failed": self.rc_open_failed, "errors": dict(self.rc_open_errors.most_common(8)),
                "seconds": time.monotonic() - started}

    async def cmd_phones_count(self) -> dict[str, Any]:
        return {"connected": self.rc_connected, "dropped": sum(self.rc_drops.values()),
                "back": len(self.rc_welcomes), "first_drop": self.rc_first_drop}

    async def cmd_phones_collect(self) -> dict[str, Any]:
        return {"opened": self.rc_opened, "connected": self.rc_connected, "drops": dict(self.rc_drops),
                "first_drop": self.rc_first_drop, "welcomes": array_bytes(self.rc_welcomes),
                "auth": array_bytes(self.rc_auth), "attempts": self.rc_attempts, "closed": dict(self.rc_closed),
                "errors": dict(self.rc_errors), "bye_ms": array_bytes(self.rc_bye_ms)}


def _counts(replies: list[dict[str, Any]], key: str) -> dict[str, int]:
    total: collections.Counter[str] = collections.Counter()
    for r in replies:
        total.update(r[key])
    return dict(total.most_common())


def _wait_ready(url: str, since: float, limit: float) -> float | None:
    """With ``--url``: poll ``/readyz`` until the hub answers 200 again; the monotonic time it did."""
    deadline = since + limit
    with httpx.Client(base_url=url, timeout=2) as http:
        while time.monotonic() < deadline:
            try:
                if http.get("/readyz").status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    return None


def run(bench: Bench, conns: int) -> None:
    """Connect ``conns`` phones, restart the hub (or wait for it to restart), measure the way back."""
    args = bench.args
    procs = args.procs or max(2, math.ceil(conns / 2500))
    pool = bench.workers(procs)
    try:
        wanted = min(args.phone_accounts or conns, conns)
        people = bench.kept_patients(pool, wanted, verify=False)
        if len(people) < wanted:
            note(f"reconnect: only {len(people)} of {wanted} patients could sign in")
        # one phone per patient (default); with --phone-accounts fewer patients, each with several phones
        phones = [(people[i % len(people)][0], f"phone-{bench.run}-{i}") for i in range(conns if people else 0)]
        started = time.monotonic()
        replies = pool.all("phones_open", [{"phones": part, "concurrency": args.concurrency}
                                           for part in split(phones, procs)], timeout=1800)
        opened = sum(r["ok"] for r in replies)
        open_seconds = time.monotonic() - started
        open_failures = _counts(replies, "errors")
        note(f"reconnect: {opened} phones connected in {open_seconds:.0f} s"
             + (f"; failed attempts: {open_failures}" if open_failures else ""))
        time.sleep(2.0)
        window = bench.cpu(pool)
        if bench.hub is not None:
            note("reconnect: restarting the hub (SIGTERM, then the same port and data)")
            window.start()
            drop_started = time.monotonic()
            back_up = bench.hub.restart()
            bench.hub_pid = bench.hub.pid
            note(f"reconnect: the hub is ready again after {back_up - drop_started:.1f} s")
            ready_at: float | None = back_up
        else:
            note("reconnect: waiting for the connections to drop: restart the hub at --url now")
            while not any(c["dropped"] for c in pool.all("phones_count")):
                time.sleep(0.05)
            window.start()
            drop_started = time.monotonic()
            ready_at = _wait_ready(bench.url, drop_started, args.reconnect_timeout)
            url = httpx.URL(bench.url)
            if ready_at is not None and url.host in ("127.0.0.1", "localhost"):
                bench.hub_pid = listener_pid(url.port or 80)  # the hub that came back (its CPU since it started)
            note("reconnect: the hub at --url is ready again" if ready_at else "reconnect: the hub never came back")
        deadline = time.monotonic() + args.reconnect_timeout
        while time.monotonic() < deadline:
            counts = pool.all("phones_count")
            if sum(c["back"] for c in counts) >= opened and sum(c["connected"] for c in counts) >= opened:
                break
            time.sleep(0.1)
        cpu = window.stop()
        collected = pool.all("phones_collect")
        welcomes = merge_samples([c["welcomes"] for c in collected])
        auth = merge_samples([c["auth"] for c in collected])
        bye_ms = merge_samples([c["bye_ms"] for c in collected])
        first_drop = min(c["first_drop"] for c in collected)
        back = len(welcomes)
        all_back = back >= opened and opened > 0
        last = welcomes[-1] if welcomes else None
        timeline: list[int] = []
        if ready_at is not None:
            for t in welcomes:
                k = max(0, int(t - ready_at))
                timeline.extend([0] * (k + 1 - len(timeline)))
                timeline[k] += 1
        busiest = collections.Counter(int(t) for t in welcomes).most_common(1)
        to_all_back = rounded(last - ready_at, 2) if all_back and last is not None and ready_at is not None else None
        emit(bench.base("reconnect") | {
            "conns": conns,
            "opened": opened,
            "patients": len(people),
            "reconnected": back,
            "failed": max(opened - back, 0) + (conns - opened),
            "seconds_to_all_back": to_all_back,
            "seconds_from_drop": rounded(last - first_drop, 2) if all_back and last is not None else None,
            "hub_down_s": rounded(ready_at - first_drop, 2) if ready_at is not None and first_drop < math.inf else None,
            "opens_per_s": rounded(back / max(welcomes[-1] - welcomes[0], 1e-3), 1) if back > 1 else None,
            "peak_opens_per_s": busiest[0][1] if busiest else None,
            **latency_fields(auth, "auth_"),
            "attempts": sum(c["attempts"] for c in collected),
            "closed_by_code": _counts(collected, "closed"),
            "attempt_errors": _counts(collected, "errors"),
            "drop_codes": _counts(collected, "drops"),
            "bye_ms_p50": rounded(bye_ms[len(bye_ms) // 2], 0) if bye_ms else None,
            "bye_ms_max": rounded(bye_ms[-1], 0) if bye_ms else None,
            "restart": "own hub (SIGTERM, same port and data)" if bench.hub is not None else "external (--url)",
            "goal_s": GOAL_SECONDS,
            "goal_met": bool(to_all_back is not None and to_all_back <= GOAL_SECONDS),
            "open_s": round(open_seconds, 1),
            "open_failed_attempts": open_failures,
            "timeline": timeline,
            "client_procs": procs,
            **cpu,
        })
        pool.all("close", group="reconnect")
    finally:
        bench.release(pool)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reconnect")
    group.add_argument("--reconnect-timeout", type=float, default=120.0,
                       help="reconnect: seconds to wait for every phone to be back (default 120)")
    group.add_argument("--phone-accounts", type=int, default=0,
                       help="reconnect: patients sharing the phones, each phone a device of its own (default: one"
                       " patient per phone; fewer make the set-up shorter, and a token's later phones may find it"
                       " in the hub's cache)")

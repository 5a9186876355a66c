"""``release-burst``: a booking release, every patient booking at one instant (issue #4).

``release-burst``
    ``--requests`` patients (default 10,000) each sign in by SMS code (read from the demo hub's SMS
    gateway simulator), add themselves as a patient and pass a face check at the demo hub's face
    verification simulator (a patient must be real-name verified to book). An admin then sets
    the slot rules of the hospital's doctors so that ``--slots`` slots (default 500, split over
    the doctors) open at the next whole minute, and approves one session per doctor. Every
    patient sends **one** booking to a doctor picked at random, at the release instant plus a
    random delay up to ``--spread`` seconds (default 0: all at once): with ``--via ws`` (default)
    a ``booking.create`` command on the ``/ws`` connection their app holds (the frames are built
    beforehand and one loop per client process writes each when it is due, so that the client's own
    cost per frame does not spread "at once" over a second), with ``--via http`` a
    ``POST /api/v1/me/bookings`` on a kept-alive HTTP connection. Each has opened the booking page
    (which connects and lists their family members: ``patients.list`` or ``GET
    /api/v1/me/patients``) in the 14 s before the release, as people waiting for a release do.
    Results: ``booked`` (201), ``full`` (a clear "full"
    refusal), other answers by code, ``unanswered`` (no answer in 60 s or a broken connection),
    answer-time percentiles from each request's send to its answer, ``bookings_per_s`` (booked
    over the time from the release to the last booking). Then the admin's booking search is read
    back per doctor: ``oversold`` counts active bookings beyond a session's capacity (and booked
"""

from __future__ import annotations

import array
import collections
import contextlib
import datetime as dt
import multiprocessing.connection
import os
import random
import time
from typing import TYPE_CHECKING, Any

import orjson
import trio

from carehub.bots.client import CallFailed

from .report import array_bytes, emit, latency_fields, merge_samples, note, rounded, split
from .wire import Frame, LeanHTTP, LeanWS, ServerClosed, client_frame, open_session
from .worker import WorkerBase, Workers, for_each, keep

if TYPE_CHECKING:
    from .session import Bench

BEIJING = dt.timezone(dt.timedelta(hours=8))
ANSWER_TIMEOUT = 60.0
#: patients open the app (one signed-in request) in the last this many seconds before the release
WARM_BEFORE = 14.0


class BurstCommands(WorkerBase):
    """A worker's side of ``release-burst``: each patient's held connection, and the burst itself."""

    def __init__(self, conn: multiprocessing.connection.Connection, index: int, url: str, src: str | None) -> None:
        super().__init__(conn, index, url, src)
        #: release-burst over /ws: each patient's held connection, by token
        self.burst_ws: dict[str, LeanWS] = {}
        self.bots: list[LeanHTTP | LeanWS | None] = []

    async def cmd_burst_connect(self, tokens: list[str]) -> dict[str, Any]:
        """Open and hold each patient's ``/ws`` connection (pings answered), as their app does before a release."""
        grp = await self._group("burst")
        limiter = trio.CapacityLimiter(50)
        failed: collections.Counter[str] = collections.Counter()
        started = time.monotonic()

        async def one(token: str) -> None:
            async with limiter:
                try:
                    with trio.fail_after(120):
                        ws = await open_session(self.host, self.port, self.src, token, "bench-burst")
                except Exception as err:
                    failed[f"{type(err).__name__}: {str(err)[:60]}"] += 1
                    return
            ws.tag = {}
            ws.handler = _on_reply
            self.burst_ws[token] = ws
            keep(grp, ws, self._hold_replies)

        await for_each(tokens, one)
        return {"open": len(self.burst_ws), "failed": dict(failed.most_common(3)),
                "seconds": time.monotonic() - started}

    async def _hold_replies(self, grp: Any, ws: LeanWS) -> None:
        try:
            await self._hold(grp, ws)
        finally:
            for waiter in ws.tag.values():
                waiter.wake(None, time.monotonic())
            ws.tag.clear()

    async def cmd_burst(self, at: float, spread: float, requests: list[tuple[str, bytes]], via: str,
                        nice: int = 0) -> dict[str, Any]:
        """At wall-clock ``at`` (+ up to ``spread`` s each), patient k sends ``requests[k]`` (token, body).

        ``via`` "ws": the patient's app holds its ``/ws`` connection (opened with the booking page) and
        books with a ``booking.create`` command; "http": a kept-alive HTTP connection and a POST.
        ``nice``: this process's nice level meanwhile (docs/benchmarks-log.md, 2026-11-26 afternoon, `3f7be72`).
        """
        before = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        try:
            return await self._burst(at, spread, requests, via)
        finally:
            with contextlib.suppress(PermissionError):  # lowering it again needs privileges
                os.setpriority(os.PRIO_PROCESS, 0, before)

    async def _burst(self, at: float, spread: float, requests: list[tuple[str, bytes]], via: str) -> dict[str, Any]:
        lat = array.array("d")
        outcomes: collections.Counter[str] = collections.Counter()
        booked: list[tuple[str, str]] = []  # (patient id, booking id)
        last_booked = 0.0
        wall_minus_mono = time.time() - time.monotonic()
        self.bots = [None] * len(requests)

        def record(status: int, answer: Any, done: float) -> None:
            nonlocal last_booked
            if status == 201:
                outcomes["booked"] += 1
                booked.append((answer["patient_id"], answer["booking_id"]))
                last_booked = max(last_booked, done + wall_minus_mono)
            else:
                code = (answer.get("error") or {}).get("code") if isinstance(answer, dict) else None
                outcomes[str(code or f"http_{status}")] += 1

        async def warm_up(k: int, token: str) -> LeanHTTP | LeanWS | None:
            """The patient opens the booking page before the release: it lists their family members."""
            await trio.sleep(max(0.0, at - wall_minus_mono - WARM_BEFORE + random.random() * (WARM_BEFORE - 3.0)
                                 - time.monotonic()))
            if via == "ws":
                ws = self.burst_ws.get(token)
                if ws is not None:
                    try:
                        await _command(ws, "list", "patients.list", None)
                    except (OSError, ConnectionError, trio.BrokenResourceError, trio.ClosedResourceError):
                        return None
                return ws
            conn: LeanHTTP | None = None
            try:
                conn = await LeanHTTP.open(self.host, self.port, self.src)
                await conn.request("GET", "/api/v1/me/patients", None, f"Bearer {token}")
            except (OSError, ConnectionError, trio.BrokenResourceError):
                if conn is not None:
                    await trio.aclose_forcefully(conn.stream)
                return None  # the booking opens a connection of its own
            self.bots[k] = conn
            return conn

        def answered(reply: Frame | None, sent: float, done: float) -> None:
            if reply is None:
                outcomes["unanswered"] += 1
                outcomes["unanswered: the connection closed before the answer"] += 1
                return
            if reply.get("ok"):
                status, answer = int(reply["status"]), reply["result"]
            else:
                error = reply.get("error") or {}
                status, answer = int(error.get("status") or 0), {"error": error}
            lat.append((done - sent) * 1000.0)
            record(status, answer, done)

        # over /ws each frame is built before the release and one loop per client process sends them when
        # due, so that the load client's own cost (a task, a lock, JSON, masking per frame: ~0.9 s of both
        # cores for 10,000 frames) does not spread "all at once" over a second; see docs/benchmarks.md
        due: list[tuple[float, int, LeanWS, bytes]] = []
        waiters: list[tuple[_Waiter, float]] = []

        async def ready(k: int, token: str, body: bytes) -> None:
            ws = await warm_up(k, token)
            if not isinstance(ws, LeanWS):
                outcomes["unanswered"] += 1
                outcomes["unanswered: the patient's connection could not be opened"] += 1
                return
            data = client_frame(b'{"op":"command","id":"book","name":"booking.create","body":' + body + b"}")
            due.append((at - wall_minus_mono + random.random() * spread, k, ws, data))

        async def send_when_due() -> None:
            due.sort(key=lambda d: d[0])
            for when, _k, ws, data in due:
                wait = when - time.monotonic()
                if wait > 0:
                    await trio.sleep(wait)
                waiter = ws.tag["book"] = _Waiter()
                sent = time.monotonic()
                try:
                    rest = ws.send_now(data)
                    if rest:
                        await ws.send_raw(rest)
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    waiter.wake(None, sent)
                waiters.append((waiter, sent))

        async def one(k: int, token: str, body: bytes) -> None:
            conn = await warm_up(k, token)
            await trio.sleep(max(0.0, at - wall_minus_mono + random.random() * spread - time.monotonic()))
            sent = time.monotonic()
            try:
                with trio.fail_after(ANSWER_TIMEOUT):
                    if conn is None:
                        conn = self.bots[k] = await LeanHTTP.open(self.host, self.port, self.src)
                    assert isinstance(conn, LeanHTTP)
                    status, payload = await conn.post("/api/v1/me/bookings", body, f"Bearer {token}")
                    done = time.monotonic()
                    try:
                        answer = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        outcomes[f"http_{status}_unreadable"] += 1
                        return
            except (trio.TooSlowError, OSError, ConnectionError, trio.BrokenResourceError, trio.ClosedResourceError,
                    CallFailed, ServerClosed) as err:
                outcomes["unanswered"] += 1
                outcomes[f"unanswered: {type(err).__name__}: {str(err)[:60]}"] += 1
                return
            lat.append((done - sent) * 1000.0)
            record(status, answer, done)

        if via == "ws":
            async with trio.open_nursery() as nursery:
                for k, (token, body) in enumerate(requests):
                    nursery.start_soon(ready, k, token, body)
            await send_when_due()
            deadline = trio.current_time() + ANSWER_TIMEOUT
            for waiter, sent in waiters:
                with trio.move_on_at(deadline):
                    await waiter.event.wait()
                if waiter.event.is_set():
                    answered(waiter.frame, sent, waiter.at)
                else:
                    outcomes["unanswered"] += 1
                    outcomes[f"unanswered: no answer in {ANSWER_TIMEOUT:.0f} s"] += 1
            return {"lat": array_bytes(lat), "outcomes": dict(outcomes), "booked": booked, "last_booked": last_booked}

        async with trio.open_nursery() as nursery:
            for k, (token, body) in enumerate(requests):
                nursery.start_soon(one, k, token, body)
        for conn in self.bots:
            if isinstance(conn, LeanHTTP):
                await trio.aclose_forcefully(conn.stream)
        self.bots = []
        return {"lat": array_bytes(lat), "outcomes": dict(outcomes), "booked": booked, "last_booked": last_booked}


class _Waiter:
    __slots__ = ("at", "event", "frame")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.frame: Frame | None = None
        self.at = 0.0

    def wake(self, frame: Frame | None, at: float) -> None:
        self.frame, self.at = frame, at
        self.event.set()


def _on_reply(ws: LeanWS, frame: Frame, now: float) -> Frame | None:
    if frame.get("op") == "reply":
        waiter = ws.tag.pop(frame.get("id"), None)
        if waiter is not None:
            waiter.wake(frame, now)
    return None


async def _command(ws: LeanWS, ref: str, name: str, body: Any) -> tuple[Frame | None, float]:
    """Send a command on a held connection; its reply (None if the connection ended) and when it came."""
    waiter = ws.tag[ref] = _Waiter()
    frame: Frame = {"op": "command", "id": ref, "name": name}
    if body is not None:
        frame["body"] = body
    await ws.send(frame)
    await waiter.event.wait()
    return waiter.frame, waiter.at


def run(bench: Bench, requests: int, slots: int) -> None:
    args = bench.args
    procs = args.procs or 4
    pool = bench.workers(procs)
    try:
        people = bench.kept_patients(pool, requests)
        doctors = [d["id"] for d in bench.call("GET", "/api/v1/doctors", params={"limit": 200})["doctors"]]
        doctors = doctors[: args.doctors] if args.doctors else doctors
        if slots > 500 * len(doctors):
            raise SystemExit(f"scripts/bench: {slots} slots do not fit {len(doctors)} doctors (500 a session)")
        if args.via == "ws":
            # the apps are open before the release: each holds its /ws connection (opening one
            # costs the hub 4-10 ms, docs/benchmarks.md "idle"; not part of the burst)
            started = time.monotonic()
            opened = pool.all("burst_connect", [{"tokens": [t for t, _ in part]}
                                                for part in split(people, procs)], timeout=3600)
            failed = collections.Counter[str]()
            for r in opened:
                failed.update(r["failed"])
            note(f"release-burst: {sum(r['open'] for r in opened)} patients' /ws connections open in"
                 f" {time.monotonic() - started:.0f} s" + (f"; failed: {dict(failed)}" if failed else ""))
        aheads = _free_days(bench, doctors, len(args.spread))  # each round books a day of its own
        for spread, ahead in zip(args.spread, aheads, strict=True):
            _burst(bench, pool, procs, people, doctors, slots, spread, ahead)
    finally:
        bench.release(pool)


def _free_days(bench: Bench, doctors: list[str], n: int) -> list[int]:
    """``n`` days ahead (20-89) on which none of ``doctors`` has a booking yet (a hub kept from an
    earlier run has full sessions on the days that run used: every request would be "full")."""
    today = dt.datetime.now(BEIJING).date()
    free: list[int] = []
    for ahead in random.sample(range(20, 90), 70):
        day = (today + dt.timedelta(days=ahead)).isoformat()
        if not any(bench.call("GET", "/api/v1/admin/bookings", params={
                "doctor": d, "from": day, "to": day, "limit": 1})["bookings"] for d in doctors):
            free.append(ahead)
            if len(free) == n:
                return free
    raise SystemExit("scripts/bench: no day 20-89 days ahead is free of bookings for these doctors")


def _burst(bench: Bench, pool: Workers, procs: int, people: list[tuple[str, str]], doctors: list[str], slots: int,
           spread: float, ahead: int) -> None:
    """One release: ``slots`` slots over ``doctors`` open at the next whole minute; everyone books once."""
    share = [slots // len(doctors) + (1 if k < slots % len(doctors) else 0) for k in range(len(doctors))]
    doctors = [d for d, n in zip(doctors, share, strict=True) if n]
    share = [n for n in share if n]
    # the release: the next whole minute at least 30 s away (rules open at HH:MM)
    release = (dt.datetime.now(BEIJING) + dt.timedelta(seconds=90)).replace(second=0, microsecond=0)
    day = release.date() + dt.timedelta(days=ahead)
    for doctor, capacity in zip(doctors, share, strict=True):
        bench.call("PUT", f"/api/v1/admin/doctors/{doctor}/slot-rule", json={
            "slot_minutes": 5, "daily_max": 500, "quota_app": capacity, "quota_kiosk": 0, "quota_partner": 0,
            "open_days_ahead": ahead, "open_time": f"{release:%H:%M}", "fee_fen": 2500, "hold_minutes": 15})
        roster = bench.call("POST", "/api/v1/admin/rosters", 201, json={
            "kind": "extra", "doctor_id": doctor, "reason": "压测放号",
            "sessions": [{"day": day.isoformat(), "period": "am", "room": "压测诊室", "capacity": capacity}]})
        bench.call("POST", f"/api/v1/admin/rosters/{roster['id']}/decide", json={"approve": True})
    note(f"release-burst: {slots} slots over {len(doctors)} doctors on {day}, released at {release:%H:%M:%S}"
         f" Beijing time; {len(people)} patients, {procs} client processes")
    picks = [random.randrange(len(doctors)) for _ in people]
    bodies = [(token, orjson.dumps({"patient_id": pid, "doctor_id": doctors[pick], "day": day.isoformat(),
                                     "period": "am"}))
              for (token, pid), pick in zip(people, picks, strict=True)]
    parts = split(bodies, procs)
    at = release.timestamp() + 0.05
    note(f"release-burst: waiting {at - time.time():.0f} s for the release")
    replies = pool.all("burst", [{"at": at, "spread": spread, "requests": part, "via": bench.args.via,
                                  "nice": bench.args.client_nice}
                                 for part in parts],
                       timeout=ANSWER_TIMEOUT + max(at - time.time(), 0) + spread + 60)
    outcomes: collections.Counter[str] = collections.Counter()
    booked: list[tuple[str, str]] = []
    for r in replies:
        outcomes.update(r["outcomes"])
        booked.extend(r["booked"])
    lat = merge_samples([r["lat"] for r in replies])
    last_booked = max((r["last_booked"] for r in replies), default=0.0)
    # read back what the hub holds
    active: list[dict[str, Any]] = []
    oversold = max(0, len(booked) - slots)
    for doctor, capacity in zip(doctors, share, strict=True):
        rows = bench.call("GET", "/api/v1/admin/bookings", params={
            "doctor": doctor, "from": day.isoformat(), "to": day.isoformat(), "limit": 1000})["bookings"]
        mine = [b for b in rows if b["status"] in ("held", "booked", "checked_in", "seen")]
        oversold += max(0, len(mine) - capacity)
        active.extend(mine)
    per_patient = collections.Counter(b["patient_id"] for b in active)
    answered_twice = len(booked) - len({p for p, _ in booked})
    double_booked = sum(1 for n in per_patient.values() if n > 1) + answered_twice
    unanswered = outcomes.pop("unanswered", 0)
    n_booked = outcomes.pop("booked", 0)
    emit({
        "bench": "release-burst", "url": bench.url,
        "requests": len(people), "slots": slots, "doctors": len(doctors),
        "booked": n_booked, "full": outcomes.pop("full", 0), "other": dict(outcomes),
        "oversold": oversold, "double_booked": double_booked, "unanswered": unanswered,
        "bookings_in_hub": len(active),
        **latency_fields(lat),
        "bookings_per_s": rounded(n_booked / max(last_booked - release.timestamp(), 1e-3), 1),
        "spread_s": spread,
        "via": bench.args.via,
        "client_procs": procs,
    })

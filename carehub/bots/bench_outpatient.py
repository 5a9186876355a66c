"""Outpatient benchmarks (issue #4): a release burst on the booking API and a live waiting queue.

Both drive a hub only over its public API, as patients' phones and a doctor's screen would:

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
    answers beyond the slots), ``double_booked`` counts patients holding more than one booking.

``queue``
    ``--waiting`` patients (default 200) book one session of ``--queue-doctor`` today (fee 0, a
    whole-day check-in window set by the admin), check in with their visit QR code, and subscribe
    to the session's queue topic over a WebSocket. The doctor then calls the next patient
    ``--calls`` times (default 20), one call every ``--call-interval`` s. For each call, each
    patient still connected counts the time from the doctor sending the call to the first
    ``queue.positions`` frame at or after the version the call produced. Results: ``waiting``,
    ``calls``, ``samples``, ``p50_ms``/``p99_ms``/``max_ms``, ``late`` (samples over 1 s) and
    ``missed`` (a patient that never saw a call's positions).

Patients are made fresh every run (new phones and synthetic ID numbers with a valid GB 11643
check digit). The hub limits SMS codes and sign-ins per client address, so each group of ten
patients signs in from its own loopback address (127.x.y.z), as people on their own phones do.
"""

from __future__ import annotations

import argparse
import array
import collections
import contextlib
import datetime as dt
import multiprocessing.connection
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import orjson
import trio

from carehub.bots.bench import (
    DEMO_TOTP_SECRET,
    CallFailed,
    Frame,
    LeanHTTP,
    LeanWS,
    ServerClosed,
    Worker,
    Workers,
    _array_bytes,
    client_frame,
    emit,
    latency_fields,
    merge_samples,
    note,
    open_session,
    raise_nofile_limit,
    rounded,
    sign_in,
    split,
)
from carehub.bots.faceid_sim import check_digit

BEIJING = dt.timezone(dt.timedelta(hours=8))
#: patients signing in from one source address (the hub allows 10 SMS codes a minute per address)
PATIENTS_PER_ADDRESS = 10
ANSWER_TIMEOUT = 60.0
#: patients open the app (one signed-in request) in the last this many seconds before the release
WARM_BEFORE = 14.0
#: a patient whose sign-in lost its connection starts over (as someone new) this many times in all
TRANSPORT_ATTEMPTS = 3


class Refused(Exception):
    pass


def _json(status: int, payload: bytes, what: str, *expected: int) -> Any:
    if status not in expected:
        raise Refused(f"{what}: HTTP {status} {payload[:200].decode(errors='replace')}")
    return orjson.loads(payload) if payload else None


def identity(run_base: int, i: int) -> tuple[str, str, str]:
    """A made-up phone, name and ID number (valid check digit, adult) for patient ``i`` of a run."""
    phone = f"17{(run_base + i) % 10**9:09d}"
    born = dt.date(1950, 1, 1) + dt.timedelta(days=(run_base // 7 + i // 900) % 18000)
    first17 = f"110101{born:%Y%m%d}{i % 900 + 100:03d}"
    return phone, f"压测患者{i}", first17 + check_digit(first17)


class OutpatientWorker(Worker):
    """A client process for the outpatient workloads (the hub workloads' commands stay available)."""

    def __init__(self, conn: multiprocessing.connection.Connection, index: int, url: str, src: str | None) -> None:
        super().__init__(conn, index, url, src)
        self.bots: list[LeanHTTP | LeanWS | None] = []
        #: release-burst over /ws: each patient's held connection, by token
        self.burst_ws: dict[str, LeanWS] = {}
        self.queue_seen: list[dict[int, float]] = []

    # -- patients

    async def cmd_provision(self, people: list[tuple[int, str, str, str]], sms_url: str, net: int,
                            concurrency: int = 64) -> dict[str, Any]:
        """Sign in by SMS, add oneself, pass the face check; ``people`` are ``(i, phone, name, id_number)``."""
        sms = httpx.URL(sms_url)
        limiter = trio.CapacityLimiter(concurrency)
        made: list[tuple[int, str, str]] = []
        errors: collections.Counter[str] = collections.Counter()

        async def one(i: int, phone: str, name: str, id_number: str) -> None:
            group = i // PATIENTS_PER_ADDRESS
            src = f"127.{net}.{group // 250}.{2 + group % 250}"
            async with limiter:
                for attempt in range(TRANSPORT_ATTEMPTS):
                    try:
                        made.append((i, *await self._make_patient(src, sms, phone, name, id_number)))
                        return
                    except (Refused, KeyError, IndexError) as err:  # an answer, not a lost connection
                        errors[f"{type(err).__name__}: {str(err)[:120]}"] += 1
                        return
                    except (OSError, ConnectionError, trio.BrokenResourceError) as err:
                        # a connection lost on the way: the person starts over as someone new, from an
                        # address of their own (the old one may have used its SMS codes for the minute)
                        if attempt == TRANSPORT_ATTEMPTS - 1:
                            errors[f"{type(err).__name__}: {str(err)[:120]}"] += 1
                        again = i * TRANSPORT_ATTEMPTS + attempt
                        phone, name, id_number = identity(9 * 10**8 + self.index * 10**7, again)
                        src = f"127.{net}.{100 + again // 250 % 150}.{2 + again % 250}"

        async with trio.open_nursery() as nursery:
            for person in people:
                nursery.start_soon(one, *person)
        return {"made": made, "errors": dict(errors.most_common(5)), "failed": sum(errors.values())}

    async def _make_patient(self, src: str, sms: httpx.URL, phone: str, name: str, id_number: str) -> tuple[str, str]:
        """One person signed in by SMS code, added as "self" and face-checked: ``(token, patient id)``."""
        hub = await LeanHTTP.open(self.host, self.port, src)
        sim = await LeanHTTP.open(sms.host, sms.port or 80, None)
        try:
            _json(*await hub.post("/api/v1/auth/sms-code", orjson.dumps({"phone": phone}), None), "sms-code", 200)
            status, payload = await sim.request("GET", f"/_sim/messages?phone={phone}&limit=1")
            code = _json(status, payload, "sms sim", 200)["messages"][0]["params"]["code"]
            login = _json(*await hub.post("/api/v1/auth/sms-login",
                                          orjson.dumps({"phone": phone, "code": code}), None), "login", 200)
            auth = f"Bearer {login['token']}"
            person = _json(*await hub.post("/api/v1/me/patients", orjson.dumps(
                {"name": name, "id_number": id_number, "relation": "self"}), auth), "add patient", 201)
            pid = person["id"]
            started = _json(*await hub.post(f"/api/v1/me/patients/{pid}/face", b"{}", auth), "face", 200)
            page = httpx.URL(started["url"])
            face = await LeanHTTP.open(page.host, page.port or 80, None)
            try:  # the person does the face check at the provider's page (302 back to us)
                _json(*await face.request("GET", page.raw_path.decode()), "face page", 302, 200)
            finally:
                await trio.aclose_forcefully(face.stream)
            result = _json(*await hub.post(f"/api/v1/me/patients/{pid}/face/result", b"{}", auth), "face result", 200)
            if result["status"] != "passed":
                raise Refused(f"face check {result['status']}: {result.get('reason')}")
            return login["token"], pid
        finally:
            await trio.aclose_forcefully(hub.stream)
            await trio.aclose_forcefully(sim.stream)

    # -- release burst

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
            _keep(grp, ws, self._hold_replies)

        await _for_each(tokens, one)
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
        ``nice``: this process's nice level meanwhile (docs/benchmarks.md, "release-burst in session 13").
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
            return {"lat": _array_bytes(lat), "outcomes": dict(outcomes), "booked": booked, "last_booked": last_booked}

        async with trio.open_nursery() as nursery:
            for k, (token, body) in enumerate(requests):
                nursery.start_soon(one, k, token, body)
        for conn in self.bots:
            if isinstance(conn, LeanHTTP):
                await trio.aclose_forcefully(conn.stream)
        self.bots = []
        return {"lat": _array_bytes(lat), "outcomes": dict(outcomes), "booked": booked, "last_booked": last_booked}

    # -- waiting queue

    async def cmd_queue_open(self, tokens: list[str], topic: str) -> dict[str, Any]:
        """One WebSocket per patient, subscribed to the queue's topic; remembers when each version arrived."""
        grp = await self._group("queue")
        self.queue_seen = []
        failed = 0

        async def one(token: str) -> None:
            nonlocal failed
            try:
                ws = await open_session(self.host, self.port, self.src, token, "bench-queue", topic)
            except Exception:
                failed += 1
                return
            seen: dict[int, float] = {}
            self.queue_seen.append(seen)

            def on_frame(_ws: LeanWS, frame: Frame, now: float) -> Frame | None:
                body = frame.get("body")
                if frame.get("op") == "event" and isinstance(body, dict) and "version" in body:
                    seen.setdefault(int(body["version"]), now)
                return None

            ws.handler = on_frame
            _keep(grp, ws, self._hold)

        await _for_each(tokens, one)
        return {"open": len(tokens) - failed}

    async def cmd_queue_collect(self) -> dict[str, Any]:
        return {"seen": [sorted(seen.items()) for seen in self.queue_seen]}


def _keep(grp: Any, ws: LeanWS, hold: Callable[[Any, LeanWS], Awaitable[None]]) -> None:
    """Hold an opened connection in its group (``hold`` answers pings and reads until the group closes)."""
    grp.conns.append(ws)
    assert grp.nursery is not None
    grp.nursery.start_soon(hold, grp, ws)


async def _for_each(tokens: Sequence[str], one: Callable[[str], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        for token in tokens:
            nursery.start_soon(one, token)


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


def worker_main(conn: multiprocessing.connection.Connection, index: int, url: str, src: str | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator stops us
    raise_nofile_limit()
    trio.run(OutpatientWorker(conn, index, url, src).main)


class OutpatientBench:
    def __init__(self, args: argparse.Namespace, url: str, hub_pid: int | None, sms_sim_url: str | None) -> None:
        self.args = args
        self.url = url.rstrip("/")
        self.hub_pid = hub_pid
        self.sms_sim_url = args.sms_sim or sms_sim_url
        if not self.sms_sim_url:
            raise SystemExit("scripts/bench: the outpatient workloads sign patients in by SMS code: give the hub's "
                             "SMS gateway simulator with --sms-sim URL (a hub started by the bench has one)")
        self.http = httpx.Client(base_url=self.url, timeout=120)
        self.net = random.randint(10, 250)
        self.run_base = random.randrange(10**8)
        self.made = 0
        self._admin: str | None = None

    def close(self) -> None:
        self.http.close()

    def admin(self) -> dict[str, str]:
        if self._admin is None:
            self._admin = trio.run(lambda: sign_in(self.url, self.args.admin_login, self.args.admin_password,
                                                   totp_secret=self.args.admin_totp_secret or DEMO_TOTP_SECRET))[0]
        return {"Authorization": f"Bearer {self._admin}"}

    def call(self, method: str, path: str, *expected: int, headers: dict[str, str] | None = None,
             **kwargs: Any) -> Any:
        response = self.http.request(method, path, headers=headers or self.admin(), **kwargs)
        if response.status_code not in (expected or (200,)):
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def patients(self, pool: Workers, n: int) -> list[tuple[str, str]]:
        """``n`` fresh verified patients: ``(token, patient id)`` each."""
        started = time.monotonic()
        people = []
        for k in range(n):
            i = self.made + k
            people.append((i, *identity(self.run_base, i)))
        self.made += n
        replies = pool.all("provision", [
            {"people": part, "sms_url": self.sms_sim_url, "net": self.net} for part in split(people, len(pool))
        ], timeout=3600)
        made = sorted(m for r in replies for m in r["made"])
        failed = sum(r["failed"] for r in replies)
        if failed:
            errors = collections.Counter[str]()
            for r in replies:
                errors.update(r["errors"])
            note(f"patients: {failed} could not be made ready: {dict(errors.most_common(3))}")
        note(f"patients: {len(made)} signed in by SMS and verified by face check in {time.monotonic() - started:.0f} s")
        return [(token, pid) for _i, token, pid in made]

    # -- release burst

    def release_burst(self, requests: int, slots: int) -> None:
        args = self.args
        procs = args.procs or 4
        pool = Workers(procs, self.url, target=worker_main)
        try:
            people = self._reused_patients(pool, requests)
            doctors = [d["id"] for d in self.call("GET", "/api/v1/doctors", params={"limit": 200})["doctors"]]
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
            aheads = self._free_days(doctors, len(args.spread))  # each round books a day of its own
            for spread, ahead in zip(args.spread, aheads, strict=True):
                self._burst(pool, procs, people, doctors, slots, spread, ahead)
        finally:
            pool.close()

    def _reused_patients(self, pool: Workers, n: int) -> list[tuple[str, str]]:
        path = self.args.patients_file
        if path:
            try:
                with open(path, "rb") as f:
                    kept = orjson.loads(f.read())
            except (OSError, orjson.JSONDecodeError):
                kept = {}
            if kept.get("url") == self.url and len(kept.get("people", [])) >= n:
                note(f"patients: {n} reused from {path}")
                return [(token, pid) for token, pid in kept["people"][:n]]
        people = self.patients(pool, n)
        if path:
            with open(path, "wb") as f:
                f.write(orjson.dumps({"url": self.url, "people": people}))
        return people

    def _free_days(self, doctors: list[str], n: int) -> list[int]:
        """``n`` days ahead (20-89) on which none of ``doctors`` has a booking yet (a hub kept from an
        earlier run has full sessions on the days that run used: every request would be "full")."""
        today = dt.datetime.now(BEIJING).date()
        free: list[int] = []
        for ahead in random.sample(range(20, 90), 70):
            day = (today + dt.timedelta(days=ahead)).isoformat()
            if not any(self.call("GET", "/api/v1/admin/bookings", params={
                    "doctor": d, "from": day, "to": day, "limit": 1})["bookings"] for d in doctors):
                free.append(ahead)
                if len(free) == n:
                    return free
        raise SystemExit("scripts/bench: no day 20-89 days ahead is free of bookings for these doctors")

    def _burst(self, pool: Workers, procs: int, people: list[tuple[str, str]], doctors: list[str], slots: int,
               spread: float, ahead: int) -> None:
        """One release: ``slots`` slots over ``doctors`` open at the next whole minute; everyone books once."""
        share = [slots // len(doctors) + (1 if k < slots % len(doctors) else 0) for k in range(len(doctors))]
        doctors = [d for d, n in zip(doctors, share, strict=True) if n]
        share = [n for n in share if n]
        # the release: the next whole minute at least 30 s away (rules open at HH:MM)
        release = (dt.datetime.now(BEIJING) + dt.timedelta(seconds=90)).replace(second=0, microsecond=0)
        day = release.date() + dt.timedelta(days=ahead)
        for doctor, capacity in zip(doctors, share, strict=True):
            self.call("PUT", f"/api/v1/admin/doctors/{doctor}/slot-rule", json={
                "slot_minutes": 5, "daily_max": 500, "quota_app": capacity, "quota_kiosk": 0, "quota_partner": 0,
                "open_days_ahead": ahead, "open_time": f"{release:%H:%M}", "fee_fen": 2500, "hold_minutes": 15})
            roster = self.call("POST", "/api/v1/admin/rosters", 201, json={
                "kind": "extra", "doctor_id": doctor, "reason": "压测放号",
                "sessions": [{"day": day.isoformat(), "period": "am", "room": "压测诊室", "capacity": capacity}]})
            self.call("POST", f"/api/v1/admin/rosters/{roster['id']}/decide", json={"approve": True})
        note(f"release-burst: {slots} slots over {len(doctors)} doctors on {day}, released at {release:%H:%M:%S}"
             f" Beijing time; {len(people)} patients, {procs} client processes")
        picks = [random.randrange(len(doctors)) for _ in people]
        bodies = [(token, orjson.dumps({"patient_id": pid, "doctor_id": doctors[pick], "day": day.isoformat(),
                                         "period": "am"}))
                  for (token, pid), pick in zip(people, picks, strict=True)]
        parts = split(bodies, procs)
        at = release.timestamp() + 0.05
        note(f"release-burst: waiting {at - time.time():.0f} s for the release")
        replies = pool.all("burst", [{"at": at, "spread": spread, "requests": part, "via": self.args.via,
                                      "nice": self.args.client_nice}
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
            rows = self.call("GET", "/api/v1/admin/bookings", params={
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
            "bench": "release-burst", "url": self.url,
            "requests": len(people), "slots": slots, "doctors": len(doctors),
            "booked": n_booked, "full": outcomes.pop("full", 0), "other": dict(outcomes),
            "oversold": oversold, "double_booked": double_booked, "unanswered": unanswered,
            "bookings_in_hub": len(active),
            **latency_fields(lat),
            "bookings_per_s": rounded(n_booked / max(last_booked - release.timestamp(), 1e-3), 1),
            "spread_s": spread,
            "via": self.args.via,
            "client_procs": procs,
        })

    # -- waiting queue

    def queue(self, waiting: int) -> None:
        args = self.args
        procs = args.procs or 2
        pool = Workers(procs, self.url, target=worker_main)
        try:
            people = self.patients(pool, waiting)
            totp = args.admin_totp_secret or DEMO_TOTP_SECRET  # the demo staff share one TOTP secret
            doctor_token, doctor = trio.run(lambda: sign_in(
                self.url, args.queue_doctor, args.doctor_password, totp_secret=totp))
            doctor_id = doctor["id"]
            now = dt.datetime.now(BEIJING)
            self.call("PUT", f"/api/v1/admin/doctors/{doctor_id}/slot-rule", json={
                "slot_minutes": 5, "daily_max": 500, "quota_app": waiting, "quota_kiosk": 0, "quota_partner": 0,
                "open_days_ahead": 7, "open_time": "00:00", "fee_fen": 0, "checkin_before_minutes": 1440,
                "checkin_after_minutes": 240})
            period = "night"
            roster = self.call("POST", "/api/v1/admin/rosters", 201, json={
                "kind": "extra", "doctor_id": doctor_id, "reason": "压测候诊",
                "sessions": [{"day": now.date().isoformat(), "period": period, "room": "压测诊室",
                              "start": f"{now:%H:%M}", "capacity": waiting}]})
            self.call("POST", f"/api/v1/admin/rosters/{roster['id']}/decide", json={"approve": True})
            started = time.monotonic()
            trio.run(self._book_and_check_in, people, doctor_id, now.date(), period)
            note(f"queue: {len(people)} patients booked and checked in ({time.monotonic() - started:.0f} s)")
            topic = f"queue/{doctor_id}:{now.date().isoformat()}:{period}"
            opened = sum(r["open"] for r in pool.all("queue_open", [
                {"tokens": [t for t, _ in part], "topic": topic} for part in split(people, procs)]))
            note(f"queue: {opened} patients watching {topic}; the doctor calls {args.calls} times")
            doctor_auth = {"Authorization": f"Bearer {doctor_token}"}
            calls: list[tuple[float, int]] = []  # (monotonic send time, version the call produced)
            time.sleep(1.0)
            for _ in range(args.calls):
                sent = time.monotonic()
                view = self.call("POST", f"/api/v1/doctor/queue/{period}/next", headers=doctor_auth, json={})
                calls.append((sent, int(view["version"])))
                time.sleep(args.call_interval)
            time.sleep(1.0)
            seen = [dict(s) for r in pool.all("queue_collect") for s in r["seen"]]
            samples: list[float] = []
            missed = 0
            for versions in seen:
                ordered = sorted(versions.items())
                for sent, version in calls:
                    first = next((t for v, t in ordered if v >= version), None)
                    if first is None:
                        missed += 1
                    else:
                        samples.append((first - sent) * 1000.0)
            samples.sort()
            emit({
                "bench": "queue", "url": self.url, "waiting": len(people), "watching": opened,
                "calls": len(calls), "samples": len(samples), **latency_fields(samples),
                "late": sum(1 for s in samples if s > 1000.0), "missed": missed,
                "call_interval_s": args.call_interval,
            })
        finally:
            pool.close()

    async def _book_and_check_in(self, people: Sequence[tuple[str, str]], doctor_id: str, day: dt.date,
                                 period: str) -> None:
        limiter = trio.CapacityLimiter(32)

        async def one(token: str, pid: str) -> None:
            async with limiter, httpx.AsyncClient(base_url=self.url, timeout=60,
                                                  headers={"Authorization": f"Bearer {token}"}) as http:
                booked = await http.post("/api/v1/me/bookings", json={
                    "patient_id": pid, "doctor_id": doctor_id, "day": day.isoformat(), "period": period})
                if booked.status_code != 201:
                    raise RuntimeError(f"queue: booking failed: {booked.status_code} {booked.text[:200]}")
                booking = (await http.get(f"/api/v1/me/bookings/{booked.json()['booking_id']}")).json()
                checked = await http.post(f"/api/v1/me/bookings/{booking['booking_id']}/check-in",
                                          json={"code": booking["visit_code"]})
                if checked.status_code != 200:
                    raise RuntimeError(f"queue: check-in failed: {checked.status_code} {checked.text[:200]}")

        async with trio.open_nursery() as nursery:
            for token, pid in people:
                nursery.start_soon(one, token, pid)


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or a comma-separated list, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("seconds must be >= 0")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    group.add_argument("--patients-file", help="release-burst: keep the signed-in patients (tokens) in this JSON file"
                       " and reuse them on a later run against the same hub (its data kept), skipping the minutes"
                       " of sign-ins; made afresh when the file is missing, for another URL or too short")


def run(name: str, args: argparse.Namespace, url: str, hub_pid: int | None, sms_sim_url: str | None) -> None:
    bench = OutpatientBench(args, url, hub_pid, sms_sim_url)
    try:
        if name == "release-burst":
            bench.release_burst(args.requests, args.slots)
        else:
            bench.queue(args.waiting)
    finally:
        bench.close()



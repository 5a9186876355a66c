"""``queue``: a live waiting queue; how soon each waiting patient sees the doctor's call.


``queue``
    ``--waiting`` patients (default 200) book one session of ``--queue-doctor`` today (fee 0, a
    whole-day check-in window set by the admin), check in with their visit QR code, and subscribe
    to the session's queue topic over a WebSocket. The doctor then calls the next patient
    ``--calls`` times (default 20), one call every ``--call-interval`` s. For each call, each
    patient still connected counts the time from the doctor sending the call to the first
    ``queue.positions`` frame at or after the version the call produced. Results: ``waiting``,
"""

from __future__ import annotations

import datetime as dt
import multiprocessing.connection
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx
import trio

from .accounts import DEMO_TOTP_SECRET, sign_in
from .report import emit, latency_fields, note, split
from .wire import Frame, LeanWS, open_session
from .worker import WorkerBase, for_each, keep

if TYPE_CHECKING:
    from .session import Bench

BEIJING = dt.timezone(dt.timedelta(hours=8))


class QueueCommands(WorkerBase):
    """A worker's side of ``queue``: patients watching the session's queue topic."""

    def __init__(self, conn: multiprocessing.connection.Connection, index: int, url: str, src: str | None) -> None:
        super().__init__(conn, index, url, src)
        self.queue_seen: list[dict[int, float]] = []

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
            keep(grp, ws, self._hold)

        await for_each(tokens, one)
        return {"open": len(tokens) - failed}

    async def cmd_queue_collect(self) -> dict[str, Any]:
        return {"seen": [sorted(seen.items()) for seen in self.queue_seen]}


def run(bench: Bench, waiting: int) -> None:
    args = bench.args
    procs = args.procs or 2
    pool = bench.workers(procs)
    try:
        people = bench.patients(pool, waiting)
        totp = args.admin_totp_secret or DEMO_TOTP_SECRET  # the demo staff share one TOTP secret
        doctor_token, doctor = trio.run(lambda: sign_in(
            bench.url, args.queue_doctor, args.doctor_password, totp_secret=totp))
        doctor_id = doctor["id"]
        now = dt.datetime.now(BEIJING)
        bench.call("PUT", f"/api/v1/admin/doctors/{doctor_id}/slot-rule", json={
            "slot_minutes": 5, "daily_max": 500, "quota_app": waiting, "quota_kiosk": 0, "quota_partner": 0,
            "open_days_ahead": 7, "open_time": "00:00", "fee_fen": 0, "checkin_before_minutes": 1440,
            "checkin_after_minutes": 240})
        period = "night"
        roster = bench.call("POST", "/api/v1/admin/rosters", 201, json={
            "kind": "extra", "doctor_id": doctor_id, "reason": "压测候诊",
            "sessions": [{"day": now.date().isoformat(), "period": period, "room": "压测诊室",
                          "start": f"{now:%H:%M}", "capacity": waiting}]})
        bench.call("POST", f"/api/v1/admin/rosters/{roster['id']}/decide", json={"approve": True})
        started = time.monotonic()
        trio.run(_book_and_check_in, bench, people, doctor_id, now.date(), period)
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
            view = bench.call("POST", f"/api/v1/doctor/queue/{period}/next", headers=doctor_auth, json={})
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
            "bench": "queue", "url": bench.url, "waiting": len(people), "watching": opened,
            "calls": len(calls), "samples": len(samples), **latency_fields(samples),
            "late": sum(1 for s in samples if s > 1000.0), "missed": missed,
            "call_interval_s": args.call_interval,
        })
    finally:
        bench.release(pool)


async def _book_and_check_in(bench: Bench, people: Sequence[tuple[str, str]], doctor_id: str, day: dt.date,
                             period: str) -> None:
    limiter = trio.CapacityLimiter(32)

    async def one(token: str, pid: str) -> None:
        async with limiter, httpx.AsyncClient(base_url=bench.url, timeout=60,
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

"""Booking for patients and partner channels, the blacklist, visit QR codes (OUT-2, OUT-3, OUT-8, SCH-7, SCH-10).

The slot pool actor decides; this module checks what needs storage first (the patient belongs
to the account and is real-name verified, the blacklist) and then asks the pool. The booking id
is chosen here, so a client retrying after a lost answer (``client_ref``) finds its booking.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import time
import uuid
from typing import Any

import trio

from carehub.actors.slot_pool import (
    BEIJING,
    Book,
    CancelBooking,
    CheckIn,
    GetBooking,
    GetPool,
    pool_address,
)
from carehub.hub import Hub, Refusal
from carehub.identity.patients import Patients
from carehub.storage.audit import AuditEntry, AuditLog
from carehub.storage.db import Database
from carehub.storage.keyring import KeyRing

from .admission import Place, PoolGates
from .codes import BadCode, seal, unseal
from .errors import BookingRefused

log = logging.getLogger(__name__)

QR_DOMAIN = "visit-qr"
#: Bookings check the blacklist in memory: :meth:`Bookings.keep_bans_fresh` reads it again every
#: ``BANS_REFRESH_SECONDS``, so a change made on another node counts within that time (changes made
#: here count at once). A booking reads it itself, and waits, only when the copy is older than
#: ``BANS_MAX_AGE_SECONDS`` (no refresher runs, or storage was down): at a release the first
#: bookings otherwise all waited for that read, in the loop turns of thousands of requests.
BANS_REFRESH_SECONDS = 10.0
BANS_MAX_AGE_SECONDS = 30.0


def booking_id_for(account_id: str, client_ref: str | None) -> str:
    """A client's own reference gives the same booking id on every retry."""
    if client_ref:
        return hashlib.sha256(f"{account_id}\x00{client_ref}".encode()).hexdigest()[:24]
    return uuid.uuid4().hex[:24]


class Bookings:
    def __init__(self, db: Database, hub: Hub, patients: Patients, keyring: KeyRing, audit: AuditLog) -> None:
        self.db = db
        self.hub = hub
        self.patients = patients
        self.keyring = keyring
        self.audit = audit
        #: the pools' gates and the sold-out board (admission in a release burst)
        self.gates = PoolGates()
        #: patient -> the active blacklist entry ending last; read at ``_bans_read`` (monotonic)
        self._bans: dict[str, dict[str, Any]] = {}
        self._bans_read = -math.inf
        self._bans_lock = trio.Lock()
        self._bans_generation = 0

    # ---- search ----------------------------------------------------------------------------

    async def sessions(
        self, *, department_id: str | None, doctor_id: str | None, name: str | None, specialty: str | None,
        day_from: dt.date, days: int,
    ) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT s.*, a.display_name AS doctor_name, d.title, d.specialty FROM clinic_sessions s"
            " JOIN accounts a ON a.id = s.doctor_id JOIN doctors d ON d.account_id = s.doctor_id"
            " WHERE s.day >= $1 AND s.day < $2 AND ($3::varchar IS NULL OR s.department_id = $3)"
            " AND ($4::varchar IS NULL OR s.doctor_id = $4) AND ($5::varchar IS NULL OR a.display_name LIKE $5)"
            " AND ($6::varchar IS NULL OR d.specialty LIKE $6) AND s.status = 'open'"
            " ORDER BY s.day, s.starts_at, s.doctor_id LIMIT 500",
            day_from, day_from + dt.timedelta(days=days), department_id, doctor_id,
            f"%{name}%" if name else None, f"%{specialty}%" if specialty else None,
        )
        out = []
        for r in rows:
            out.append({
                "session_id": r["id"], "doctor_id": r["doctor_id"], "doctor_name": r["doctor_name"],
                "title": r["title"], "specialty": r["specialty"], "department_id": r["department_id"],
                "day": r["day"].isoformat(), "period": r["period"], "room": r["room"],
                "starts_at": r["starts_at"].isoformat(), "capacity": r["capacity"],
                "free": r["capacity"] - r["booked"], "fee_fen": r["fee_fen"], "opens_at": r["opens_at"].isoformat(),
            })
        return out

    async def pool(self, doctor_id: str, day: dt.date, account_id: str | None) -> dict[str, Any]:
        reply: dict[str, Any] = await self.hub.ask(pool_address(doctor_id, day), GetPool(account_id))
        return reply

    # ---- booking ---------------------------------------------------------------------------

    async def blacklisted(self, patient_id: str, now: dt.datetime) -> dict[str, Any] | None:
        row = await self.db.fetchrow(
            "SELECT id, until, reason FROM blacklist WHERE patient_id = $1 AND until > $2 AND removed_at IS NULL"
            " ORDER BY until DESC LIMIT 1", patient_id, now,
        )
        return None if row is None else dict(row)

    async def _banned(self, patient_id: str, now: dt.datetime) -> dict[str, Any] | None:
        """The patient's active blacklist entry, from the in-memory copy of the active entries."""
        if time.monotonic() - self._bans_read > BANS_MAX_AGE_SECONDS:
            await self._read_bans(BANS_MAX_AGE_SECONDS)
        ban = self._bans.get(patient_id)
        return ban if ban is not None and ban["until"] > now else None

    async def _read_bans(self, older_than: float) -> None:
        """Read the active entries again if the copy is older than ``older_than`` s (one read for all waiting)."""
        async with self._bans_lock:
            while time.monotonic() - self._bans_read > older_than:
                read_at, generation = time.monotonic(), self._bans_generation
                rows = await self.db.fetch(
                    "SELECT DISTINCT ON (patient_id) id, patient_id, until, reason FROM blacklist"
                    " WHERE until > $1 AND removed_at IS NULL ORDER BY patient_id, until DESC", dt.datetime.now(dt.UTC),
                )
                if generation == self._bans_generation:  # else a change landed during the read: read again
                    self._bans = {r["patient_id"]: dict(r) for r in rows}
                    self._bans_read = read_at

    async def keep_bans_fresh(self) -> None:
        """Read the blacklist every ``BANS_REFRESH_SECONDS`` for the app's life, so bookings never wait for it."""
        while True:
            try:
                await self._read_bans(BANS_REFRESH_SECONDS / 2)
            except Exception as err:  # storage down: bookings read it themselves once the copy is too old
                log.warning("could not read the blacklist: %s", err)
            await trio.sleep(BANS_REFRESH_SECONDS)

    async def _bans_changed(self) -> None:
        """A change made here counts for the next booking: the copy is read again before this returns."""
        self._bans_generation += 1  # a read already under way started before the change: it reads again
        self._bans_read = -math.inf
        try:
            await self._read_bans(BANS_MAX_AGE_SECONDS)
        except Exception as err:  # the change is made; the next booking reads the copy itself
            log.warning("could not read the blacklist after a change: %s", err)

    async def book(
        self, *, account_id: str, patient_id: str, doctor_id: str, day: dt.date, period: str, channel: str,
        slot_no: int | None = None, client_ref: str | None = None, revisit: bool = False, label: str | None = None,
        place: Place | None = None,
    ) -> dict[str, Any]:
        """Book through the pool's gate: wait for a place there, or with the ``place`` that
        :meth:`PoolGates.admit` gave this request (its waiter was admitted); the place is left after."""
        address = pool_address(doctor_id, day)
        board_key = (address, period, channel)
        gate = place.gate if place is not None else await self.gates.enter(address, board_key, client_ref)
        try:
            self.gates.check_sold_out(board_key, client_ref)  # it may have sold out while we waited
            return await self._book(address, board_key, account_id=account_id, patient_id=patient_id,
                                    period=period, channel=channel, slot_no=slot_no, client_ref=client_ref,
                                    revisit=revisit, label=label)
        finally:
            gate.leave()

    async def _book(
        self, address: str, board_key: tuple[str, str, str], *, account_id: str, patient_id: str, period: str,
        channel: str, slot_no: int | None, client_ref: str | None, revisit: bool, label: str | None,
    ) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        if label is None:
            label = await self.patients.for_booking(account_id, patient_id)
        ban = await self._banned(patient_id, now)
        if ban is not None:
            until = ban["until"].astimezone(BEIJING).strftime("%Y-%m-%d")
            raise BookingRefused(f"因{ban['reason']}, 该就诊人 {until} 前不能预约 (blacklisted until {until})",
                                 status=403, code="blacklisted")
        message = Book(booking_id_for(account_id, client_ref), period, patient_id, account_id, label, channel,
                       slot_no, revisit)
        self.gates.check_sold_out(board_key, client_ref)  # it may have sold out while we read
        try:
            reply: dict[str, Any] = await self.hub.ask(address, message)
        except Refusal as err:
            if err.code == "full":
                self.gates.sold_out(address, board_key, err.message)
            raise
        return reply

    async def locate(self, booking_id: str) -> tuple[str, dict[str, Any]]:
        """The pool address and the projection row of a booking."""
        row = await self.db.fetchrow("SELECT * FROM bookings WHERE id = $1", booking_id)
        if row is None:
            raise BookingRefused("没有这个预约 (no such booking)", status=404, code="not_found")
        return pool_address(row["doctor_id"], row["day"]), dict(row)

    async def get(self, booking_id: str, account_id: str | None) -> dict[str, Any]:
        address, row = await self.locate(booking_id)
        if account_id is not None and row["account_id"] != account_id:
            raise BookingRefused("没有这个预约 (no such booking)", status=404, code="not_found")
        reply: dict[str, Any] = await self.hub.ask(address, GetBooking(booking_id))
        return reply

    async def cancel(self, booking_id: str, account_id: str | None, reason: str) -> dict[str, Any]:
        address, row = await self.locate(booking_id)
        if account_id is not None and row["account_id"] != account_id:
            raise BookingRefused("没有这个预约 (no such booking)", status=404, code="not_found")
        reply: dict[str, Any] = await self.hub.ask(address, CancelBooking(booking_id, account_id, reason))
        return reply

    async def mine(self, account_id: str, *, since: dt.date | None = None) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT b.*, a.display_name AS doctor_name, s.room FROM bookings b JOIN accounts a ON a.id = b.doctor_id"
            " JOIN clinic_sessions s ON s.id = b.session_id"
            " WHERE b.account_id = $1 AND ($2::date IS NULL OR b.day >= $2) ORDER BY b.slot_at DESC LIMIT 200",
            account_id, since,
        )
        return [_row_view(r) for r in rows]

    async def search(
        self, *, day_from: dt.date | None, day_to: dt.date | None, channel: str | None, patient_id: str | None,
        doctor_id: str | None, department_id: str | None, status: str | None, limit: int,
    ) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT b.*, a.display_name AS doctor_name, s.room FROM bookings b JOIN accounts a ON a.id = b.doctor_id"
            " JOIN clinic_sessions s ON s.id = b.session_id"
            " WHERE ($1::date IS NULL OR b.day >= $1) AND ($2::date IS NULL OR b.day <= $2)"
            " AND ($3::varchar IS NULL OR b.channel = $3) AND ($4::varchar IS NULL OR b.patient_id = $4)"
            " AND ($5::varchar IS NULL OR b.doctor_id = $5) AND ($6::varchar IS NULL OR b.department_id = $6)"
            " AND ($7::varchar IS NULL OR b.status = $7) ORDER BY b.created_at DESC LIMIT $8",
            day_from, day_to, channel, patient_id, doctor_id, department_id, status, limit,
        )
        return [_row_view(r) for r in rows]

    # ---- visit day -------------------------------------------------------------------------

    def visit_code(self, booking: dict[str, Any]) -> str:
        """The signed visit QR payload: booking id and day, sealed with HMAC-SM3 (OUT-8)."""
        return seal(self.keyring, QR_DOMAIN, "CH1.", ".", booking["booking_id"], str(booking["day"]))

    def read_visit_code(self, code: str) -> str:
        try:
            booking_id, _day = unseal(self.keyring, QR_DOMAIN, "CH1.", ".", code, 2)
        except BadCode as err:
            if err.forged:
                raise BookingRefused("就诊二维码无效 (visit code signature does not match)", status=422,
                                     code="bad_code") from None
            raise BookingRefused("无法识别的就诊二维码 (unreadable visit code)", status=422, code="bad_code") from None
        return booking_id

    async def check_in(self, code: str, *, account_id: str | None, by: str) -> dict[str, Any]:
        booking_id = self.read_visit_code(code)
        address, row = await self.locate(booking_id)
        if account_id is not None and row["account_id"] != account_id:
            raise BookingRefused("这不是您的就诊二维码 (not your visit code)", status=403, code="forbidden")
        reply: dict[str, Any] = await self.hub.ask(address, CheckIn(booking_id, account_id))
        await self.audit.append(AuditEntry(action="visit.check_in", target=f"booking/{booking_id}", actor_id=by))
        return reply

    # ---- blacklist -------------------------------------------------------------------------

    async def apply_no_show_rule(self, patient_id: str, now: dt.datetime | None = None) -> dict[str, Any] | None:
        """After a no-show: if the patient now has too many in the window, blacklist them (SCH-10)."""
        now = now or dt.datetime.now(dt.UTC)
        rule = await self.db.fetchrow("SELECT * FROM no_show_rule WHERE id = 1")
        if rule is None or not rule["enabled"]:
            return None
        since = now.astimezone(BEIJING).date() - dt.timedelta(days=rule["window_days"])
        count = await self.db.fetchval(
            "SELECT count(*) FROM no_shows WHERE patient_id = $1 AND day > $2", patient_id, since
        )
        if count < rule["max_no_shows"]:
            return None
        active = await self.blacklisted(patient_id, now)
        if active is not None:
            return None
        # no-shows counted by an earlier entry (lifted by an admin or expired) are not counted again
        last = await self.db.fetchval("SELECT max(since) FROM blacklist WHERE patient_id = $1", patient_id)
        if last is not None:
            count = await self.db.fetchval(
                "SELECT count(*) FROM no_shows WHERE patient_id = $1 AND day > $2 AND recorded_at > $3",
                patient_id, since, last,
            )
            if count < rule["max_no_shows"]:
                return None
        entry_id = uuid.uuid4().hex[:16]
        until = now + dt.timedelta(days=rule["ban_days"])
        reason = f"{rule['window_days']}天内爽约{count}次"
        await self.db.execute(
            "INSERT INTO blacklist (id, patient_id, since, until, reason, created_by)"
            " VALUES ($1, $2, $3, $4, $5, 'system')",
            entry_id, patient_id, now, until, reason,
        )
        await self._bans_changed()
        await self.audit.append(AuditEntry(action="blacklist.add", target=f"patient/{patient_id}", actor_id=None,
                                           detail={"entry": entry_id, "until": until.isoformat(), "reason": reason}))
        return {"id": entry_id, "until": until, "reason": reason}

    async def lift(self, entry_id: str, actor_id: str, reason: str) -> None:
        if not reason.strip():
            raise BookingRefused("解除黑名单需要填写原因", status=422, code="invalid")
        done = await self.db.execute(
            "UPDATE blacklist SET removed_at = $2, removed_by = $3, removal_reason = $4"
            " WHERE id = $1 AND removed_at IS NULL",
            entry_id, dt.datetime.now(dt.UTC), actor_id, reason[:200],
        )
        await self._bans_changed()
        if done.endswith(" 0"):
            raise BookingRefused("没有这条有效的黑名单记录 (no such active entry)", status=404, code="not_found")
        await self.audit.append(AuditEntry(action="blacklist.remove", target=f"blacklist/{entry_id}",
                                           actor_id=actor_id, detail={"reason": reason[:200]}))

    async def blacklist(self, *, active_only: bool = True) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT * FROM blacklist WHERE NOT $1 OR (removed_at IS NULL AND until > $2) ORDER BY since DESC LIMIT 500",
            active_only, dt.datetime.now(dt.UTC),
        )
        return [{k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in dict(r).items()} for r in rows]


def _row_view(r: Any) -> dict[str, Any]:
    return {
        "booking_id": r["id"], "session_id": r["session_id"], "doctor_id": r["doctor_id"],
        "doctor_name": r["doctor_name"], "department_id": r["department_id"], "room": r["room"],
        "day": r["day"].isoformat(), "slot_no": r["slot_no"], "slot_at": r["slot_at"].isoformat(),
        "patient_id": r["patient_id"], "account_id": r["account_id"], "channel": r["channel"], "status": r["status"],
        "fee_fen": r["fee_fen"], "created_at": r["created_at"].isoformat(), "note": r["note"],
    }


__all__ = ["BookingRefused", "Bookings", "Refusal", "booking_id_for"]

"""Booking for patients and partner channels, the blacklist, visit QR codes (OUT-2, OUT-3, OUT-11, SCH-7, SCH-10).

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

import segno
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
from carehub.identity.masking import mask_name
from carehub.identity.patients import Patients
from carehub.storage.audit import AuditEntry, AuditLog
from carehub.storage.keyring import KeyRing
from carehub.storage.outpatient import BlacklistStore, BookingStore, SessionStore

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
    def __init__(self, hub: Hub, patients: Patients, keyring: KeyRing, audit: AuditLog, *, store: BookingStore,
                 sessions: SessionStore, blacklist: BlacklistStore) -> None:
        self.store = store
        self.session_store = sessions
        self.blacklist_store = blacklist
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
        """Open sessions to choose from (OUT-2): by department, doctor, name or specialty."""
        return await self.session_store.search(department_id=department_id, doctor_id=doctor_id, name=name,
                                               specialty=specialty, day_from=day_from, days=days)

    async def doctor_card(self, doctor_id: str, today: dt.date) -> dict[str, Any]:
        """A shareable doctor card: who, where, and the free slots of the coming week."""
        row = await self.session_store.doctor(doctor_id)
        if row is None:
            raise BookingRefused("没有这位医生 (no such doctor)", code="not_found")
        upcoming = await self.sessions(department_id=None, doctor_id=doctor_id, name=None, specialty=None,
                                       day_from=today, days=7)
        return {
            "doctor_id": row["id"], "name": row["display_name"], "title": row["title"], "specialty": row["specialty"],
            "department": row["department"], "link": f"/doctors/{row['id']}",
            "title_text": f"{row['department']} {row['display_name']} {row['title']}",
            "free_this_week": sum(s["free"] for s in upcoming),
        }

    async def calls(self, department_id: str, limit: int) -> list[dict[str, Any]]:
        """The hall screen's feed: a department's calls of the last 12 hours, newest first (OUT-12)."""
        rows = await self.session_store.calls(department_id, dt.datetime.now(dt.UTC) - dt.timedelta(hours=12), limit)
        return [{"label": r["patient_label"], "room": r["room"], "kind": r["kind"], "at": r["called_at"].isoformat(),
                 "text": f"请 {r['patient_label']} 到 {r['room']} 就诊"} for r in rows]

    async def pool(self, doctor_id: str, day: dt.date, account_id: str | None) -> dict[str, Any]:
        reply: dict[str, Any] = await self.hub.ask(pool_address(doctor_id, day), GetPool(account_id))
        return reply

    # ---- booking ---------------------------------------------------------------------------

    async def blacklisted(self, patient_id: str, now: dt.datetime) -> dict[str, Any] | None:
        return await self.blacklist_store.active_for(patient_id, now)

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
                bans = await self.blacklist_store.active(dt.datetime.now(dt.UTC))
                if generation == self._bans_generation:  # else a change landed during the read: read again
                    self._bans = bans
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
                                 code="blacklisted")
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
        row = await self.store.get(booking_id)
        if row is None:
            raise BookingRefused("没有这个预约 (no such booking)", code="not_found")
        return pool_address(row["doctor_id"], row["day"]), row

    async def get(self, booking_id: str, account_id: str | None) -> dict[str, Any]:
        address, row = await self.locate(booking_id)
        if account_id is not None and row["account_id"] != account_id:
            raise BookingRefused("没有这个预约 (no such booking)", code="not_found")
        reply: dict[str, Any] = await self.hub.ask(address, GetBooking(booking_id))
        return reply

    async def cancel(self, booking_id: str, account_id: str | None, reason: str) -> dict[str, Any]:
        address, row = await self.locate(booking_id)
        if account_id is not None and row["account_id"] != account_id:
            raise BookingRefused("没有这个预约 (no such booking)", code="not_found")
        reply: dict[str, Any] = await self.hub.ask(address, CancelBooking(booking_id, account_id, reason))
        return reply

    async def mine(self, account_id: str, *, since: dt.date | None = None) -> list[dict[str, Any]]:
        return await self.store.of_account(account_id, since)

    async def search(
        self, *, day_from: dt.date | None, day_to: dt.date | None, channel: str | None, patient_id: str | None,
        doctor_id: str | None, department_id: str | None, status: str | None, limit: int, offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Booking records for admins (SCH-7), newest first, ``offset`` rows skipped."""
        return await self.store.search(day_from=day_from, day_to=day_to, channel=channel, patient_id=patient_id,
                                       doctor_id=doctor_id, department_id=department_id, status=status, limit=limit,
                                       offset=offset)

    async def search_page(
        self, *, day_from: dt.date | None, day_to: dt.date | None, channel: str | None, patient_id: str | None,
        doctor_id: str | None, department_id: str | None, status: str | None, limit: int, offset: int,
    ) -> dict[str, Any]:
        """One page of booking records (SCH-7) and how many the filters find in all."""
        if day_from is not None and day_to is not None and day_to < day_from:
            raise BookingRefused("结束日期不能早于开始日期", code="invalid")
        filters: dict[str, Any] = {"day_from": day_from, "day_to": day_to, "channel": channel,
                                   "patient_id": patient_id, "doctor_id": doctor_id, "department_id": department_id,
                                   "status": status}
        rows = await self.store.search(**filters, limit=limit, offset=offset)
        total = await self.store.count(**filters)
        for row in rows:
            row["patient_name"] = self._masked_name(row.pop("patient_name_enc"))
        return {"bookings": rows, "total": total, "limit": limit, "offset": offset}

    def _masked_name(self, sealed: str | None) -> str | None:
        """A patient's name as staff lists show it: ``张**`` (None: no such patient)."""
        name = self.keyring.open_optional(sealed, field="patients.name")
        return None if name is None else mask_name(name)

    # ---- visit day -------------------------------------------------------------------------

    def visit_code(self, booking: dict[str, Any]) -> str:
        """The signed visit QR payload: booking id and day, sealed with HMAC-SM3 (OUT-11)."""
        return seal(self.keyring, QR_DOMAIN, "CH1.", ".", booking["booking_id"], str(booking["day"]))

    @staticmethod
    def visit_qr(code: str) -> str:
        """The visit code as a QR image: an SVG ``data:`` URI (the pages' CSP allows ``img-src data:``)."""
        return str(segno.make(code, error="m", micro=False).svg_data_uri(scale=8, border=2))

    def read_visit_code(self, code: str) -> str:
        try:
            booking_id, _day = unseal(self.keyring, QR_DOMAIN, "CH1.", ".", code, 2)
        except BadCode as err:
            if err.forged:
                raise BookingRefused("就诊二维码无效 (visit code signature does not match)",
                                     code="bad_code") from None
            raise BookingRefused("无法识别的就诊二维码 (unreadable visit code)", code="bad_code") from None
        return booking_id

    async def check_in(self, code: str, *, account_id: str | None, by: str) -> dict[str, Any]:
        booking_id = self.read_visit_code(code)
        address, row = await self.locate(booking_id)
        if account_id is not None and row["account_id"] != account_id:
            raise BookingRefused("这不是您的就诊二维码 (not your visit code)", code="forbidden")
        reply: dict[str, Any] = await self.hub.ask(address, CheckIn(booking_id, account_id))
        await self.audit.append(AuditEntry(action="visit.check_in", target=f"booking/{booking_id}", actor_id=by))
        return reply

    # ---- blacklist -------------------------------------------------------------------------

    async def apply_no_show_rule(self, patient_id: str, now: dt.datetime | None = None) -> dict[str, Any] | None:
        """After a no-show: if the patient now has too many in the window, blacklist them (SCH-10)."""
        now = now or dt.datetime.now(dt.UTC)
        entry = await self.blacklist_store.ban_for_no_shows(patient_id, now.astimezone(BEIJING).date(), now,
                                                            uuid.uuid4().hex[:16])
        if entry is None:
            return None
        await self._bans_changed()
        await self.audit.append(AuditEntry(action="blacklist.add", target=f"patient/{patient_id}", actor_id=None,
                                           detail={"entry": entry["id"], "until": entry["until"].isoformat(),
                                                   "reason": entry["reason"]}))
        return entry

    async def lift(self, entry_id: str, actor_id: str, reason: str) -> None:
        if not reason.strip():
            raise BookingRefused("解除黑名单需要填写原因", code="invalid")
        lifted = await self.blacklist_store.lift(entry_id, actor_id, reason[:200], dt.datetime.now(dt.UTC))
        await self._bans_changed()
        if not lifted:
            raise BookingRefused("没有这条有效的黑名单记录 (no such active entry)", code="not_found")
        await self.audit.append(AuditEntry(action="blacklist.remove", target=f"blacklist/{entry_id}",
                                           actor_id=actor_id, detail={"reason": reason[:200]}))

    async def blacklist(self, *, active_only: bool = True) -> list[dict[str, Any]]:
        rows = await self.blacklist_store.entries(active_only=active_only, now=dt.datetime.now(dt.UTC))
        for row in rows:
            row["patient_name"] = self._masked_name(row.pop("patient_name_enc"))
        return [{k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in r.items()} for r in rows]

    async def no_show_rule(self) -> dict[str, Any]:
        """The no-show rule in force (SCH-10): who changed it last, and when."""
        rule = await self.blacklist_store.rule()
        return {**rule, "updated_at": rule["updated_at"].isoformat()}

    async def set_no_show_rule(self, *, max_no_shows: int, window_days: int, ban_days: int, enabled: bool,
                               by: str) -> None:
        """The no-show rule (SCH-10): ``max_no_shows`` in ``window_days`` days bans for ``ban_days`` days."""
        if not (1 <= max_no_shows <= 20 and 1 <= window_days <= 365 and 1 <= ban_days <= 365):
            raise BookingRefused("爽约次数 1-20, 统计天数 1-365, 限制天数 1-365", code="invalid")
        await self.blacklist_store.set_rule(max_no_shows=max_no_shows, window_days=window_days, ban_days=ban_days,
                                            enabled=enabled, now=dt.datetime.now(dt.UTC), by=by)
        await self.audit.append(AuditEntry(action="blacklist.rule", target="no_show_rule", actor_id=by, detail={
            "max_no_shows": max_no_shows, "window_days": window_days, "ban_days": ban_days, "enabled": enabled}))


__all__ = ["BookingRefused", "Bookings", "Refusal", "booking_id_for"]

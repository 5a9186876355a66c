"""A doctor's clinic day: its sessions, slots, bookings and their payment (SCH-2..7, OUT-2, OUT-3, OUT-6, OUT-11).

Address ``slotpool/<doctor_id>:<YYYY-MM-DD>``. One actor per doctor and day, so the rules that
span a day ("one slot per patient with the same doctor on the same day") are decided in one
place, one message at a time: a release burst cannot oversell, whatever the concurrency.

Lifecycle of a booking (the table is :data:`BOOKING`; orders :data:`PAY_ORDER`, sessions :data:`SESSION`)::

    held --paid--> booked --check-in--> checked_in --queue--> seen
      |              |                       \\--session closes--> (seen or no-show)
      |              \\--cancel (patient or session)--> cancelled (+ refund)
      \\--hold expires (durable reminder)--> released

A booking without a fee is ``booked`` at once. Payment orders belong to the booking: the pool
records the order, the payment route talks to the gateway, the gateway's signed callback comes
back as :class:`PaymentConfirmed`; a callback for a booking that is no longer waiting for it
(released, cancelled) triggers a refund instead of a booking. Refunds, SMS and HIS pushes are
effects: durable tells performed by the I/O shell with retries.

The ``bookings``, ``clinic_sessions`` and ``payment_orders`` tables are this actor's
projection, written in the same transaction as its state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import Any

import msgspec

from carehub.hub import (
    Address,
    Behaviour,
    Caller,
    Context,
    Decision,
    Deliver,
    Event,
    Lifecycle,
    Record,
    Refusal,
    Remind,
    Tell,
    make_address,
)

from .notifier import notify

CHANNELS = ("app", "kiosk", "partner")
PERIODS = {"am": "上午", "pm": "下午", "night": "夜间"}


class BookingStatus(enum.StrEnum):
    """Where a booking is in its lifecycle (:data:`BOOKING`); the values are the stored and wire ones."""

    HELD = "held"
    BOOKED = "booked"
    CHECKED_IN = "checked_in"
    SEEN = "seen"
    CANCELLED = "cancelled"
    RELEASED = "released"
    NO_SHOW = "no_show"


class PayOrderStatus(enum.StrEnum):
    """A booking's payment order (:data:`PAY_ORDER`)."""

    CREATED = "created"
    PAID = "paid"
    REFUNDING = "refunding"
    REFUNDED = "refunded"


class SessionStatus(enum.StrEnum):
    """A clinic session (:data:`SESSION`): open for booking until cancelled."""

    OPEN = "open"
    CANCELLED = "cancelled"


ACTIVE = frozenset({BookingStatus.HELD, BookingStatus.BOOKED, BookingStatus.CHECKED_IN, BookingStatus.SEEN})
#: how long after a session's end no-shows are recorded (SCH-10)
CLOSE_GRACE = dt.timedelta(minutes=30)
BEIJING = dt.timezone(dt.timedelta(hours=8))


#: a booking's moves, by the message that makes them (the module docstring draws the same picture)
BOOKING: Lifecycle[BookingStatus] = Lifecycle("booking", {
    BookingStatus.HELD: {"PaymentConfirmed": BookingStatus.BOOKED, "ReleaseHold": BookingStatus.RELEASED,
                         "CancelBooking": BookingStatus.CANCELLED, "CancelSession": BookingStatus.CANCELLED},
    BookingStatus.BOOKED: {"CancelBooking": BookingStatus.CANCELLED, "CancelSession": BookingStatus.CANCELLED,
                           "CheckIn": BookingStatus.CHECKED_IN, "CloseSession": BookingStatus.NO_SHOW},
    BookingStatus.CHECKED_IN: {"VisitOutcome": BookingStatus.SEEN},
})
#: a payment order: paid once; a payment for a booking no longer waiting for it, or a cancelled
#: paid booking, is refunded (``refund``); it is ``refunded`` once every part of it is back
PAY_ORDER: Lifecycle[PayOrderStatus] = Lifecycle("payment order", {
    PayOrderStatus.CREATED: {"PaymentConfirmed": PayOrderStatus.PAID},
    PayOrderStatus.PAID: {"refund": PayOrderStatus.REFUNDING},
    PayOrderStatus.REFUNDING: {"RefundSettled": PayOrderStatus.REFUNDED},
})
#: a session takes bookings until cancelled (an OpenSession replaces the whole plan)
SESSION: Lifecycle[SessionStatus] = Lifecycle("session", {
    SessionStatus.OPEN: {"CancelSession": SessionStatus.CANCELLED},
})


class SessionPlan(msgspec.Struct, forbid_unknown_fields=True):
    period: str
    department_id: str
    room: str
    starts_at: dt.datetime
    slot_minutes: int
    capacity: int
    fee_fen: int
    opens_at: dt.datetime
    #: bookings each channel may take; a channel absent here may take none
    quotas: dict[str, int]
    hold_seconds: int = 900
    #: "doctor_day": one active booking per patient with this doctor per day; "session": per session
    one_per: str = "doctor_day"
    #: check-in opens this long before the slot and closes this long after it (OUT-11)
    checkin_before_minutes: int = 60
    checkin_after_minutes: int = 30
    status: SessionStatus = SessionStatus.OPEN
    substitute_id: str | None = None
    substitute_name: str | None = None


class PayOrder(msgspec.Struct):
    """A payment order of a booking. An order with an insurance part (``insurance``, ``mixed``) is
    a med-ins mixed order at the gateway (``mix_trade_no``); it is ``refunded`` only when the cash
    part (WeChat refund) and the insurance part (NHSA 6203 + med-ins refund notify) are both back.
    Fields added later have defaults, so stored states still decode."""

    out_trade_no: str
    method: str  # self | insurance | mixed
    total_fen: int
    insurance_fen: int
    cash_fen: int
    status: PayOrderStatus = PayOrderStatus.CREATED
    transaction_id: str | None = None
    refund_no: str | None = None
    #: everything given back so far (cash + insurance)
    refunded_fen: int = 0
    created_at: dt.datetime | None = None
    mix_trade_no: str | None = None
    cash_refunded_fen: int = 0
    insurance_refunded_fen: int = 0


class Booking(msgspec.Struct):
    id: str
    period: str
    slot_no: int
    slot_at: dt.datetime
    patient_id: str
    account_id: str
    label: str  # masked name for screens, e.g. 张*三
    channel: str
    status: BookingStatus
    fee_fen: int
    created_at: dt.datetime
    updated_at: dt.datetime
    revisit: bool = False
    note: str | None = None
    orders: list[PayOrder] = []


class PoolState(msgspec.Struct):
    doctor_id: str
    day: dt.date
    doctor_name: str = ""
    sessions: dict[str, SessionPlan] = {}
    #: period -> booking id holding each slot (None: free)
    slots: dict[str, list[str | None]] = {}
    bookings: dict[str, Booking] = {}
    closed: list[str] = []


# ---- messages ---------------------------------------------------------------------------------


class OpenSession(msgspec.Struct, forbid_unknown_fields=True):
    """System (roster approval): open a session, or update one (capacity only grows)."""

    plan: SessionPlan
    doctor_name: str = ""


class AddSlots(msgspec.Struct, forbid_unknown_fields=True):
    """System (approved same-day extra slots): ``count`` more slots at the end of the session."""

    period: str
    count: int


class Book(msgspec.Struct, forbid_unknown_fields=True):
    """Take a slot. ``booking_id`` is chosen by the caller so a retry finds the same booking."""

    booking_id: str
    period: str
    patient_id: str
    account_id: str
    label: str
    channel: str = "app"
    slot_no: int | None = None
    revisit: bool = False


class StartPayment(msgspec.Struct, forbid_unknown_fields=True):
    """Record a payment order for a held booking (the route then creates it at the gateway)."""

    booking_id: str
    account_id: str
    method: str = "self"
    insurance_fen: int = 0


class PaymentConfirmed(msgspec.Struct, forbid_unknown_fields=True):
    """The gateway says an order was paid (verified callback or query). Idempotent."""

    out_trade_no: str
    transaction_id: str
    paid_fen: int
    #: the med-ins mixed order's number, for orders with an insurance part (their refund needs it)
    mix_trade_no: str | None = None


class RefundSettled(msgspec.Struct, forbid_unknown_fields=True):
    """One part of an order's refund is back with the patient: ``cash`` (the WeChat refund
    succeeded: ``REFUND.SUCCESS`` callback or the refund effect) or ``insurance`` (the refund
    effect did NHSA 6203 and told WeChat). Idempotent per part; the order is ``refunded`` once
    every part it has is back."""

    out_trade_no: str
    refund_no: str
    refunded_fen: int
    part: str = "cash"  # cash | insurance


class ReleaseHold(msgspec.Struct, forbid_unknown_fields=True):
    """Reminder: an unpaid hold expired. A booking with an insurance (med-ins mixed) order still
    ``created`` is not released yet: that order's paid callback is sent once and retried only for
    about 30 s, so the ``refund/<out_trade_no>`` effect asks the gateway first (:class:`CheckMixedOrder`)
    and answers :class:`PaymentConfirmed` when it was paid, or this message again with ``checked``."""

    booking_id: str
    checked: bool = False


class CancelBooking(msgspec.Struct, forbid_unknown_fields=True):
    booking_id: str
    account_id: str | None  # None: by staff/system
    reason: str = "患者取消"


class CancelSession(msgspec.Struct, forbid_unknown_fields=True):
    """System (approved cancellation): cancel every booking, refund, tell every patient."""

    period: str
    reason: str


class SubstituteSession(msgspec.Struct, forbid_unknown_fields=True):
    period: str
    substitute_id: str
    substitute_name: str
    reason: str


class CheckIn(msgspec.Struct, forbid_unknown_fields=True):
    booking_id: str
    account_id: str | None  # None: at a kiosk or by staff


class VisitOutcome(msgspec.Struct, forbid_unknown_fields=True):
    """From the waiting queue: the doctor marked the patient seen."""

    booking_id: str
    outcome: str  # seen


class CloseSession(msgspec.Struct, forbid_unknown_fields=True):
    """Reminder after a session ends: whoever booked and never came is a no-show."""

    period: str


class GetPool(msgspec.Struct, forbid_unknown_fields=True):
    account_id: str | None = None


class GetBooking(msgspec.Struct, forbid_unknown_fields=True):
    booking_id: str


# ---- messages for other kinds and effects (sent as durable tells) ---------------------------


class JoinQueue(msgspec.Struct, forbid_unknown_fields=True):
    """To ``queue/<session_id>``: a checked-in patient joins the waiting line."""

    booking_id: str
    account_id: str
    label: str
    slot_no: int
    slot_at: dt.datetime
    checked_in_at: dt.datetime
    department_id: str
    room: str
    doctor_name: str
    slot_minutes: int
    revisit: bool = False


class Refund(msgspec.Struct, forbid_unknown_fields=True):
    """Effect ``refund/<out_trade_no>``: refund by the original method (same refund number on retry):
    ``refund_fen`` of the cash part (``total_fen``) through WeChat Pay, and an insurance part
    (``insurance_fen`` > 0) through NHSA 6203 and the med-ins refund notify of ``mix_trade_no``."""

    pool: str
    out_trade_no: str
    refund_no: str
    refund_fen: int
    total_fen: int
    insurance_fen: int
    reason: str
    mix_trade_no: str | None = None


class CloseOrder(msgspec.Struct, forbid_unknown_fields=True):
    """Effect ``refund/<out_trade_no>``: close an unpaid order at the gateway (hold expired);
    ``insurance``: it is a med-ins mixed order too, whose payment is looked up after the close."""

    pool: str
    out_trade_no: str
    insurance: bool = False


class CheckMixedOrder(msgspec.Struct, forbid_unknown_fields=True):
    """Effect ``refund/<out_trade_no>``: was this med-ins mixed order paid after all (its callback
    lost)? Answered to the pool as :class:`PaymentConfirmed` or ``ReleaseHold(checked=True)``."""

    pool: str
    out_trade_no: str
    booking_id: str


class SmsNotice(msgspec.Struct, forbid_unknown_fields=True):
    """Effect ``sms/<id>``: a notice by SMS to an account's phone.

    No longer sent (notices go through the message center, :func:`carehub.actors.notifier.notify`);
    kept so tells stored before the message center still run after an upgrade.
    """

    account_id: str
    text: str


class PushAppointment(msgspec.Struct, forbid_unknown_fields=True):
    """Effect ``his/<booking_id>``: push the booking's current state to the HIS."""

    pool: str
    booking_id: str


class NoShowRecorded(msgspec.Struct, forbid_unknown_fields=True):
    """Effect ``blacklist/<patient_id>``: apply the no-show rule to this patient."""

    patient_id: str


def pool_key(doctor_id: str, day: dt.date) -> str:
    return f"{doctor_id}:{day.isoformat()}"


def session_id(doctor_id: str, day: dt.date, period: str) -> str:
    return f"{doctor_id}:{day.isoformat()}:{period}"


def pool_address(doctor_id: str, day: dt.date) -> Address:
    return make_address("slotpool", pool_key(doctor_id, day))


def parse_pool_key(key: str) -> tuple[str, dt.date]:
    doctor_id, sep, day = key.rpartition(":")
    try:
        if not sep or not doctor_id:
            raise ValueError(key)
        return doctor_id, dt.date.fromisoformat(day)
    except ValueError:
        raise Refusal(f"a slot pool key is '<doctor>:<YYYY-MM-DD>', got {key!r}", code="bad_key") from None


def _fen(fen: int) -> str:
    return f"{fen / 100:.2f}元"


def _local(when: dt.datetime) -> str:
    return when.astimezone(BEIJING).strftime("%m月%d日 %H:%M")


class SlotPool(Behaviour[PoolState]):
    kind = "slotpool"
    state_type = PoolState
    messages = {
        m.__name__: m
        for m in (
            OpenSession, AddSlots, Book, StartPayment, PaymentConfirmed, RefundSettled, ReleaseHold,
            CancelBooking, CancelSession, SubstituteSession, CheckIn, VisitOutcome, CloseSession, GetPool,
            GetBooking,
        )
    }
    #: many patients answered per commit under a release burst (see Hub batching)
    batch_limit = 64
    #: the query tables kept in step with the pools' state (written only by this kind)
    projections = frozenset({"bookings", "clinic_sessions", "payment_orders", "no_shows"})

    def initial(self, key: str) -> PoolState:
        doctor_id, day = parse_pool_key(key)
        return PoolState(doctor_id=doctor_id, day=day)

    def may_call(self, caller: Caller, key: str, message: msgspec.Struct) -> bool:
        # bookings go through the REST routes, which check who may book for whom
        return caller.is_system

    def summary(self, state: PoolState) -> str:
        parts = []
        for period, slots in state.slots.items():
            taken = sum(1 for b in slots if b is not None)
            parts.append(f"{period} {taken}/{len(slots)}")
        return f"{state.doctor_name or state.doctor_id} {state.day}: " + ", ".join(parts)

    # ---- dispatch --------------------------------------------------------------------------

    def handle(self, state: PoolState, message: msgspec.Struct, ctx: Context) -> Decision[PoolState]:
        match message:
            case Book():
                return self._book(state, message, ctx)
            case GetPool(account_id=account_id):
                return Decision.answer(state, self.view(state, ctx.now, account_id))
            case GetBooking(booking_id=booking_id):
                return Decision.answer(state, self._booking_view(state, self._booking(state, booking_id)))
            case StartPayment():
                return self._start_payment(state, message, ctx)
            case PaymentConfirmed():
                return self._payment_confirmed(state, message, ctx)
            case RefundSettled():
                return self._refund_settled(state, message, ctx)
            case ReleaseHold():
                return self._release(state, message, ctx)
            case CancelBooking():
                return self._cancel_booking(state, message, ctx)
            case CheckIn():
                return self._check_in(state, message, ctx)
            case VisitOutcome():
                return self._visit_outcome(state, message, ctx)
            case OpenSession():
                return self._open(state, message, ctx)
            case AddSlots():
                return self._add_slots(state, message, ctx)
            case CancelSession():
                return self._cancel_session(state, message, ctx)
            case SubstituteSession():
                return self._substitute(state, message, ctx)
            case CloseSession(period=period):
                return self._close(state, period, ctx)
        raise Refusal(f"slotpool does not handle {type(message).__name__}")

    # ---- reads -----------------------------------------------------------------------------

    def view(self, state: PoolState, now: dt.datetime, account_id: str | None) -> dict[str, Any]:
        sessions = []
        for period, plan in state.sessions.items():
            slots = state.slots.get(period, [])
            used = self._channel_use(state, period)
            first = self._first_bookable(plan, now)
            free = [i for i in range(first, len(slots)) if slots[i] is None]
            sessions.append({
                "session_id": session_id(state.doctor_id, state.day, period),
                "period": period,
                "period_name": PERIODS.get(period, period),
                "department_id": plan.department_id,
                "room": plan.room,
                "starts_at": plan.starts_at.isoformat(),
                "slot_minutes": plan.slot_minutes,
                "capacity": len(slots),
                "free": len(free),
                "free_by_channel": {
                    ch: max(0, min(len(free), q - used.get(ch, 0))) for ch, q in plan.quotas.items()
                },
                "free_slots": [
                    {"slot_no": i, "at": self._slot_at(plan, i).isoformat()} for i in free[:50]
                ],
                "fee_fen": plan.fee_fen,
                "opens_at": plan.opens_at.isoformat(),
                "open_now": plan.status == SessionStatus.OPEN and plan.opens_at <= now,
                "status": plan.status,
                "substitute_name": plan.substitute_name,
            })
        mine = [
            self._booking_view(state, b) for b in state.bookings.values() if account_id and b.account_id == account_id
        ]
        return {"doctor_id": state.doctor_id, "doctor_name": state.doctor_name, "day": state.day.isoformat(),
                "sessions": sessions, "bookings": mine}

    def _booking_view(self, state: PoolState, b: Booking) -> dict[str, Any]:
        plan = state.sessions[b.period]
        order = b.orders[-1] if b.orders else None
        return {
            "booking_id": b.id,
            "session_id": session_id(state.doctor_id, state.day, b.period),
            "pool": f"{state.doctor_id}:{state.day.isoformat()}",
            "doctor_id": state.doctor_id,
            "doctor_name": state.doctor_name,
            "department_id": plan.department_id,
            "room": plan.room,
            "day": state.day.isoformat(),
            "period": b.period,
            "slot_no": b.slot_no,
            "slot_at": b.slot_at.isoformat(),
            "patient_id": b.patient_id,
            "account_id": b.account_id,
            "channel": b.channel,
            "status": b.status,
            "fee_fen": b.fee_fen,
            "created_at": b.created_at.isoformat(),
            "hold_until": (b.created_at + dt.timedelta(seconds=plan.hold_seconds)).isoformat()
            if b.status == BookingStatus.HELD else None,
            "note": b.note,
            "order": None if order is None else {
                "out_trade_no": order.out_trade_no, "method": order.method, "total_fen": order.total_fen,
                "insurance_fen": order.insurance_fen, "cash_fen": order.cash_fen, "status": order.status,
                "refunded_fen": order.refunded_fen,
            },
        }

    # ---- booking ---------------------------------------------------------------------------

    @staticmethod
    def _slot_at(plan: SessionPlan, slot_no: int) -> dt.datetime:
        return plan.starts_at + dt.timedelta(minutes=plan.slot_minutes * slot_no)

    @staticmethod
    def _first_bookable(plan: SessionPlan, now: dt.datetime) -> int:
        """The first slot whose time is after ``now``: a patient is never given (nor offered) a slot
        whose time has come, so every booking can be cancelled until its visit starts."""
        if now < plan.starts_at:
            return 0
        return (now - plan.starts_at) // dt.timedelta(minutes=plan.slot_minutes) + 1

    @staticmethod
    def _channel_use(state: PoolState, period: str) -> dict[str, int]:
        used: dict[str, int] = {}
        for b in state.bookings.values():
            if b.period == period and b.status in ACTIVE:
                used[b.channel] = used.get(b.channel, 0) + 1
        return used

    @staticmethod
    def _booking(state: PoolState, booking_id: str) -> Booking:
        b = state.bookings.get(booking_id)
        if b is None:
            raise Refusal("没有这个预约 (no such booking)", code="not_found")
        return b

    def _book(self, state: PoolState, m: Book, ctx: Context) -> Decision[PoolState]:
        existing = state.bookings.get(m.booking_id)
        if existing is not None:
            if existing.patient_id != m.patient_id or existing.account_id != m.account_id:
                raise Refusal("预约编号冲突 (booking id already used)", code="conflict")
            return Decision.answer(state, self._booking_view(state, existing))
        plan = state.sessions.get(m.period)
        if plan is None:
            raise Refusal("该时段未开放预约 (no such session)", code="not_found")
        if plan.status != SessionStatus.OPEN:
            raise Refusal("该时段已停诊 (session cancelled)", code="session_cancelled")
        if ctx.now < plan.opens_at:
            raise Refusal(f"尚未开放预约, 开放时间 {_local(plan.opens_at)} (not open yet)", code="not_open")
        slots = state.slots[m.period]
        # only a slot whose time is still to come is given (docs/outpatient.md, "Same-day slots"): slot
        # times rise with the number, so those are the free ones from ``first`` on
        first = self._first_bookable(plan, ctx.now)
        if first >= len(slots):
            raise Refusal("该时段已结束 (session is over)", code="session_over")
        if m.channel not in CHANNELS:
            raise Refusal(f"未知预约渠道 {m.channel!r} (unknown channel)", code="invalid")
        for b in state.bookings.values():
            if b.patient_id == m.patient_id and b.status in ACTIVE and (
                plan.one_per == "doctor_day" or b.period == m.period
            ):
                raise Refusal(
                    "该就诊人当天已预约过该医生, 不能重复预约 (already booked with this doctor that day)",
                    code="duplicate_booking",
                )
        try:
            first_free = slots.index(None, first)
        except ValueError:
            raise Refusal("号源已约满 (fully booked)", code="full") from None
        used = self._channel_use(state, m.period).get(m.channel, 0)
        if used >= plan.quotas.get(m.channel, 0):
            raise Refusal("该渠道号源已约满 (this channel's quota is used up)", code="full")
        if m.slot_no is None:
            slot_no = first_free
        elif first <= m.slot_no < len(slots) and slots[m.slot_no] is None:
            slot_no = m.slot_no
        else:
            raise Refusal("该号已被预约, 请选择其他时间 (slot taken)", code="slot_taken")
        status = BookingStatus.HELD if plan.fee_fen > 0 else BookingStatus.BOOKED
        booking = Booking(
            id=m.booking_id, period=m.period, slot_no=slot_no, slot_at=self._slot_at(plan, slot_no),
            patient_id=m.patient_id, account_id=m.account_id, label=m.label, channel=m.channel, status=status,
            fee_fen=plan.fee_fen, created_at=ctx.now, updated_at=ctx.now, revisit=m.revisit,
        )
        new_slots = list(slots)
        new_slots[slot_no] = booking.id
        new = self._with(
            state, slots={**state.slots, m.period: new_slots}, bookings={**state.bookings, booking.id: booking}
        )
        reminders: tuple[Remind, ...] = ()
        if status == BookingStatus.HELD:
            reminders = (Remind(ctx.now + dt.timedelta(seconds=plan.hold_seconds), ReleaseHold(booking.id),
                                key=f"hold:{booking.id}"),)
            notice = self._notice(new, booking, "booking.held", minutes=str(max(1, plan.hold_seconds // 60)),
                                  amount=_fen(plan.fee_fen))
        else:
            notice = self._notice(new, booking, "booking.confirmed")
        return Decision(
            new,
            reply=self._booking_view(new, booking),
            events=(Event("BookingMade", {"booking": booking.id, "period": m.period, "slot": slot_no,
                                          "channel": m.channel}),),
            reminders=reminders,
            records=(self._booking_record(new, booking), self._session_record(new, m.period)),
            tells=(notice, self._his(ctx, booking)),
        )

    def _start_payment(self, state: PoolState, m: StartPayment, ctx: Context) -> Decision[PoolState]:
        b = self._booking(state, m.booking_id)
        if b.account_id != m.account_id:
            raise Refusal("没有这个预约 (no such booking)", code="not_found")
        if not BOOKING.allows(b.status, "PaymentConfirmed"):
            raise Refusal(f"该预约无需支付 (booking is {b.status})", code="invalid_state")
        if m.method not in ("self", "insurance", "mixed"):
            raise Refusal("支付方式只能是 self, insurance 或 mixed (unknown method)", code="invalid")
        insurance = 0 if m.method == "self" else (b.fee_fen if m.method == "insurance" else m.insurance_fen)
        if not 0 <= insurance <= b.fee_fen or (m.method == "mixed" and not 0 < insurance < b.fee_fen):
            raise Refusal("医保支付金额不正确 (insurance share out of range)", code="invalid")
        for order in b.orders:
            if order.status == PayOrderStatus.CREATED and order.method == m.method and order.insurance_fen == insurance:
                return Decision.answer(state, self._booking_view(state, b))  # the same order again
        order = PayOrder(
            out_trade_no=f"{b.id[:24]}P{len(b.orders) + 1}", method=m.method, total_fen=b.fee_fen,
            insurance_fen=insurance, cash_fen=b.fee_fen - insurance, created_at=ctx.now,
        )
        nb = msgspec.structs.replace(b, orders=[*b.orders, order], updated_at=ctx.now)
        new = self._put(state, nb)
        return Decision(
            new, reply=self._booking_view(new, nb),
            events=(Event("PaymentStarted", {"booking": b.id, "order": order.out_trade_no, "method": m.method}),),
            records=(self._order_record(new, nb, order, ctx.now),),
        )

    def _payment_confirmed(self, state: PoolState, m: PaymentConfirmed, ctx: Context) -> Decision[PoolState]:
        found = self._find_order(state, m.out_trade_no)
        if found is None:
            raise Refusal(f"没有订单 {m.out_trade_no} (no such order)", code="not_found")
        b, order = found
        if not PAY_ORDER.allows(order.status, "PaymentConfirmed"):
            # a repeated or late callback: nothing changes
            return Decision.answer(state, {"status": order.status, "booking_status": b.status, "changed": False})
        if m.paid_fen != order.cash_fen and m.paid_fen != order.total_fen:
            raise Refusal(f"支付金额 {m.paid_fen} 与订单不符 (amount mismatch)", code="amount_mismatch")
        paid = msgspec.structs.replace(order, status=PAY_ORDER.step(order.status, "PaymentConfirmed"),
                                       transaction_id=m.transaction_id,
                                       mix_trade_no=m.mix_trade_no or order.mix_trade_no)
        if BOOKING.allows(b.status, "PaymentConfirmed"):
            nb = self._replace_order(b, paid, status=BOOKING.step(b.status, "PaymentConfirmed"), updated_at=ctx.now)
            new = self._put(state, nb)
            return Decision(
                new, reply={"status": "paid", "booking_status": "booked", "changed": True},
                events=(Event("BookingPaid", {"booking": b.id, "order": order.out_trade_no}),),
                deliveries=(self._step(new, nb, "paid"),),
                cancel_reminders=(f"hold:{b.id}",),
                records=(self._booking_record(new, nb), self._order_record(new, nb, paid, ctx.now)),
                tells=(self._notice(new, nb, "booking.confirmed", step="paid"),
                       self._notice(new, nb, "payment.succeeded", amount=_fen(order.total_fen), item="挂号费",
                                    order_id=order.out_trade_no),
                       self._his(ctx, nb)),
            )
        # paid after the hold expired or the booking was cancelled: give the money back
        refunding = msgspec.structs.replace(paid, status=PAY_ORDER.step(paid.status, "refund"),
                                            refund_no=f"{order.out_trade_no}R")
        nb = self._replace_order(b, refunding, updated_at=ctx.now)
        new = self._put(state, nb)
        why = "取消" if b.status == BookingStatus.CANCELLED else "超时释放"
        return Decision(
            new, reply={"status": "refunding", "booking_status": b.status, "changed": True},
            events=(Event("LatePaymentRefunded", {"booking": b.id, "order": order.out_trade_no}),),
            records=(self._order_record(new, nb, refunding, ctx.now),),
            tells=(self._notice(new, nb, "booking.refunding", reason=why, amount=_fen(order.total_fen),
                                step=order.out_trade_no),
                   self._refund(ctx, refunding, "预约已失效, 自动退款")),
        )

    def _refund_settled(self, state: PoolState, m: RefundSettled, ctx: Context) -> Decision[PoolState]:
        found = self._find_order(state, m.out_trade_no)
        if found is None:
            raise Refusal(f"没有订单 {m.out_trade_no} (no such order)", code="not_found")
        b, order = found
        if order.status == PayOrderStatus.REFUNDED:
            return Decision.answer(state, {"status": order.status, "changed": False})
        if m.part not in ("cash", "insurance"):
            raise Refusal(f"refund part is cash or insurance, not {m.part!r}", code="invalid")
        cash, insurance = order.cash_refunded_fen, order.insurance_refunded_fen
        if m.part == "cash":
            cash = m.refunded_fen
        else:
            insurance = m.refunded_fen
        if (cash, insurance) == (order.cash_refunded_fen, order.insurance_refunded_fen):
            return Decision.answer(state, {"status": order.status, "changed": False})  # this part again
        # a part is back once a refund of it succeeded (a part of 0 fen has nothing to give back)
        both_back = (order.cash_fen == 0 or cash > 0) and (order.insurance_fen == 0 or insurance > 0)
        done = msgspec.structs.replace(order, status=PAY_ORDER.step(order.status, "RefundSettled") if both_back
                                       else order.status,
                                       cash_refunded_fen=cash, insurance_refunded_fen=insurance,
                                       refunded_fen=cash + insurance)
        nb = self._replace_order(b, done, updated_at=ctx.now)
        new = self._put(state, nb)
        if not both_back:
            return Decision(
                new, reply={"status": done.status, "changed": True},
                events=(Event("RefundPartSettled", {"booking": b.id, "order": order.out_trade_no, "part": m.part,
                                                    "fen": m.refunded_fen}),),
                records=(self._order_record(new, nb, done, ctx.now),),
            )
        return Decision(
            new, reply={"status": done.status, "changed": True},
            events=(Event("Refunded", {"booking": b.id, "order": order.out_trade_no, "fen": done.refunded_fen}),),
            records=(self._order_record(new, nb, done, ctx.now),),
            tells=(self._notice(new, nb, "booking.refunded", amount=_fen(done.refunded_fen), step=order.out_trade_no),),
        )

    def _release(self, state: PoolState, m: ReleaseHold, ctx: Context) -> Decision[PoolState]:
        b = state.bookings.get(m.booking_id)
        if b is None or not BOOKING.allows(b.status, "ReleaseHold"):
            return Decision.answer(state, {"released": False})
        unsure = [o for o in b.orders if o.status == PayOrderStatus.CREATED and o.insurance_fen > 0]
        if unsure and not m.checked:
            # poll CREATED mixed orders: a paid one confirms the booking instead of losing the slot
            return Decision(
                state, reply={"released": False, "checking": [o.out_trade_no for o in unsure]},
                tells=tuple(Tell(make_address("refund", o.out_trade_no),
                                 CheckMixedOrder(ctx.address, o.out_trade_no, b.id)) for o in unsure),
            )
        nb = msgspec.structs.replace(b, status=BOOKING.step(b.status, "ReleaseHold"), updated_at=ctx.now,
                                     note="超时未支付")
        new = self._free_slot(self._put(state, nb), nb)
        closes = tuple(
            Tell(make_address("refund", o.out_trade_no), CloseOrder(ctx.address, o.out_trade_no, o.insurance_fen > 0))
            for o in nb.orders if o.status == PayOrderStatus.CREATED
        )
        return Decision(
            new, reply={"released": True},
            events=(Event("HoldReleased", {"booking": b.id, "late_by_s": round(ctx.late_by.total_seconds(), 1)}),),
            records=(self._booking_record(new, nb), self._session_record(new, nb.period)),
            tells=(*closes, self._notice(new, nb, "booking.released"), self._his(ctx, nb)),
        )

    def _cancel_booking(self, state: PoolState, m: CancelBooking, ctx: Context) -> Decision[PoolState]:
        b = self._booking(state, m.booking_id)
        if m.account_id is not None and b.account_id != m.account_id:
            raise Refusal("没有这个预约 (no such booking)", code="not_found")
        BOOKING.step(b.status, "CancelBooking", message=f"该预约当前状态不能取消 ({b.status})", code="invalid_state")
        if m.account_id is not None and ctx.now >= b.slot_at:
            # a patient cancels until the visit starts (a slot is only ever given before its time)
            raise Refusal("就诊时间已到, 不能取消 (too late to cancel)", code="too_late")
        return self._cancel(state, [b], m.reason, ctx, event="CancelBooking")

    def _cancel(
        self, state: PoolState, bookings: list[Booking], reason: str, ctx: Context, *, event: str,
        extra_records: tuple[Record, ...] = (),
    ) -> Decision[PoolState]:
        new = state
        tells: list[Tell] = []
        records: list[Record] = []
        for b in bookings:
            orders = []
            for o in b.orders:
                if PAY_ORDER.allows(o.status, "refund"):
                    o = msgspec.structs.replace(o, status=PAY_ORDER.step(o.status, "refund"),
                                                refund_no=f"{o.out_trade_no}R")
                    tells.append(self._refund(ctx, o, reason))
                elif o.status == PayOrderStatus.CREATED:
                    tells.append(Tell(make_address("refund", o.out_trade_no),
                                      CloseOrder(ctx.address, o.out_trade_no, o.insurance_fen > 0)))
                orders.append(o)
            nb = msgspec.structs.replace(b, status=BOOKING.step(b.status, event), orders=orders, updated_at=ctx.now,
                                         note=reason)
            new = self._free_slot(self._put(new, nb), nb)
            refund_text = "已支付费用将原路退回。" if any(o.status == PayOrderStatus.REFUNDING for o in orders) else ""
            tells.append(self._notice(state, nb, "booking.cancelled", reason=reason, refund=refund_text))
            tells.append(self._his(ctx, nb))
            records.append(self._booking_record(new, nb))
            records.extend(self._order_record(new, nb, o, ctx.now) for o in orders
                           if o.status == PayOrderStatus.REFUNDING)
        periods = {b.period for b in bookings}
        records.extend(self._session_record(new, p) for p in sorted(periods))
        return Decision(
            new, reply={"cancelled": [b.id for b in bookings]},
            events=tuple(Event("BookingCancelled", {"booking": b.id, "reason": reason}) for b in bookings),
            tells=tuple(tells), records=(*records, *extra_records),
            cancel_reminders=tuple(f"hold:{b.id}" for b in bookings if b.status == BookingStatus.HELD),
        )

    # ---- visit day -------------------------------------------------------------------------

    def _check_in(self, state: PoolState, m: CheckIn, ctx: Context) -> Decision[PoolState]:
        b = self._booking(state, m.booking_id)
        if m.account_id is not None and b.account_id != m.account_id:
            raise Refusal("没有这个预约 (no such booking)", code="not_found")
        if b.status in (BookingStatus.CHECKED_IN, BookingStatus.SEEN):
            return Decision.answer(state, self._booking_view(state, b))  # checking in twice is harmless
        if b.status == BookingStatus.HELD:
            raise Refusal("请先支付挂号费再签到 (pay first)", code="unpaid")
        checked_in = BOOKING.step(b.status, "CheckIn", message=f"该预约不能签到 ({b.status})", code="invalid_state")
        if ctx.now.astimezone(BEIJING).date() != state.day:
            raise Refusal("只能在就诊当天签到 (check-in is only on the day)", code="wrong_day")
        plan = state.sessions[b.period]
        opens = b.slot_at - dt.timedelta(minutes=plan.checkin_before_minutes)
        closes = b.slot_at + dt.timedelta(minutes=plan.checkin_after_minutes)
        if not opens <= ctx.now <= closes:
            raise Refusal(
                f"签到时间为 {_local(opens)} 至 {_local(closes)} (outside the check-in window)",
                code="outside_window",
            )
        nb = msgspec.structs.replace(b, status=checked_in, updated_at=ctx.now)
        new = self._put(state, nb)
        join = JoinQueue(b.id, b.account_id, b.label, b.slot_no, b.slot_at, ctx.now, plan.department_id, plan.room,
                         state.doctor_name, plan.slot_minutes, b.revisit)
        return Decision(
            new, reply=self._booking_view(new, nb),
            events=(Event("CheckedIn", {"booking": b.id}),),
            deliveries=(self._step(new, nb, "checked_in"),),
            records=(self._booking_record(new, nb),),
            tells=(Tell(make_address("queue", session_id(state.doctor_id, state.day, b.period)), join),
                   self._his(ctx, nb)),
        )

    def _visit_outcome(self, state: PoolState, m: VisitOutcome, ctx: Context) -> Decision[PoolState]:
        b = self._booking(state, m.booking_id)
        if not BOOKING.allows(b.status, "VisitOutcome") or m.outcome != "seen":
            return Decision.answer(state, {"changed": False})  # told twice, or after a cancellation
        nb = msgspec.structs.replace(b, status=BOOKING.step(b.status, "VisitOutcome"), updated_at=ctx.now)
        new = self._put(state, nb)
        return Decision(
            new, reply={"changed": True},
            events=(Event("Seen", {"booking": b.id}),),
            deliveries=(self._step(new, nb, "seen"),),
            records=(self._booking_record(new, nb),),
            tells=(self._his(ctx, nb),),
        )

    def _close(self, state: PoolState, period: str, ctx: Context) -> Decision[PoolState]:
        if period in state.closed or period not in state.sessions:
            return Decision.answer(state, {"no_shows": []})
        missing = [b for b in state.bookings.values()
                   if b.period == period and BOOKING.allows(b.status, "CloseSession")]
        new = self._with(state, closed=[*state.closed, period])
        records: list[Record] = []
        tells: list[Tell] = []
        for b in missing:
            nb = msgspec.structs.replace(b, status=BOOKING.step(b.status, "CloseSession"), updated_at=ctx.now)
            new = self._put(new, nb)
            records.append(self._booking_record(new, nb))
            records.append(Record("no_shows", {"booking_id": b.id}, {
                "patient_id": b.patient_id, "session_id": session_id(state.doctor_id, state.day, period),
                "day": state.day, "recorded_at": ctx.now}))
            tells.append(self._his(ctx, nb))
            tells.append(Tell(make_address("blacklist", f"{b.patient_id}"), NoShowRecorded(b.patient_id)))
        return Decision(
            new, reply={"no_shows": [b.id for b in missing]},
            events=(Event("SessionClosed", {"period": period, "no_shows": len(missing)}),),
            records=tuple(records), tells=tuple(tells),
        )

    # ---- schedule changes ------------------------------------------------------------------

    def _open(self, state: PoolState, m: OpenSession, ctx: Context) -> Decision[PoolState]:
        plan = m.plan
        if plan.period not in PERIODS:
            raise Refusal(f"时段只能是 {', '.join(PERIODS)} (unknown period)", code="invalid")
        if plan.slot_minutes not in (5, 10, 15, 30) or not 1 <= plan.capacity <= 500 or plan.fee_fen < 0:
            raise Refusal("号源规则不正确: 每号 5/10/15/30 分钟, 1-500 个号 (invalid plan)", code="invalid")
        if plan.starts_at.astimezone(BEIJING).date() != state.day:
            raise Refusal("出诊时间不在这一天 (session is on another day)", code="invalid")
        old = state.slots.get(plan.period)
        if old is not None and plan.capacity < len(old):
            raise Refusal("已开放的号源不能减少, 请用停诊申请 (capacity cannot shrink)", code="invalid")
        slots = list(old or []) + [None] * (plan.capacity - len(old or []))
        new = self._with(
            state, doctor_name=m.doctor_name or state.doctor_name,
            sessions={**state.sessions, plan.period: plan}, slots={**state.slots, plan.period: slots},
        )
        end = self._slot_at(plan, len(slots))
        return Decision(
            new, reply={"session_id": session_id(state.doctor_id, state.day, plan.period), "capacity": len(slots)},
            events=(Event("SessionOpened", {"period": plan.period, "capacity": len(slots)}),),
            records=(self._session_record(new, plan.period),),
            reminders=(Remind(end + CLOSE_GRACE, CloseSession(plan.period), key=f"close:{plan.period}"),),
        )

    def _add_slots(self, state: PoolState, m: AddSlots, ctx: Context) -> Decision[PoolState]:
        plan = state.sessions.get(m.period)
        if plan is None or plan.status != SessionStatus.OPEN:
            raise Refusal("该时段未开放 (no open session)", code="not_found")
        if not 1 <= m.count <= 100:
            raise Refusal("加号数量为 1-100 (invalid count)", code="invalid")
        slots = [*state.slots[m.period], *([None] * m.count)]
        quotas = {ch: q + m.count for ch, q in plan.quotas.items()}
        nplan = msgspec.structs.replace(plan, capacity=len(slots), quotas=quotas)
        new = self._with(state, sessions={**state.sessions, m.period: nplan}, slots={**state.slots, m.period: slots})
        end = self._slot_at(nplan, len(slots))
        return Decision(
            new, reply={"capacity": len(slots)},
            events=(Event("SlotsAdded", {"period": m.period, "count": m.count}),),
            records=(self._session_record(new, m.period),),
            reminders=(Remind(end + CLOSE_GRACE, CloseSession(m.period), key=f"close:{m.period}"),),
        )

    def _cancel_session(self, state: PoolState, m: CancelSession, ctx: Context) -> Decision[PoolState]:
        plan = state.sessions.get(m.period)
        if plan is None:
            raise Refusal("该时段未开放 (no such session)", code="not_found")
        if not SESSION.allows(plan.status, "CancelSession"):
            return Decision.answer(state, {"cancelled": []})  # cancelled already: approving again is harmless
        nplan = msgspec.structs.replace(plan, status=SESSION.step(plan.status, "CancelSession"))
        state2 = self._with(state, sessions={**state.sessions, m.period: nplan})
        affected = [b for b in state.bookings.values()
                    if b.period == m.period and BOOKING.allows(b.status, "CancelSession")]
        decision = self._cancel(state2, affected, f"医生停诊: {m.reason}", ctx, event="CancelSession")
        return dataclasses.replace(
            decision, records=(*decision.records, self._session_record(decision.state, m.period)),
            events=(*decision.events, Event("SessionCancelled", {"period": m.period, "bookings": len(affected)})),
        )

    def _substitute(self, state: PoolState, m: SubstituteSession, ctx: Context) -> Decision[PoolState]:
        plan = state.sessions.get(m.period)
        if plan is None or plan.status != SessionStatus.OPEN:
            raise Refusal("该时段未开放 (no open session)", code="not_found")
        nplan = msgspec.structs.replace(plan, substitute_id=m.substitute_id, substitute_name=m.substitute_name)
        new = self._with(state, sessions={**state.sessions, m.period: nplan})
        affected = [b for b in state.bookings.values()
                    if b.period == m.period and b.status in (BookingStatus.HELD, BookingStatus.BOOKED)]
        tells = [self._notice(state, b, "booking.substituted", substitute=m.substitute_name, reason=m.reason,
                              step=m.substitute_id) for b in affected]
        return Decision(
            new, reply={"notified": [b.id for b in affected]},
            events=(Event("SessionSubstituted", {"period": m.period, "substitute": m.substitute_id}),),
            tells=tuple(tells),
            records=(self._session_record(new, m.period),),
        )

    # ---- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _with(state: PoolState, **changes: Any) -> PoolState:
        return msgspec.structs.replace(state, **changes)

    def _put(self, state: PoolState, b: Booking) -> PoolState:
        return self._with(state, bookings={**state.bookings, b.id: b})

    def _free_slot(self, state: PoolState, b: Booking) -> PoolState:
        slots = list(state.slots[b.period])
        if slots[b.slot_no] == b.id:
            slots[b.slot_no] = None
        return self._with(state, slots={**state.slots, b.period: slots})

    @staticmethod
    def _find_order(state: PoolState, out_trade_no: str) -> tuple[Booking, PayOrder] | None:
        booking_id = out_trade_no.rpartition("P")[0]
        b = state.bookings.get(booking_id)
        if b is None:
            return None
        for o in b.orders:
            if o.out_trade_no == out_trade_no:
                return b, o
        return None

    @staticmethod
    def _replace_order(b: Booking, order: PayOrder, **changes: Any) -> Booking:
        orders = [order if o.out_trade_no == order.out_trade_no else o for o in b.orders]
        return msgspec.structs.replace(b, orders=orders, **changes)

    @staticmethod
    def _notice(state: PoolState, b: Booking, kind: str, step: str = "", **values: str) -> Tell:
        """The notice of ``kind`` about booking ``b`` (MSG-2, MSG-3), through the message center.

        Its id is the booking's and the kind's (plus ``step`` where one booking has several of a kind:
        a refund per order), so a decision replayed after a crash makes the same notice once.
        """
        plan = state.sessions.get(b.period)
        return notify(f"{b.id}:{kind}{':' + step if step else ''}", b.account_id, kind, {
            "booking_id": b.id, "patient": b.label, "doctor": state.doctor_name, "time": _local(b.slot_at),
            "room": plan.room if plan else "", "department_id": plan.department_id if plan else "", **values,
        }, source="outpatient", data={"booking_id": b.id, "patient_id": b.patient_id})

    def _step(self, state: PoolState, b: Booking, step: str) -> Deliver:
        """Visit assistant (OUT-8): the patient's pathway moved on."""
        return Deliver(b.account_id, "visit.step", {"booking_id": b.id, "patient_id": b.patient_id, "step": step,
                                                    "room": state.sessions[b.period].room},
                       msg_id=f"{b.id}:step:{step}")

    @staticmethod
    def _his(ctx: Context, b: Booking) -> Tell:
        return Tell(make_address("his", f"{b.id}"), PushAppointment(ctx.address, b.id))

    @staticmethod
    def _refund(ctx: Context, o: PayOrder, reason: str) -> Tell:
        assert o.refund_no is not None
        # the cash part goes back through WeChat Pay; the insurance part through NHSA 6203 (the effect)
        return Tell(make_address("refund", o.out_trade_no), Refund(
            ctx.address, o.out_trade_no, o.refund_no, o.cash_fen - o.cash_refunded_fen, o.cash_fen,
            o.insurance_fen - o.insurance_refunded_fen, reason[:80], mix_trade_no=o.mix_trade_no))

    def _booking_record(self, state: PoolState, b: Booking) -> Record:
        plan = state.sessions[b.period]
        return Record("bookings", {"id": b.id}, {
            "session_id": session_id(state.doctor_id, state.day, b.period), "doctor_id": state.doctor_id,
            "department_id": plan.department_id, "day": state.day, "slot_no": b.slot_no, "slot_at": b.slot_at,
            "patient_id": b.patient_id, "account_id": b.account_id, "channel": b.channel, "status": b.status,
            "fee_fen": b.fee_fen, "created_at": b.created_at, "updated_at": b.updated_at, "note": b.note,
        })

    def _session_record(self, state: PoolState, period: str) -> Record:
        plan = state.sessions[period]
        slots = state.slots[period]
        return Record("clinic_sessions", {"id": session_id(state.doctor_id, state.day, period)}, {
            "doctor_id": state.doctor_id, "department_id": plan.department_id, "day": state.day, "period": period,
            "room": plan.room, "starts_at": plan.starts_at, "ends_at": self._slot_at(plan, len(slots)),
            "slot_minutes": plan.slot_minutes, "capacity": len(slots),
            "booked": sum(1 for s in slots if s is not None), "fee_fen": plan.fee_fen, "opens_at": plan.opens_at,
            "status": plan.status, "substitute_id": plan.substitute_id,
        })

    @staticmethod
    def _order_record(state: PoolState, b: Booking, o: PayOrder, now: dt.datetime) -> Record:
        # the booking's day, doctor, department and channel too: payments by method are counted by them (SCH-8)
        return Record("payment_orders", {"out_trade_no": o.out_trade_no}, {
            "booking_id": b.id, "day": state.day, "doctor_id": state.doctor_id,
            "department_id": state.sessions[b.period].department_id, "channel": b.channel,
            "account_id": b.account_id, "method": o.method, "total_fen": o.total_fen,
            "insurance_fen": o.insurance_fen, "cash_fen": o.cash_fen, "status": o.status,
            "transaction_id": o.transaction_id, "refunded_fen": o.refunded_fen, "created_at": o.created_at or now,
            "updated_at": now,
        })


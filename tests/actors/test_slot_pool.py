"""The slot pool's pure ``handle()`` as tables: the booking, payment order and session lifecycles,
and the same-day slot rule (OUT-2, OUT-6, OUT-11, SCH-2, SCH-4). No PostgreSQL, no Trio server."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest

from carehub.actors.slot_pool import (
    BEIJING,
    BOOKING,
    PAY_ORDER,
    SESSION,
    Book,
    BookingStatus,
    CancelBooking,
    CancelSession,
    CheckIn,
    CloseSession,
    GetPool,
    OpenSession,
    PaymentConfirmed,
    PayOrderStatus,
    PoolState,
    RefundSettled,
    ReleaseHold,
    SessionPlan,
    SessionStatus,
    SlotPool,
    StartPayment,
    VisitOutcome,
)
from carehub.hub import SYSTEM, Context, Decision, InvalidTransition, Refusal, make_address

POOL = SlotPool()
KEY = "doc1:2026-12-04"
DAY = dt.date(2026, 12, 4)
START = dt.datetime.combine(DAY, dt.time(8, 0), BEIJING)  # ten 10-minute slots: 08:00 ... 09:30


def at(hhmm: str, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.fromisoformat(hhmm), BEIJING)


def ctx(now: dt.datetime) -> Context:
    return Context(make_address("slotpool", KEY), KEY, now, SYSTEM)


def plan(fee_fen: int = 0, capacity: int = 10) -> SessionPlan:
    return SessionPlan(period="am", department_id="cardio", room="3诊室", starts_at=START, slot_minutes=10,
                       capacity=capacity, fee_fen=fee_fen, opens_at=START - dt.timedelta(days=7),
                       quotas={"app": capacity, "kiosk": capacity, "partner": capacity})


def run(state: PoolState, now: dt.datetime, *messages: msgspec.Struct) -> tuple[PoolState, Decision[PoolState]]:
    decision: Decision[PoolState] | None = None
    for m in messages:
        decision = POOL.handle(state, m, ctx(now))
        state = decision.state
    assert decision is not None
    return state, decision


def pool(fee_fen: int = 0, capacity: int = 10) -> PoolState:
    state, _ = run(POOL.initial(KEY), START - dt.timedelta(days=1), OpenSession(plan(fee_fen, capacity), "李医生"))
    return state


def book(booking_id: str = "b1", patient: str = "P1", slot_no: int | None = None) -> Book:
    return Book(booking_id, "am", patient, "acc1", "张*", slot_no=slot_no)


def status(state: PoolState, booking_id: str = "b1") -> BookingStatus:
    return state.bookings[booking_id].status


# ---- the same-day slot rule (issue #16: at 09:28 slot 8 at 09:20, and then "too late to cancel") ----


@pytest.mark.parametrize(("now", "slot_no", "slot_at"), [
    ("07:00", 0, "08:00"),  # before the session: the first slot
    ("08:00", 1, "08:10"),  # slot 0's time has come: not given
    ("09:20", 9, "09:30"),  # slot 8 at 09:20 is starting: not given
    ("09:28", 9, "09:30"),  # the defect: slot 8 at 09:20 was given here
])
def test_a_same_day_booking_gets_the_first_free_slot_still_to_come(now: str, slot_no: int, slot_at: str) -> None:
    _, decision = run(pool(), at(now), book())
    assert decision.reply["slot_no"] == slot_no
    assert dt.datetime.fromisoformat(decision.reply["slot_at"]) == at(slot_at)


def test_a_slot_whose_time_has_passed_is_neither_offered_nor_given() -> None:
    state = pool()
    view = POOL.view(state, at("09:28"), None)["sessions"][0]
    assert [s["slot_no"] for s in view["free_slots"]] == [9] and view["free"] == 1
    with pytest.raises(Refusal) as taken:
        run(state, at("09:28"), book(slot_no=8))
    assert taken.value.code == "slot_taken"


def test_a_patient_given_a_same_day_slot_can_cancel_it_until_the_visit_starts() -> None:
    state, _ = run(pool(), at("09:28"), book())
    state, _ = run(state, at("09:29"), CancelBooking("b1", "acc1"))
    assert status(state) == BookingStatus.CANCELLED


def test_when_no_slot_time_is_left_the_session_is_over() -> None:
    with pytest.raises(Refusal) as over:
        run(pool(), at("09:31"), book())
    assert over.value.code == "session_over"


def test_a_patient_cannot_cancel_once_the_visit_has_started() -> None:
    state, _ = run(pool(), at("07:00"), book())  # slot 0 at 08:00
    with pytest.raises(Refusal) as late:
        run(state, at("08:00"), CancelBooking("b1", "acc1"))
    assert late.value.code == "too_late"
    state, _ = run(state, at("08:00"), CancelBooking("b1", None, "停诊"))  # staff still may
    assert status(state) == BookingStatus.CANCELLED


# ---- the booking lifecycle: every legal step ------------------------------------------------------


def paid(state: PoolState, booking_id: str = "b1") -> list[msgspec.Struct]:
    order = f"{booking_id}P1"
    return [StartPayment(booking_id, "acc1"), PaymentConfirmed(order, "tx1", state.sessions["am"].fee_fen)]


FREE, FEE = 0, 2500
ON_THE_DAY = "07:50"  # within the check-in window of slot 0 (08:00)

LEGAL: list[tuple[str, int, list[Any], BookingStatus]] = [
    ("a free booking is booked at once", FREE, [], BookingStatus.BOOKED),
    ("a booking with a fee is held until paid", FEE, [], BookingStatus.HELD),
    ("held -PaymentConfirmed-> booked", FEE, ["pay"], BookingStatus.BOOKED),
    ("held -ReleaseHold-> released", FEE, [ReleaseHold("b1")], BookingStatus.RELEASED),
    ("held -CancelBooking-> cancelled", FEE, [CancelBooking("b1", "acc1")], BookingStatus.CANCELLED),
    ("held -CancelSession-> cancelled", FEE, [CancelSession("am", "停诊")], BookingStatus.CANCELLED),
    ("booked -CancelBooking-> cancelled", FREE, [CancelBooking("b1", "acc1")], BookingStatus.CANCELLED),
    ("booked -CancelSession-> cancelled", FREE, [CancelSession("am", "停诊")], BookingStatus.CANCELLED),
    ("booked -CheckIn-> checked_in", FREE, [CheckIn("b1", "acc1")], BookingStatus.CHECKED_IN),
    ("booked -CloseSession-> no_show", FREE, [CloseSession("am")], BookingStatus.NO_SHOW),
    ("checked_in -VisitOutcome-> seen", FREE, [CheckIn("b1", "acc1"), VisitOutcome("b1", "seen")],
     BookingStatus.SEEN),
    ("checking in twice changes nothing", FREE, [CheckIn("b1", "acc1"), CheckIn("b1", "acc1")],
     BookingStatus.CHECKED_IN),
    ("a checked-in patient is no no-show", FREE, [CheckIn("b1", "acc1"), CloseSession("am")],
     BookingStatus.CHECKED_IN),
    ("a release after payment changes nothing", FEE, ["pay", ReleaseHold("b1")], BookingStatus.BOOKED),
]


@pytest.mark.parametrize(("fee", "steps", "expected"), [c[1:] for c in LEGAL], ids=[c[0] for c in LEGAL])
def test_a_booking_moves_as_its_lifecycle_says(fee: int, steps: list[Any], expected: BookingStatus) -> None:
    state, _ = run(pool(fee), at("07:00"), book())
    for step in steps:
        messages = paid(state) if step == "pay" else [step]
        state, _ = run(state, at(ON_THE_DAY), *messages)
    assert status(state) == expected


ILLEGAL: list[tuple[str, int, list[Any], msgspec.Struct, str, str]] = [
    ("a cancelled booking cannot be cancelled again", FREE, [CancelBooking("b1", "acc1")],
     CancelBooking("b1", "acc1"), "invalid_state", "该预约当前状态不能取消 (cancelled)"),
    ("a checked-in booking cannot be cancelled", FREE, [CheckIn("b1", "acc1")], CancelBooking("b1", "acc1"),
     "invalid_state", "该预约当前状态不能取消 (checked_in)"),
    ("a held booking cannot check in", FEE, [], CheckIn("b1", "acc1"), "unpaid", "请先支付挂号费再签到 (pay first)"),
    ("a cancelled booking cannot check in", FREE, [CancelBooking("b1", "acc1")], CheckIn("b1", "acc1"),
     "invalid_state", "该预约不能签到 (cancelled)"),
    ("a booked booking needs no payment", FREE, [], StartPayment("b1", "acc1"), "invalid_state",
     "该预约无需支付 (booking is booked)"),
]


@pytest.mark.parametrize(("fee", "before", "message", "code", "text"), [c[1:] for c in ILLEGAL],
                         ids=[c[0] for c in ILLEGAL])
def test_an_illegal_step_is_refused_with_the_code_and_sentence_clients_know(
    fee: int, before: list[Any], message: msgspec.Struct, code: str, text: str,
) -> None:
    state, _ = run(pool(fee), at("07:00"), book(), *before)
    with pytest.raises(Refusal) as refused:
        run(state, at(ON_THE_DAY), message)
    assert (refused.value.code, refused.value.message) == (code, text)


def test_a_refused_cancellation_names_the_state_and_the_event() -> None:
    with pytest.raises(InvalidTransition) as refused:
        BOOKING.step(BookingStatus.SEEN, "CancelBooking")
    assert (refused.value.state, refused.value.event) == (BookingStatus.SEEN, "CancelBooking")
    assert "CancelBooking" in refused.value.message and "seen" in refused.value.message


def test_every_final_booking_state_has_no_way_out() -> None:
    for final in (BookingStatus.SEEN, BookingStatus.CANCELLED, BookingStatus.RELEASED, BookingStatus.NO_SHOW):
        assert BOOKING.is_final(final)


# ---- the payment order lifecycle ------------------------------------------------------------------


def test_a_paid_order_of_a_cancelled_booking_is_refunded_then_settled() -> None:
    state, _ = run(pool(FEE), at("07:00"), book())
    state, _ = run(state, at("07:01"), *paid(state))
    assert state.bookings["b1"].orders[0].status == PayOrderStatus.PAID
    state, decision = run(state, at("07:02"), CancelBooking("b1", "acc1"))
    assert state.bookings["b1"].orders[0].status == PayOrderStatus.REFUNDING
    assert any(type(t.message).__name__ == "Refund" for t in decision.tells)
    state, _ = run(state, at("07:03"), RefundSettled("b1P1", "b1P1R", FEE))
    assert state.bookings["b1"].orders[0].status == PayOrderStatus.REFUNDED


def test_a_payment_after_the_hold_was_released_is_refunded_not_booked() -> None:
    state, _ = run(pool(FEE), at("07:00"), book(), StartPayment("b1", "acc1"), ReleaseHold("b1"))
    state, decision = run(state, at("07:20"), PaymentConfirmed("b1P1", "tx1", FEE))
    assert status(state) == BookingStatus.RELEASED
    assert state.bookings["b1"].orders[0].status == PayOrderStatus.REFUNDING
    assert decision.reply == {"status": "refunding", "booking_status": "released", "changed": True}


def test_a_repeated_payment_callback_changes_nothing() -> None:
    state, _ = run(pool(FEE), at("07:00"), book())
    state, _ = run(state, at("07:01"), *paid(state))
    _, again = run(state, at("07:02"), PaymentConfirmed("b1P1", "tx1", FEE))
    assert again.reply == {"status": "paid", "booking_status": "booked", "changed": False} and not again.writes


def test_the_payment_order_table() -> None:
    assert PAY_ORDER.step(PayOrderStatus.CREATED, "PaymentConfirmed") == PayOrderStatus.PAID
    assert PAY_ORDER.step(PayOrderStatus.PAID, "refund") == PayOrderStatus.REFUNDING
    assert PAY_ORDER.step(PayOrderStatus.REFUNDING, "RefundSettled") == PayOrderStatus.REFUNDED
    with pytest.raises(InvalidTransition):
        PAY_ORDER.step(PayOrderStatus.CREATED, "refund")  # nothing paid, nothing to give back


# ---- the session lifecycle ------------------------------------------------------------------------


def test_a_cancelled_session_takes_no_booking_and_cancelling_again_is_harmless() -> None:
    state, _ = run(pool(), at("07:00"), CancelSession("am", "停诊"))
    assert state.sessions["am"].status == SessionStatus.CANCELLED
    _, again = run(state, at("07:01"), CancelSession("am", "停诊"))
    assert not again.writes
    with pytest.raises(Refusal) as refused:
        run(state, at("07:01"), book())
    assert refused.value.code == "session_cancelled"
    assert SESSION.is_final(SessionStatus.CANCELLED)


def test_statuses_keep_their_stored_and_wire_values() -> None:
    state, decision = run(pool(FEE), at("07:00"), book())
    assert decision.reply["status"] == "held"
    assert msgspec.json.decode(msgspec.json.encode(state), type=PoolState) == state
    assert POOL.handle(state, GetPool("acc1"), ctx(at("07:00"))).reply["bookings"][0]["status"] == "held"

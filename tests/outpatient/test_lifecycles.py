"""The roster, bill and bill-order lifecycles as plain tables (no PostgreSQL, no server): every legal
step, and the illegal ones that matter (a decided roster decided again, a bill paid twice, a refund
of what was never paid). Booking, payment order, session and queue entry: tests/actors/."""

from __future__ import annotations

import pytest

from carehub.hub import InvalidTransition
from carehub.outpatient.bills import BILL, BILL_ORDER, BillOrderStatus, BillStatus
from carehub.outpatient.schedule import ROSTER, RosterStatus


@pytest.mark.parametrize(("state", "event", "after"), [
    (RosterStatus.SUBMITTED, "approve", RosterStatus.APPROVED),
    (RosterStatus.SUBMITTED, "reject", RosterStatus.REJECTED),
    (BillStatus.UNPAID, "paid", BillStatus.PAID),
    (BillStatus.UNPAID, "paid_elsewhere", BillStatus.PAID),
    (BillStatus.UNPAID, "withdrawn", BillStatus.CANCELLED),
    (BillStatus.PAID, "refund", BillStatus.REFUNDED),
    (BillOrderStatus.CREATED, "paid", BillOrderStatus.PAID),
    (BillOrderStatus.CREATED, "paid_late", BillOrderStatus.REFUNDING),
    (BillOrderStatus.CREATED, "create_refused", BillOrderStatus.CLOSED),
    (BillOrderStatus.PAID, "refund", BillOrderStatus.REFUNDING),
    (BillOrderStatus.REFUNDING, "refund_settled", BillOrderStatus.REFUNDED),
])
def test_every_legal_step_leads_where_its_table_says(state: object, event: str, after: object) -> None:
    lifecycle = {RosterStatus: ROSTER, BillStatus: BILL, BillOrderStatus: BILL_ORDER}[type(state)]
    assert lifecycle.step(state, event) is after  # type: ignore[arg-type]


@pytest.mark.parametrize(("lifecycle", "state", "event", "sentence"), [
    (ROSTER, RosterStatus.APPROVED, "approve", "approve is not allowed while the roster is approved"),
    (ROSTER, RosterStatus.REJECTED, "approve", "approve is not allowed while the roster is rejected"),
    (ROSTER, RosterStatus.APPROVED, "reject", "reject is not allowed while the roster is approved"),
    (BILL, BillStatus.PAID, "paid", "paid is not allowed while the bill is paid"),
    (BILL, BillStatus.UNPAID, "refund", "refund is not allowed while the bill is unpaid"),
    (BILL, BillStatus.CANCELLED, "paid", "paid is not allowed while the bill is cancelled"),
    (BILL_ORDER, BillOrderStatus.CLOSED, "paid", "paid is not allowed while the bill order is closed"),
    (BILL_ORDER, BillOrderStatus.REFUNDED, "refund", "refund is not allowed while the bill order is refunded"),
    (BILL_ORDER, BillOrderStatus.CREATED, "refund_settled",
     "refund_settled is not allowed while the bill order is created"),
])
def test_an_illegal_step_is_refused_naming_the_state_and_the_event(
    lifecycle: object, state: object, event: str, sentence: str,
) -> None:
    with pytest.raises(InvalidTransition) as caught:
        lifecycle.step(state, event)  # type: ignore[attr-defined]
    assert caught.value.message == sentence
    assert (caught.value.state, caught.value.event) == (state, event)


def test_the_final_states_have_no_way_out() -> None:
    assert all(ROSTER.is_final(s) for s in (RosterStatus.APPROVED, RosterStatus.REJECTED))
    assert all(BILL.is_final(s) for s in (BillStatus.REFUNDED, BillStatus.CANCELLED))
    assert all(BILL_ORDER.is_final(s) for s in (BillOrderStatus.REFUNDED, BillOrderStatus.CLOSED))
    assert not BILL.is_final(BillStatus.PAID)  # a paid bill can still be refunded

"""Outpatient bills: pending bills and paying them, slip QR codes, fee details per visit, payment
history, the self-service test catalogue and test orders (OUT-7, OUT-13, OUT-14, ME-6).

Patients act for the family members linked to their account (``/api/v1/me/...``); a slip's QR
code opens exactly that slip's bills, for an account whose family includes the slip's patient;
admins keep the test catalogue, refund bill orders and issue slip codes for printing
(``admin.bookings``). WeChat Pay's notifications for bill orders come through the one payment
callback (:mod:`carehub.http.rest.outpatient`), which hands them to :class:`carehub.outpatient.Bills`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from quart import request

from carehub.outpatient import Bills, Hospital
from carehub.outpatient.bills import CATEGORIES, BillStatus, CatalogueEntry

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator, json_response

STATUSES = (*BillStatus, "all")


class PayBillsBody(msgspec.Struct, forbid_unknown_fields=True):
    bill_ids: list[str]
    #: the payer; None: the hospital's default payer (``Config.pay_default_openid``, the demo's)
    openid: str | None = None
    #: the client's own id for this payment: a retry finds the same order
    client_ref: str | None = None


class OrderTestBody(msgspec.Struct, forbid_unknown_fields=True):
    patient_id: str
    code: str
    client_ref: str | None = None


class CatalogueBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    category: str
    price_fen: int
    description: str = ""
    notice: str = ""
    active: bool = True


class RefundBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: str


class SlipCodeBody(msgspec.Struct, forbid_unknown_fields=True):
    patient_id: str
    #: the request the slip was printed for: ``ServiceRequest/<id>`` or ``MedicationRequest/<id>``
    slip: str


class BillView(msgspec.Struct):
    """One bill: a HIS charge (``his-…``) or a self-service test (``self-…``)."""

    bill_id: str
    source: str
    patient_id: str
    visit_id: str | None
    #: the slip it was ordered on (``ServiceRequest/…``, ``MedicationRequest/…``) and that slip's QR code
    slip: str | None
    slip_code: str | None
    code: str
    name: str
    category: str
    category_name: str
    quantity: int
    amount_fen: int
    status: str
    order_no: str | None
    occurred_at: str


class BillsView(msgspec.Struct):
    """Bills of the family (or of one slip, with ``slip`` and ``patient_id``); ``fresh`` false: the
    HIS was not reachable and this is what CareHub held."""

    bills: list[BillView]
    total_fen: int
    fresh: bool
    slip: str | None = None
    patient_id: str | None = None


class FeeItemView(msgspec.Struct):
    """An item of a visit's fees: a bill, or the registration fee (``bill_id`` null, code ``REG``)."""

    bill_id: str | None
    code: str
    name: str
    category: str
    category_name: str
    quantity: int
    amount_fen: int
    status: str
    occurred_at: str | None = None
    order_no: str | None = None


class VisitFeesView(msgspec.Struct):
    visit_id: str | None
    patient_id: str
    day: str
    doctor_name: str | None
    department: str | None
    booking_status: str | None
    items: list[FeeItemView]
    total_fen: int
    paid_fen: int
    unpaid_fen: int
    refunded_fen: int


class VisitFeesListView(msgspec.Struct):
    visits: list[VisitFeesView]


class BillOrderView(msgspec.Struct):
    """One payment (a WeChat Pay order) and the bills it pays (ME-6)."""

    out_trade_no: str
    patient_id: str
    total_fen: int
    status: str
    method: str
    transaction_id: str | None
    refunded_fen: int
    note: str | None
    created_at: str
    paid_at: str | None
    items: list[BillView]


class BillOrdersView(msgspec.Struct):
    orders: list[BillOrderView]


class BillPayView(msgspec.Struct):
    """The order and what the page hands to WeChat's JSAPI (``getBrandWCPayRequest``); ``pay_params``
    null: the gateway already reported it paid."""

    order: BillOrderView
    pay_params: dict[str, str] | None


class TestView(msgspec.Struct):
    code: str
    name: str
    category: str
    category_name: str
    price_fen: int
    description: str
    notice: str
    active: bool
    updated_at: str


class TestsView(msgspec.Struct):
    tests: list[TestView]


class TestOrderView(msgspec.Struct):
    order_id: str
    bill: BillView
    notice: str


class SlipCodeView(msgspec.Struct):
    patient_id: str
    slip: str
    code: str
    #: the patient app's page the printed QR code opens (prefix it with the hospital's address)
    path: str


def _text_arg(name: str, limit: int = 400) -> str | None:
    value = request.args.get(name)
    if value is not None and (not value or len(value) > limit):
        raise ApiError(400, "bad_request", f"query parameter {name!r} must be 1-{limit} characters")
    return value


def register(r: RouteDecorator, *, bills: Bills, hospital: Hospital) -> None:
    # ---- a patient's bills (OUT-13, ME-6) ----------------------------------------------------

    @r("GET", "/api/v1/me/bills", summary="My family's outpatient bills (unpaid by default); ?slip= opens a slip's QR",
       permission="account.self", tag="bills", query=("patient", "status", "slip"), response=BillsView)
    async def my_bills(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        slip = _text_arg("slip")
        status = request.args.get("status", "unpaid")
        if status not in STATUSES:
            raise ApiError(400, "bad_request", f"status is one of {', '.join(STATUSES)}")
        if slip is not None:
            return await bills.by_slip(ctx.principal.account_id, slip)
        return await bills.pending(ctx.principal.account_id, _text_arg("patient", 32),
                                   status=None if status == "all" else status)

    @r("GET", "/api/v1/me/bills/visits", summary="Fee details per visit: every item with its amount, paid or not",
       permission="account.self", tag="bills", query=("patient",), response=VisitFeesListView)
    async def my_visit_fees(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        return {"visits": await bills.visits(ctx.principal.account_id, _text_arg("patient", 32))}

    @r("POST", "/api/v1/me/bills/pay", summary="Pay unpaid bills of one family member (one WeChat Pay order)",
       permission="account.self", body=PayBillsBody, tag="bills", response=BillPayView)
    async def pay_bills(ctx: RequestContext, body: PayBillsBody) -> Any:
        assert ctx.principal is not None
        openid = hospital.default_openid if body.openid is None else body.openid
        if not openid or len(openid) > 128 or (body.client_ref is not None and len(body.client_ref) > 64):
            raise ApiError(422, "invalid", "openid is 1-128 characters, client_ref at most 64")
        return await bills.pay(ctx.principal.account_id, body.bill_ids, openid, body.client_ref)

    @r("GET", "/api/v1/me/bill-orders", summary="My outpatient payment history", permission="account.self",
       tag="bills", response=BillOrdersView)
    async def my_bill_orders(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        return {"orders": await bills.orders(ctx.principal.account_id)}

    @r("GET", "/api/v1/me/bill-orders/<out_trade_no>", summary="One of my bill payments and its items",
       permission="account.self", tag="bills", response=BillOrderView)
    async def my_bill_order(ctx: RequestContext, out_trade_no: str) -> Any:
        assert ctx.principal is not None
        return await bills.order(out_trade_no, ctx.principal.account_id)

    # ---- self-service test orders (OUT-14) ---------------------------------------------------

    @r("GET", "/api/v1/tests", summary="Tests a patient may order themselves, with prices", permission=None,
       tag="bills", response=TestsView)
    async def catalogue(ctx: RequestContext) -> Any:
        return {"tests": await bills.catalogue()}

    @r("POST", "/api/v1/me/test-orders", summary="Order a catalogue test for a verified family member (a new bill)",
       permission="account.self", body=OrderTestBody, tag="bills", response=TestOrderView, status=201)
    async def order_test(ctx: RequestContext, body: OrderTestBody) -> Any:
        assert ctx.principal is not None
        if body.client_ref is not None and not 1 <= len(body.client_ref) <= 64:
            raise ApiError(422, "invalid", "client_ref is 1-64 characters")
        reply = await bills.order_test(ctx.principal.account_id, body.patient_id, body.code, body.client_ref)
        return json_response(reply, 201)

    # ---- administration ----------------------------------------------------------------------

    @r("GET", "/api/v1/admin/tests", summary="The self-service test catalogue, withdrawn tests included",
       permission="admin.bookings", tag="bills")
    async def admin_catalogue(ctx: RequestContext) -> Any:
        return {"tests": await bills.catalogue(active_only=False),
                "categories": list(CATEGORIES)}

    @r("PUT", "/api/v1/admin/tests/<code>", summary="Add or change a self-service test (audited)",
       permission="admin.bookings", body=CatalogueBody, tag="bills")
    async def put_test(ctx: RequestContext, body: CatalogueBody, code: str) -> Any:
        assert ctx.principal is not None
        entry = CatalogueEntry(code, body.name, body.category, body.price_fen, body.description, body.notice,
                               body.active)
        return await bills.put_test(entry, ctx.principal.account_id)

    @r("DELETE", "/api/v1/admin/tests/<code>", summary="Withdraw a self-service test (kept for past orders)",
       permission="admin.bookings", tag="bills")
    async def withdraw_test(ctx: RequestContext, code: str) -> Any:
        assert ctx.principal is not None
        await bills.withdraw_test(code, ctx.principal.account_id)
        return {"withdrawn": code}

    @r("POST", "/api/v1/admin/bill-orders/<out_trade_no>/refund",
       summary="Refund a paid bill order by its original method (audited)", permission="admin.bookings",
       body=RefundBody, tag="bills")
    async def refund(ctx: RequestContext, body: RefundBody, out_trade_no: str) -> Any:
        assert ctx.principal is not None
        return await bills.refund(out_trade_no, body.reason, ctx.principal.account_id)

    @r("POST", "/api/v1/admin/slip-codes", summary="The signed QR code to print on a prescription or exam slip",
       permission="admin.bookings", body=SlipCodeBody, tag="bills", response=SlipCodeView)
    async def slip_code(ctx: RequestContext, body: SlipCodeBody) -> Any:
        code = bills.issue_slip_code(body.patient_id, body.slip)
        return {"patient_id": body.patient_id, "slip": body.slip, "code": code, "path": f"/h5/slip/{code}"}

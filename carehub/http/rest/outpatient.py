"""Outpatient: sessions and booking, payment and its callbacks, check-in, queue, schedule, blacklist.

Patients book for a family member through ``/api/v1/me/bookings``; partner channels (provincial
platform, kiosks) through the signed ``/api/v1/open/bookings`` with the same rules and their own
quota; doctors run their queue through ``/api/v1/doctor/queue``; admins run slot rules,
rosters, booking records and the blacklist under ``/api/v1/admin``. The payment gateway calls
``/api/v1/payments/wechat/notify`` (signed and encrypted, verified before anything changes).

Handlers hold no rule and no SQL: they parse, ask :class:`carehub.outpatient.Outpatient` (or an
actor through the hub) and shape the answer. A domain or actor refusal escaping a handler is
answered by its code (:data:`carehub.http.errors.STATUS`, in the router).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Annotated, Any

import msgspec
from quart import Response, request

from carehub.actors.slot_pool import (
    BEIJING,
    PaymentConfirmed,
    RefundSettled,
    StartPayment,
    parse_pool_key,
    pool_address,
)
from carehub.actors.waiting_queue import CallNext, GetPosition, GetQueue, MarkSeen, Recall, SetPriority, Skip
from carehub.channels.payment import (
    MixedOrderRequest,
    NotificationRejected,
    PaymentError,
    PaymentTimeout,
)
from carehub.hub import Caller, Hub, HubError, Refusal
from carehub.identity.patients import Patients
from carehub.outpatient import BookingRefused, Outpatient
from carehub.outpatient.admission import Admission, Place
from carehub.outpatient.schedule import RosterRequest

from ..errors import ApiError, from_error
from ..routing import Answer, CommandWaiter, RequestContext, RouteDecorator, json_response
from .args import int_arg
from .outpatient_admin import RostersView, RosterView

log = logging.getLogger("carehub.http.outpatient")



class _BookingWaiter:
    """A booking command at a pool's gate (the domain's :class:`Waiter`), answered in the route's words."""

    __slots__ = ("command",)

    def __init__(self, command: CommandWaiter) -> None:
        self.command = command

    def admitted(self, place: Place) -> bool:
        return self.command.admitted(place)

    def refused(self, err: Refusal | BookingRefused) -> None:
        self.command.refused(from_error(err))


#: ids as CareHub makes them (checked before they reach storage: a NUL would make PostgreSQL refuse)
Id = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
#: free text without NUL characters
Text = Annotated[str, msgspec.Meta(pattern=r"^[^\x00]*$", max_length=500)]


class BookBody(msgspec.Struct, forbid_unknown_fields=True):
    patient_id: Id
    doctor_id: Id
    day: dt.date
    period: str
    slot_no: int | None = None
    #: the client's own id for this request: a retry finds the same booking
    client_ref: str | None = msgspec.field(default=None)
    revisit: bool = False


class PartnerBookBody(msgspec.Struct, forbid_unknown_fields=True):
    """A partner channel books for a patient it has verified itself (name and ID checked there)."""

    patient_id: Id
    patient_label: Annotated[str, msgspec.Meta(pattern=r"^[^\x00]+$", max_length=20)]
    doctor_id: Id
    day: dt.date
    period: str
    client_ref: str
    channel: str = "partner"
    slot_no: int | None = None


class CancelBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text = "患者取消"


class PayBody(msgspec.Struct, forbid_unknown_fields=True):
    method: str = "self"  # self | insurance | mixed
    #: the payer; None: the hospital's default payer (``Config.pay_default_openid``, the demo's)
    openid: str | None = None
    insurance_fen: int = 0
    #: the patient's medical-insurance authorization (医保电子凭证), for insurance and mixed
    pay_auth_no: str | None = None
    #: the NHSA pre-settlement of this split (done by the HIS with message 6201), for insurance and mixed
    pay_order_id: str | None = None


class CheckInBody(msgspec.Struct, forbid_unknown_fields=True):
    code: str


class RecallBody(msgspec.Struct, forbid_unknown_fields=True):
    booking_id: str


class PriorityBody(msgspec.Struct, forbid_unknown_fields=True):
    booking_id: str
    priority: bool = True


# ---- answers of the patient routes (OpenAPI ``response=``; the patient app reads these) --------------


class SessionView(msgspec.Struct):
    """A clinic session with its free count, as a search lists it (OUT-2)."""

    session_id: str
    doctor_id: str
    doctor_name: str
    title: str | None
    specialty: str | None
    department_id: str
    day: str
    period: str
    room: str
    starts_at: str
    capacity: int
    free: int
    fee_fen: int
    opens_at: str


class SessionsView(msgspec.Struct):
    sessions: list[SessionView]


class FreeSlotView(msgspec.Struct):
    slot_no: int
    at: str


class DaySessionView(msgspec.Struct):
    """One session of a doctor's day, with the free slots still to come (OUT-3)."""

    session_id: str
    period: str
    period_name: str
    department_id: str
    room: str
    starts_at: str
    slot_minutes: int
    capacity: int
    free: int
    free_by_channel: dict[str, int]
    free_slots: list[FreeSlotView]
    fee_fen: int
    opens_at: str
    open_now: bool
    status: str
    substitute_name: str | None


class OrderView(msgspec.Struct):
    out_trade_no: str
    method: str
    total_fen: int
    insurance_fen: int
    cash_fen: int
    status: str
    refunded_fen: int


class BookingView(msgspec.Struct):
    """A booking as its slot pool tells it; one of mine also carries its visit code and QR image."""

    booking_id: str
    session_id: str
    pool: str
    doctor_id: str
    doctor_name: str
    department_id: str
    room: str
    day: str
    period: str
    slot_no: int
    slot_at: str
    patient_id: str
    account_id: str
    channel: str
    status: str
    fee_fen: int
    created_at: str
    hold_until: str | None
    note: str | None
    order: OrderView | None
    #: the signed visit code (booked or checked in only) and its QR image, an SVG ``data:`` URI
    visit_code: str | None = None
    visit_qr: str | None = None


class DoctorDayView(msgspec.Struct):
    doctor_id: str
    doctor_name: str
    day: str
    sessions: list[DaySessionView]
    #: the asking account's bookings that day (empty without a sign-in)
    bookings: list[BookingView]


class DoctorCardView(msgspec.Struct):
    """A shareable doctor card; ``link`` is the patient app's page of the doctor (``/h5`` + link)."""

    doctor_id: str
    name: str
    title: str | None
    specialty: str | None
    department: str
    link: str
    title_text: str
    free_this_week: int


class BookingRowView(msgspec.Struct):
    """A booking as the list of my bookings shows it."""

    booking_id: str
    session_id: str
    doctor_id: str
    doctor_name: str
    department_id: str
    room: str
    day: str
    slot_no: int
    slot_at: str
    patient_id: str
    account_id: str
    channel: str
    status: str
    fee_fen: int
    created_at: str
    note: str | None


class BookingsView(msgspec.Struct):
    bookings: list[BookingRowView]


class CancelledView(msgspec.Struct):
    cancelled: list[str]


class PayView(msgspec.Struct):
    """The order and what the phone needs to pay it: WeChat JSAPI ``pay_params`` for the cash part."""

    booking_id: str
    order: OrderView
    pay_params: dict[str, str] | None
    mix_trade_no: str | None


class PositionView(msgspec.Struct):
    """My place in the waiting line (OUT-12); ``topic`` carries the live positions."""

    session_id: str
    booking_id: str
    room: str
    version: int
    status: str
    position: int | None
    wait_minutes: int | None
    topic: str


class VisitView(msgspec.Struct):
    """Today's visit with its pathway (OUT-8): the steps, where the patient is, what to do next."""

    booking_id: str
    session_id: str
    doctor_id: str
    doctor_name: str
    department_id: str
    room: str
    day: str
    slot_no: int
    slot_at: str
    patient_id: str
    account_id: str
    channel: str
    status: str
    fee_fen: int
    created_at: str
    note: str | None
    steps: list[str]
    current: str
    next: str | None


class VisitsView(msgspec.Struct):
    visits: list[VisitView]


# ---- answers of the doctor routes (the workstation's 候诊叫号 and 我的排班 pages read these) ------------


class QueueEntryView(msgspec.Struct):
    """A patient in the doctor's line: the masked name (DOC-1), slot and check-in times (ISO 8601)."""

    booking_id: str
    label: str
    slot_no: int
    slot_at: str
    checked_in_at: str
    revisit: bool
    priority: bool
    skips: int


class QueueRulesView(msgspec.Struct):
    revisit_first: bool
    skip_back: int
    max_skips: int
    near_turn: int


class QueueView(msgspec.Struct):
    """A session's waiting line as the doctor runs it (OUT-12): who is called, who waits, who missed
    their call; every queue operation answers the line after it."""

    session_id: str
    room: str
    doctor_name: str
    calling: QueueEntryView | None
    waiting: list[QueueEntryView]
    missed: list[QueueEntryView]
    #: how many have been seen
    seen: int
    pace_minutes: float
    version: int
    rules: QueueRulesView


def _day_arg(name: str) -> dt.date | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"query parameter {name!r} must be a date YYYY-MM-DD") from None


def _today() -> dt.date:
    return dt.datetime.now(BEIJING).date()


def register(r: RouteDecorator, *, outpatient: Outpatient, hub: Hub, patients: Patients) -> None:
    # ---- finding a doctor and a slot (OUT-2, OUT-3) ------------------------------------------

    @r("GET", "/api/v1/sessions", summary="Clinic sessions with free slots (today and the next days)",
       permission=None, tag="booking", query=("department", "doctor", "name", "specialty", "from", "days"),
       response=SessionsView)
    async def sessions(ctx: RequestContext) -> Any:
        day_from = _day_arg("from") or _today()
        days = int_arg("days", 7, 1, 31)
        return {"sessions": await outpatient.bookings.sessions(
            department_id=request.args.get("department"), doctor_id=request.args.get("doctor"),
            name=request.args.get("name"), specialty=request.args.get("specialty"), day_from=day_from, days=days)}

    @r("GET", "/api/v1/doctors/<doctor_id>/days/<day>", summary="A doctor's day: sessions and free slots",
       permission=None, tag="booking", response=DoctorDayView)
    async def doctor_day(ctx: RequestContext, doctor_id: str, day: str) -> Any:
        try:
            parse_pool_key(f"{doctor_id}:{day}")
            date = dt.date.fromisoformat(day)
        except (Refusal, ValueError):
            raise ApiError(400, "bad_request", "day must be YYYY-MM-DD") from None
        account = ctx.principal.account_id if ctx.principal else None
        return await outpatient.bookings.pool(doctor_id, date, account)

    @r("GET", "/api/v1/doctors/<doctor_id>/card", summary="A shareable doctor card (link to the doctor's page)",
       permission=None, tag="booking", response=DoctorCardView)
    async def doctor_card(ctx: RequestContext, doctor_id: str) -> Any:
        return await outpatient.bookings.doctor_card(doctor_id, _today())

    # ---- a patient's bookings ----------------------------------------------------------------

    def admit_booking(ctx: RequestContext, body: BookBody, waiter: CommandWaiter) -> Admission:
        """A booking frame waits for its place at the pool's gate without a task, and hears "full" without one."""
        try:
            return outpatient.bookings.gates.admit(
                doctor_id=body.doctor_id, day=body.day, period=body.period, channel="app", client_ref=body.client_ref,
                waiter=_BookingWaiter(waiter))
        except (Refusal, BookingRefused) as err:
            raise from_error(err) from None

    @r("POST", "/api/v1/me/bookings", summary="Book a slot for a family member (held until paid)",
       permission="account.self", body=BookBody, tag="booking", command="booking.create", admit=admit_booking,
       response=BookingView, status=201)
    async def book(ctx: RequestContext, body: BookBody, place: Place | None = None) -> Any:
        assert ctx.principal is not None
        reply = await outpatient.bookings.book(
            account_id=ctx.principal.account_id, patient_id=body.patient_id, doctor_id=body.doctor_id,
            day=body.day, period=body.period, channel="app", slot_no=body.slot_no, client_ref=body.client_ref,
            revisit=body.revisit, place=place,
        )
        return Answer(reply, 201)

    @r("GET", "/api/v1/me/bookings", summary="My bookings (all family members)", permission="account.self",
       tag="booking", query=("from",), response=BookingsView)
    async def my_bookings(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        return {"bookings": await outpatient.bookings.mine(ctx.principal.account_id, since=_day_arg("from"))}

    @r("GET", "/api/v1/me/bookings/<booking_id>", summary="One of my bookings, with its payment and QR code",
       permission="account.self", tag="booking", response=BookingView)
    async def my_booking(ctx: RequestContext, booking_id: str) -> Any:
        assert ctx.principal is not None
        booking = await outpatient.bookings.get(booking_id, ctx.principal.account_id)
        if booking["status"] in ("booked", "checked_in"):
            booking["visit_code"] = outpatient.bookings.visit_code(booking)
            booking["visit_qr"] = outpatient.bookings.visit_qr(booking["visit_code"])
        return booking

    @r("POST", "/api/v1/me/bookings/<booking_id>/cancel", summary="Cancel my booking (refunded if paid)",
       permission="account.self", body=CancelBody, tag="booking", response=CancelledView)
    async def cancel(ctx: RequestContext, body: CancelBody, booking_id: str) -> Any:
        assert ctx.principal is not None
        return await outpatient.bookings.cancel(booking_id, ctx.principal.account_id, body.reason[:100] or "患者取消")

    @r("POST", "/api/v1/me/bookings/<booking_id>/pay", summary="Pay a held booking: self, insurance or mixed",
       permission="account.self", body=PayBody, tag="booking", response=PayView)
    async def pay(ctx: RequestContext, body: PayBody, booking_id: str) -> Any:
        assert ctx.principal is not None
        out = outpatient
        openid = out.hospital.default_openid if body.openid is None else body.openid
        address, row = await out.bookings.locate(booking_id)
        if row["account_id"] != ctx.principal.account_id:
            raise BookingRefused("没有这个预约 (no such booking)", code="not_found")
        await patients.for_booking(ctx.principal.account_id, row["patient_id"])
        booking = await hub.ask(address, StartPayment(booking_id, ctx.principal.account_id, body.method,
                                                      body.insurance_fen))
        order = booking["order"]
        if out.pay is None:
            raise ApiError(503, "payment_unavailable", "支付通道未配置 (no payment gateway configured)")
        description = f"挂号费-{booking['doctor_name']}"[:60]
        try:
            prepay = None
            if order["cash_fen"] > 0:
                prepay = await out.pay.create_order(order["out_trade_no"], description, order["cash_fen"], openid)
            mixed = None
            if order["insurance_fen"] > 0:
                if not body.pay_auth_no or not body.pay_order_id:
                    raise ApiError(422, "invalid",
                                   "医保支付需要医保电子凭证授权和预结算单号 (pay_auth_no, pay_order_id)")
                name, id_number = await patients.insurance_identity(row["patient_id"])
                gov = order["insurance_fen"]
                mixed = await out.pay.create_mixed_order(MixedOrderRequest(
                    out_trade_no=order["out_trade_no"],
                    mix_pay_type="INSURANCE_ONLY" if order["cash_fen"] == 0 else "CASH_AND_INSURANCE",
                    order_type="REG_PAY", openid=openid, payer_name=name, payer_id_number=id_number,
                    serial_no=order["out_trade_no"], pay_order_id=body.pay_order_id,
                    pay_auth_no=body.pay_auth_no, city_id=out.hospital.city_id, med_inst_name=out.hospital.name,
                    med_inst_no=out.hospital.med_inst_no, total_fee=order["total_fen"], med_ins_gov_fee=gov,
                    med_ins_self_fee=0, med_ins_other_fee=0, med_ins_cash_fee=order["cash_fen"],
                    wechat_pay_cash_fee=order["cash_fen"], prepay_id=prepay.prepay_id if prepay else None,
                    med_ins_order_create_time=dt.datetime.now(dt.UTC),
                ))
        except PaymentTimeout:
            raise ApiError(504, "payment_timeout", "支付通道响应超时, 请稍后在预约记录中查看支付状态") from None
        except PaymentError as err:
            raise ApiError(502 if err.retryable else 409, "payment_refused", f"支付下单失败: {err}") from None
        return {
            "booking_id": booking_id, "order": order,
            "pay_params": None if prepay is None else {
                "appId": prepay.app_id, **prepay.request_payment()},
            "mix_trade_no": None if mixed is None else mixed.mix_trade_no,
        }

    @r("POST", "/api/v1/me/bookings/<booking_id>/check-in", summary="Check in with the visit QR code (OUT-11)",
       permission="account.self", body=CheckInBody, tag="booking", response=BookingView)
    async def my_check_in(ctx: RequestContext, body: CheckInBody, booking_id: str) -> Any:
        assert ctx.principal is not None
        reply = await outpatient.bookings.check_in(
            body.code, account_id=ctx.principal.account_id, by=ctx.principal.account_id)
        if reply["booking_id"] != booking_id:
            raise ApiError(422, "bad_code", "二维码与预约不符 (the code is for another booking)")
        return reply

    @r("GET", "/api/v1/me/bookings/<booking_id>/queue", summary="My live place in the waiting line",
       permission="account.self", tag="booking", response=PositionView)
    async def my_position(ctx: RequestContext, booking_id: str) -> Any:
        assert ctx.principal is not None
        _, row = await outpatient.bookings.locate(booking_id)
        if row["account_id"] != ctx.principal.account_id:
            raise BookingRefused("没有这个预约 (no such booking)", code="not_found")
        reply = await hub.ask(f"queue/{row['session_id']}", GetPosition(booking_id, ctx.principal.account_id))
        return {**reply, "topic": f"queue/{row['session_id']}"}

    @r("GET", "/api/v1/me/visits/today", summary="Visit assistant: today's pathway for each booking (OUT-8)",
       permission="account.self", tag="booking", response=VisitsView)
    async def visit_today(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        rows = await outpatient.bookings.mine(ctx.principal.account_id, since=_today())
        steps = ("booked", "paid", "checked_in", "called", "seen")
        visits = []
        for b in rows:
            if b["day"] != _today().isoformat() or b["status"] in ("cancelled", "released"):
                continue
            current = {"held": "booked", "booked": "paid", "checked_in": "checked_in", "seen": "seen",
                       "no_show": "missed"}.get(b["status"], b["status"])
            if b["status"] == "checked_in":
                with contextlib.suppress(HubError):
                    pos = await hub.ask(f"queue/{b['session_id']}",
                                        GetPosition(b["booking_id"], ctx.principal.account_id))
                    if pos["status"] == "called":
                        current = "called"
            hints = {"booked": "请支付挂号费", "paid": "到院后扫码签到", "checked_in": "候诊中, 请留意叫号",
                     "called": f"请到{b['room']}就诊", "seen": "请查看并缴纳检查、药品费用"}
            visits.append({**b, "steps": list(steps), "current": current, "next": hints.get(current)})
        return {"visits": visits}

    # ---- partner channels (OUT-2 standard booking API) ---------------------------------------

    @r("POST", "/api/v1/open/bookings", summary="Partner: book a slot (signed, partner quota)",
       permission=None, body=PartnerBookBody, tag="open", partner_op="bookings.write", status=201)
    async def partner_book(ctx: RequestContext, body: PartnerBookBody) -> Any:
        assert ctx.partner is not None
        if body.channel not in ("partner", "kiosk"):
            raise ApiError(422, "invalid", "channel is partner or kiosk")
        reply = await outpatient.bookings.book(
            account_id=ctx.partner.account_id, patient_id=body.patient_id, doctor_id=body.doctor_id,
            day=body.day, period=body.period, channel=body.channel, slot_no=body.slot_no,
            client_ref=body.client_ref, label=body.patient_label[:20],
        )
        return json_response(reply, 201)

    @r("POST", "/api/v1/open/bookings/<booking_id>/cancel", summary="Partner: cancel a booking it made (signed)",
       permission=None, body=CancelBody, tag="open", partner_op="bookings.write")
    async def partner_cancel(ctx: RequestContext, body: CancelBody, booking_id: str) -> Any:
        assert ctx.partner is not None
        return await outpatient.bookings.cancel(booking_id, ctx.partner.account_id, body.reason)

    # ---- payment gateway callbacks (OUT-6) ---------------------------------------------------

    @r("POST", "/api/v1/payments/wechat/notify", summary="WeChat Pay notifications (signed, encrypted)",
       permission=None, tag="payments")
    async def wechat_notify(ctx: RequestContext) -> Any:
        out = outpatient
        raw = await request.get_data(cache=True)
        assert isinstance(raw, bytes)
        if out.pay is None:
            return _fail(404, "no payment gateway is configured on this hub")
        try:
            note = out.pay.parse_notification(dict(request.headers), raw)
        except NotificationRejected as err:
            log.warning("payment notification rejected: %s", err)
            return _fail(401, str(err))
        resource = note.resource
        try:
            mixed_paid = (note.event_type == "MEDICAL_INSURANCE.SUCCESS"
                          and resource.get("mix_pay_status") == "MIX_PAY_SUCCESS")
            if note.event_type in ("TRANSACTION.SUCCESS", "REFUND.SUCCESS") or mixed_paid:
                out_trade_no = str(resource["out_trade_no"])
                order = await out.bookings.store.order_owner(out_trade_no)
                if order is None:  # not a booking's: a bill order (BILL-...), carehub/outpatient/bills.py
                    if await out.bills.on_notification(note.event_type, resource):
                        return json_response(None, 204)
                    return _fail(404, "unknown order")
                address = pool_address(order["doctor_id"], order["day"])
                amount = resource.get("amount") or {}
                if note.event_type == "REFUND.SUCCESS":
                    refunded = int(amount.get("refund") or 0)
                    await hub.ask(address, RefundSettled(out_trade_no, str(resource["out_refund_no"]), refunded))
                elif note.event_type == "TRANSACTION.SUCCESS":
                    if order["method"] != "self":
                        return json_response(None, 204)  # cash part of a mixed order: the mixed notice settles it
                    paid = int(amount.get("payer_total") or amount.get("total") or 0)
                    await hub.ask(address, PaymentConfirmed(
                        out_trade_no, str(resource.get("transaction_id") or ""), paid))
                else:
                    mix_trade_no = str(resource.get("mix_trade_no") or "")
                    await hub.ask(address, PaymentConfirmed(
                        out_trade_no, mix_trade_no, int(resource.get("total_fee", 0)),
                        mix_trade_no=mix_trade_no or None))
        except Refusal as err:
            log.warning("payment notification for %s refused: %s", resource.get("out_trade_no"), err.message)
            return json_response(None, 204)  # nothing to retry: the order does not accept it
        except HubError as err:
            return _fail(503, err.message)  # the gateway retries later
        return json_response(None, 204)

    # ---- visit day: kiosk check-in, hall screens ---------------------------------------------

    @r("GET", "/api/v1/display/<department_id>/calls", summary="Hall screen feed: the latest calls of a department",
       permission=None, tag="queue", query=("limit",))
    async def display_calls(ctx: RequestContext, department_id: str) -> Any:
        limit = int_arg("limit", 10, 1, 50)
        return {"department_id": department_id, "topic": f"broadcast/display/{department_id}",
                "calls": await outpatient.bookings.calls(department_id, limit)}

    # ---- doctors: their queue and their schedule requests (OUT-12, SCH-3, SCH-4, DOC-27) -----

    def _queue_address(ctx: RequestContext, period: str) -> str:
        assert ctx.principal is not None
        day = _day_arg("day") or _today()
        return f"queue/{ctx.principal.account_id}:{day.isoformat()}:{period}"

    async def _queue_op(ctx: RequestContext, period: str, message: msgspec.Struct) -> Any:
        assert ctx.principal is not None
        caller = Caller(ctx.principal.account_id, frozenset(ctx.principal.roles))
        address = _queue_address(ctx, period)
        if not hub.authorize(address, message, caller):  # type: ignore[arg-type]
            raise ApiError(403, "forbidden", "只能操作自己的候诊队列")
        return await hub.ask(address, message, caller=caller)

    @r("GET", "/api/v1/doctor/queue/<period>", summary="Doctor: my waiting line for a session today",
       permission="clinic.queue", tag="queue", query=("day",), response=QueueView)
    async def queue_view(ctx: RequestContext, period: str) -> Any:
        return await _queue_op(ctx, period, GetQueue())

    @r("POST", "/api/v1/doctor/queue/<period>/next", summary="Doctor: call the next patient",
       permission="clinic.queue", tag="queue", query=("day",), response=QueueView)
    async def queue_next(ctx: RequestContext, period: str) -> Any:
        return await _queue_op(ctx, period, CallNext())

    @r("POST", "/api/v1/doctor/queue/<period>/skip", summary="Doctor: the called patient is absent (moves back)",
       permission="clinic.queue", tag="queue", query=("day",), response=QueueView)
    async def queue_skip(ctx: RequestContext, period: str) -> Any:
        return await _queue_op(ctx, period, Skip())

    @r("POST", "/api/v1/doctor/queue/<period>/recall", summary="Doctor: call a skipped or missed patient again",
       permission="clinic.queue", body=RecallBody, tag="queue", query=("day",), response=QueueView)
    async def queue_recall(ctx: RequestContext, body: RecallBody, period: str) -> Any:
        return await _queue_op(ctx, period, Recall(body.booking_id))

    @r("POST", "/api/v1/doctor/queue/<period>/seen", summary="Doctor: the called patient has been seen",
       permission="clinic.queue", tag="queue", query=("day",), response=QueueView)
    async def queue_seen(ctx: RequestContext, period: str) -> Any:
        return await _queue_op(ctx, period, MarkSeen())

    @r("POST", "/api/v1/doctor/queue/<period>/priority", summary="Doctor: give a waiting patient priority",
       permission="clinic.queue", body=PriorityBody, tag="queue", query=("day",), response=QueueView)
    async def queue_priority(ctx: RequestContext, body: PriorityBody, period: str) -> Any:
        return await _queue_op(ctx, period, SetPriority(body.booking_id, body.priority))

    @r("POST", "/api/v1/doctor/rosters", summary="Doctor: submit my roster, extra session, leave or change",
       permission="clinic.queue", body=RosterRequest, tag="schedule", response=RosterView, status=201)
    async def doctor_roster(ctx: RequestContext, body: RosterRequest) -> Any:
        assert ctx.principal is not None
        view = await outpatient.schedule.submit(body, ctx.principal.account_id, doctor_id=ctx.principal.account_id)
        return json_response(view, 201)

    @r("GET", "/api/v1/doctor/rosters", summary="Doctor: my roster requests and their decisions",
       permission="clinic.queue", tag="schedule", response=RostersView)
    async def doctor_rosters(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        return {"rosters": await outpatient.schedule.rosters(doctor_id=ctx.principal.account_id)}


def _fail(status: int, message: str) -> Response:
    """A notification we did not take: WeChat Pay reads ``code``/``message`` (and retries later);
    ``error`` is the body every other CareHub error has."""
    return json_response({"code": "FAIL", "message": message, "error": {"code": "notification_refused",
                                                                        "message": message}}, status)

"""The I/O steps outpatient actors ask for with durable tells (see :class:`carehub.hub.Effect`).

Each is retried until it succeeds and is safe to repeat:

- ``refund/<out_trade_no>``: refund a paid order by its original method with the same refund
  number every time (WeChat Pay treats a repeated ``out_refund_no`` as the same refund), or
  close an unpaid one; a close that finds the order paid reports the payment to the pool,
  which then refunds it. An order with an insurance part (OUT-6) goes back in three steps, each
  idempotent so a retry after a crash anywhere repeats them harmlessly: the cash part through
  WeChat Pay, the insurance part through NHSA 6203 (same refund number), then the med-ins
  refund notify (same ``out_refund_no`` as the cash refund); the pool hears of each part.
- ``sms/<id>``: a notice by SMS (template ``notice``) to the account's phone.
- ``his/<booking_id>``: push the booking's *current* state to the HIS as a FHIR Appointment
  (asking the pool first, so pushes performed out of order still leave the latest state).
- ``blacklist/<patient_id>``: apply the no-show rule after a no-show was recorded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from carehub.actors.slot_pool import (
    CheckMixedOrder,
    CloseOrder,
    GetBooking,
    NoShowRecorded,
    PaymentConfirmed,
    PushAppointment,
    Refund,
    RefundSettled,
    ReleaseHold,
    SmsNotice,
)
from carehub.channels.his import AppointmentInfo, HisClient
from carehub.channels.payment import MixedTransaction, OrderNotFound, OrderPaid, WeChatPay
from carehub.channels.sms import TEMPLATES, SmsChannel
from carehub.hub import Context, Effect, Hub
from carehub.storage.identity.accounts import AccountStore
from carehub.storage.keyring import KeyRing
from carehub.storage.outpatient import BookingStore

from .errors import NotConfigured

if TYPE_CHECKING:
    from .booking import Bookings

log = logging.getLogger("carehub.outpatient")


class RefundEffect(Effect):
    kind = "refund"
    messages: ClassVar[dict[str, type[msgspec.Struct]]] = {
        "Refund": Refund, "CloseOrder": CloseOrder, "CheckMixedOrder": CheckMixedOrder}

    def __init__(self, hub: Hub, pay: WeChatPay | None) -> None:
        self.hub = hub
        self.pay = pay

    async def perform(self, message: msgspec.Struct, ctx: Context) -> None:
        if self.pay is None:
            raise NotConfigured("no payment gateway configured (CAREHUB_PAY_URL)")
        match message:
            case Refund():
                if message.refund_fen > 0:
                    await self._refund_cash(self.pay, message)
                if message.insurance_fen > 0:
                    await self._refund_insurance(self.pay, message)
            case CheckMixedOrder():
                mixed = await self._paid_mixed(self.pay, message.out_trade_no)
                if mixed is None:
                    await self.hub.ask(message.pool, ReleaseHold(message.booking_id, checked=True))
                else:
                    await self._confirm_mixed(message.pool, mixed)
            case CloseOrder():
                if message.insurance:
                    # the cash part (a JSAPI order of the same number, if any) can be closed; the
                    # mixed order cannot: a payment that happened anyway is reported, then refunded
                    with contextlib.suppress(OrderNotFound, OrderPaid):
                        await self.pay.close(message.out_trade_no)
                    mixed = await self._paid_mixed(self.pay, message.out_trade_no)
                    if mixed is not None:
                        await self._confirm_mixed(message.pool, mixed)
                    return
                try:
                    await self.pay.close(message.out_trade_no)
                except OrderNotFound:
                    return  # never created at the gateway (the patient did not go on to pay)
                except OrderPaid:
                    tx = await self.pay.query(message.out_trade_no)
                    if tx.trade_state == "SUCCESS" and tx.transaction_id:
                        await self.hub.ask(message.pool, PaymentConfirmed(
                            message.out_trade_no, tx.transaction_id, tx.payer_total_fen or tx.total_fen or 0))


    @staticmethod
    async def _paid_mixed(pay: WeChatPay, out_trade_no: str) -> MixedTransaction | None:
        """The mixed order if the gateway says it was paid (None: not paid, or never created)."""
        try:
            mixed = await pay.query_mixed(out_trade_no)
        except OrderNotFound:
            return None
        return mixed if mixed.mix_pay_status == "MIX_PAY_SUCCESS" else None

    async def _confirm_mixed(self, pool: str, mixed: MixedTransaction) -> None:
        await self.hub.ask(pool, PaymentConfirmed(mixed.out_trade_no, mixed.mix_trade_no, mixed.total_fee,
                                                  mix_trade_no=mixed.mix_trade_no))

    async def _refund_cash(self, pay: WeChatPay, message: Refund) -> None:
        refund = await pay.refund(message.out_trade_no, message.refund_no, message.refund_fen,
                                  message.total_fen, message.reason)
        if refund.status == "SUCCESS":
            await self.hub.ask(message.pool, RefundSettled(message.out_trade_no, message.refund_no, refund.refund_fen))
        elif refund.status in ("CLOSED", "ABNORMAL"):
            self.hub.alarm("error", f"refund {message.refund_no} is {refund.status}: needs the finance desk")
        # PROCESSING: the REFUND.SUCCESS notification settles the cash part

    async def _refund_insurance(self, pay: WeChatPay, message: Refund) -> None:
        """NHSA 6203 of the mixed order's insurance split, then ``/v3/med-ins/refunds/notify``.

        The split (统筹, 个账, other funds) and the NHSA ``pay_order_id`` come from the gateway's
        own record of the mixed order, so what goes back is exactly what was paid. Both calls are
        idempotent by the refund number, and the NHSA answers a repeat with the first refund's
        time, so a retried notify carries identical content.
        """
        mixed: MixedTransaction = await (pay.query_mixed_by_mix_trade_no(message.mix_trade_no) if message.mix_trade_no
                                         else pay.query_mixed(message.out_trade_no))
        gov, own, other = mixed.med_ins_gov_fee, mixed.med_ins_self_fee, mixed.med_ins_other_fee
        if gov + own + other != message.insurance_fen:
            # the order as booked and the gateway disagree: refund nothing automatically (retried,
            # so the effect's alarm reaches the finance desk)
            raise RuntimeError(f"refund {message.refund_no}: insurance part {message.insurance_fen} fen, but mixed "
                               f"order {mixed.mix_trade_no} paid {gov + own + other} fen from insurance")
        nhsa = await pay.nhsa_refund(mixed.pay_order_id, message.refund_no, fund_fen=gov + other, psn_acct_fen=own)
        await pay.notify_med_ins_refund(mixed.mix_trade_no, out_refund_no=message.refund_no, gov_fen=gov,
                                        self_fen=own, other_fen=other, refund_time=nhsa.refund_time)
        await self.hub.ask(message.pool, RefundSettled(message.out_trade_no, message.refund_no, nhsa.total_fen,
                                                       part="insurance"))


class SmsEffect(Effect):
    kind = "sms"
    messages: ClassVar[dict[str, type[msgspec.Struct]]] = {"SmsNotice": SmsNotice}

    def __init__(self, accounts: AccountStore, keyring: KeyRing, sms: SmsChannel | None) -> None:
        self.accounts = accounts
        self.keyring = keyring
        self.sms = sms

    async def perform(self, message: msgspec.Struct, ctx: Context) -> None:
        assert isinstance(message, SmsNotice)
        if self.sms is None:
            raise NotConfigured("no SMS channel configured (CAREHUB_SMS_URL)")
        account = await self.accounts.by_id(message.account_id)
        if account is None or not account.phone_enc:
            log.info("no phone for %s: SMS notice skipped", message.account_id)
            return
        phone = self.keyring.open(account.phone_enc, field="accounts.phone")
        template = TEMPLATES["notice"]
        await self.sms.send(phone, template.code, {"name": account.display_name[:20], "content": message.text[:300]},
                            out_id=ctx.key[:64])


class HisEffect(Effect):
    kind = "his"
    messages: ClassVar[dict[str, type[msgspec.Struct]]] = {"PushAppointment": PushAppointment}

    def __init__(self, hub: Hub, bookings: BookingStore, keyring: KeyRing, his: HisClient | None) -> None:
        self.hub = hub
        self.bookings = bookings
        self.keyring = keyring
        self.his = his

    async def perform(self, message: msgspec.Struct, ctx: Context) -> None:
        assert isinstance(message, PushAppointment)
        if self.his is None:
            return  # no HIS interface configured: nothing to keep in step
        b: dict[str, Any] = await self.hub.ask(message.pool, GetBooking(message.booking_id))
        row = await self.bookings.appointment(b["booking_id"])
        if row is None:
            raise LookupError(f"booking {b['booking_id']} has no projection row yet")
        # the HIS registers the person by name (sent, never logged); partner bookings of people
        # unknown here fall back to the masked name the booking carries
        patient_name = (self.keyring.open(row["name_enc"], field="patients.name") if row["name_enc"]
                        else b.get("label") or "患者")
        start = dt.datetime.fromisoformat(b["slot_at"])
        status = {"released": "cancelled"}.get(b["status"], b["status"])
        await self.his.push_appointment(AppointmentInfo(
            booking_id=b["booking_id"], status=status, patient_id=b["patient_id"], patient_name=patient_name,
            doctor_id=b["doctor_id"], doctor_name=row["doctor_name"], department_id=b["department_id"],
            department_name=row["department_name"], start=start,
            end=start + dt.timedelta(minutes=row["slot_minutes"]), channel=b["channel"], created=row["created_at"],
            cancel_reason=b["note"] if status in ("cancelled", "no_show") else None,
        ))


class BlacklistEffect(Effect):
    kind = "blacklist"
    messages: ClassVar[dict[str, type[msgspec.Struct]]] = {"NoShowRecorded": NoShowRecorded}

    def __init__(self, bookings: Bookings) -> None:
        self.bookings = bookings

    async def perform(self, message: msgspec.Struct, ctx: Context) -> None:
        assert isinstance(message, NoShowRecorded)
        await self.bookings.apply_no_show_rule(message.patient_id)

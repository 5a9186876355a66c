"""Outpatient bills: pending charges paid online, slip QR codes, fee details per visit, payment
history and self-service test orders (OUT-7, OUT-13, OUT-14, ME-6).

Where a bill comes from. The HIS holds what the doctors ordered as FHIR ChargeItems
(:meth:`carehub.channels.his.HisClient.charge_items`); :meth:`Bills.refresh` copies a patient's
into ``bills`` (id ``his-<ChargeItem id>``), so paying, history and fee details work from our own
tables and the HIS is asked only for what is new. A self-service test order (a catalogue test the
patient orders for a verified family member) is a bill of its own (``self-<order id>``).

Paying. One WeChat Pay JSAPI order (``out_trade_no`` ``BILL-`` + 20 hex, a namespace booking
orders, ``<booking id>P<n>``, cannot reach) pays a set of unpaid bills of one patient. Several
open orders may cover a bill (a patient who gave up on one order and paid again); which one pays
it is decided in one transaction when the gateway's signed notification arrives
(:meth:`Bills.settle`): the order row is locked and moves ``created -> paid`` only from
``created`` (a replayed notification finds it ``paid`` and changes nothing), its bills are locked
and must all still be unpaid; if another order got there first, this payment is refunded whole by
the original method instead. In the same transaction the HIS push and any refund are queued as
durable tells to the effects below (through the hub store's outbox, the same one actors use:
:meth:`carehub.storage.hub_store.PostgresHubStore.schedule_in`), so they survive a restart and are
retried until done. The SQL is :class:`carehub.storage.outpatient.BillStore`'s.

Why SQL and not an actor: a bill order has one rule (paid once, and its bills once) and no state
beyond its rows; a conditional ``UPDATE ... WHERE status = 'created'`` under row locks decides it
in the database, which also holds across several hub nodes, with no activation to route to.

A create that times out is queried, never assumed (:meth:`Bills.pay`): not found -> created again;
``NOTPAY`` -> the identical create is re-posted (the gateway answers the same ``prepay_id``);
``SUCCESS`` -> settled as if the notification had come.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
import trio

from carehub.actors.notifier import NoticeEvent
from carehub.channels.his import HisClient, HisError, SelfServiceOrder
from carehub.channels.payment import (
    OrderNotFound,
    PaymentError,
    PaymentTimeout,
    Prepay,
    WeChatPay,
)
from carehub.hub import Context, Effect, Hub, Lifecycle
from carehub.identity.patients import Patients
from carehub.storage.audit import AuditEntry, AuditLog
from carehub.storage.keyring import KeyRing
from carehub.storage.outpatient import BillStore

from .codes import BadCode, seal, unseal
from .errors import BillRefused, NotConfigured

log = logging.getLogger("carehub.outpatient.bills")

#: Bill orders' out_trade_no prefix; booking orders are ``<24 hex>P<n>`` and never contain ``-``.
ORDER_PREFIX = "BILL-"
SLIP_DOMAIN = "slip-qr"
SLIP_CODE_PREFIX = "SL1."
CATEGORIES = ("exam", "lab", "imaging", "drug", "treatment", "other")
CATEGORY_NAMES = {"exam": "检查", "lab": "检验", "imaging": "影像", "drug": "药品", "treatment": "治疗",
                  "other": "其他"}
MAX_BILLS_PER_ORDER = 50
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_SLIP = re.compile(r"^(ServiceRequest|MedicationRequest)/[A-Za-z0-9\-.]{1,64}$")


_BILL_ID = re.compile(r"^(his|self)-[A-Za-z0-9\-.]{1,64}$")
_PATIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_ORDER_NO = re.compile(r"^BILL-[0-9a-f]{20}$")


def _text(value: str, what: str) -> str:
    """Free text bound for the database: PostgreSQL text cannot hold NUL (nor should anyone type it)."""
    if "\x00" in value:
        raise BillRefused(f"{what} 含有不允许的字符 (NUL)", code="invalid")
    return value


# ---- durable tells to the effects below -----------------------------------------------------------


class SyncBillOrder(msgspec.Struct, frozen=True):
    """Bills sends it (to ``hisbill/<out_trade_no>``) after an order was paid or refunded: push
    the order's *current* state to the HIS (ChargeItems billed or aborted; self-service orders as
    ServiceRequest + ChargeItem)."""

    out_trade_no: str


class RefundBillOrder(msgspec.Struct, frozen=True):
    """Bills sends it (to ``billrefund/<out_trade_no>``): refund the order whole by its original
    method, always with the same ``out_refund_no``."""

    out_trade_no: str
    refund_no: str
    refund_fen: int
    total_fen: int
    reason: str


class BillStatus(enum.StrEnum):
    """A bill: unpaid until an order pays it (or the HIS says it was paid at a window or withdrawn)."""

    UNPAID = "unpaid"
    PAID = "paid"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


class BillOrderStatus(enum.StrEnum):
    """One WeChat Pay order for a set of bills."""

    CREATED = "created"
    PAID = "paid"
    REFUNDING = "refunding"
    REFUNDED = "refunded"
    CLOSED = "closed"


#: a bill is paid once, by one order; our payments are ours to record (the HIS moves only unpaid bills)
BILL: Lifecycle[BillStatus] = Lifecycle("bill", {
    BillStatus.UNPAID: {"paid": BillStatus.PAID, "paid_elsewhere": BillStatus.PAID,
                        "withdrawn": BillStatus.CANCELLED},
    BillStatus.PAID: {"refund": BillStatus.REFUNDED},
})
#: an order moves from ``created`` once: paid (its bills paid), or refunding when another order got
#: there first; a refused create closes it
BILL_ORDER: Lifecycle[BillOrderStatus] = Lifecycle("bill order", {
    BillOrderStatus.CREATED: {"paid": BillOrderStatus.PAID, "paid_late": BillOrderStatus.REFUNDING,
                              "create_refused": BillOrderStatus.CLOSED},
    BillOrderStatus.PAID: {"refund": BillOrderStatus.REFUNDING},
    BillOrderStatus.REFUNDING: {"refund_settled": BillOrderStatus.REFUNDED},
})
#: what a HIS charge's status means for the copy we keep (anything else: withdrawn)
HIS_STATUS = {"billable": BillStatus.UNPAID, "billed": BillStatus.PAID, "planned": BillStatus.UNPAID}


@dataclasses.dataclass(frozen=True)
class CatalogueEntry:
    """One test of the self-service catalogue (OUT-14)."""

    code: str
    name: str
    category: str
    price_fen: int
    description: str = ""
    notice: str = ""
    active: bool = True


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else value


class Bills:
    def __init__(self, hub: Hub, patients: Patients, keyring: KeyRing, audit: AuditLog,
                 pay: WeChatPay | None, his: HisClient | None, *, store: BillStore) -> None:
        self.store = store
        self.hub = hub
        self.patients = patients
        self.keyring = keyring
        self.audit = audit
        self.gateway = pay
        self.his = his

    # ---- who may see what ------------------------------------------------------------------

    async def family(self, account_id: str) -> list[str]:
        """The patients linked to the account (with their consent): whose bills it may see."""
        return await self.store.family(account_id)

    async def _patients_of(self, account_id: str, patient_id: str | None) -> list[str]:
        family = await self.family(account_id)
        if patient_id is None:
            return family
        if patient_id not in family:
            raise BillRefused("没有这个就诊人 (no such person on this account)", code="not_found")
        return [patient_id]

    # ---- from the HIS ----------------------------------------------------------------------

    async def refresh(self, patient_id: str) -> bool:
        """Copy the patient's ChargeItems from the HIS; False when the HIS could not be asked
        (what we already hold is shown, marked as possibly stale)."""
        if self.his is None:
            return True
        try:
            charges = await self.his.charge_items(patient_id)
        except HisError as err:
            log.warning("charges of patient %s not refreshed: %s", patient_id, err)
            return False
        now = dt.datetime.now(dt.UTC)
        rows = [
            (f"his-{c.his_id}", c.his_id, c.patient_id, c.visit_id, c.slip, c.code, c.name,
             c.category if c.category in CATEGORIES else "other", c.quantity, c.amount_fen,
             HIS_STATUS.get(c.status, BillStatus.CANCELLED),
             c.occurred_at or now, now)
            for c in charges if c.bill_id is None and c.patient_id == patient_id
        ]
        await self.store.copy_from_his(rows)
        return True

    async def _refresh_all(self, patients: list[str]) -> bool:
        """Refresh every family member's charges at once (one HIS search each, side by side)."""
        done: list[bool] = []

        async def one(patient_id: str) -> None:
            done.append(await self.refresh(patient_id))

        async with trio.open_nursery() as nursery:
            for patient_id in patients:
                nursery.start_soon(one, patient_id)
        return all(done)

    # ---- what the patient sees -------------------------------------------------------------

    def _view(self, r: Any) -> dict[str, Any]:
        return {
            "bill_id": r["id"], "source": r["source"], "patient_id": r["patient_id"], "visit_id": r["visit_id"],
            "slip": r["slip"], "slip_code": self.slip_code(r["patient_id"], r["slip"]) if r["slip"] else None,
            "code": r["code"], "name": r["name"], "category": r["category"],
            "category_name": CATEGORY_NAMES.get(r["category"], "其他"), "quantity": r["quantity"],
            "amount_fen": r["amount_fen"], "status": r["status"], "order_no": r["order_no"],
            "occurred_at": r["occurred_at"].isoformat(),
        }

    async def pending(self, account_id: str, patient_id: str | None = None, *,
                      status: str | None = "unpaid") -> dict[str, Any]:
        """The bills of the account's family members (one member with ``patient_id``), fresh from
        the HIS; by default only the unpaid ones."""
        patients = await self._patients_of(account_id, patient_id)
        fresh = await self._refresh_all(patients)
        rows = await self.store.of_patients(patients, status)
        bills = [self._view(r) for r in rows]
        return {"bills": bills, "total_fen": sum(b["amount_fen"] for b in bills if b["status"] == "unpaid"),
                "fresh": fresh}

    async def by_slip(self, account_id: str, code: str) -> dict[str, Any]:
        """Exactly the bills of the slip a QR code names (paid or not), for an account whose
        family includes its patient."""
        patient_id, slip = self.read_slip_code(code)
        if patient_id not in await self.family(account_id):
            raise BillRefused("这张单据不属于您的就诊人 (the slip is not for anyone on this account)", code="not_found")
        fresh = await self.refresh(patient_id)
        rows = await self.store.of_slip(patient_id, slip)
        bills = [self._view(r) for r in rows]
        return {"slip": slip, "patient_id": patient_id, "bills": bills, "fresh": fresh,
                "total_fen": sum(b["amount_fen"] for b in bills if b["status"] == "unpaid")}

    async def visits(self, account_id: str, patient_id: str | None = None) -> list[dict[str, Any]]:
        """Fee details per visit (OUT-13): each booking of the family with its registration fee and
        the items ordered in it, with amounts, paid or not; charges outside any booking last."""
        patients = await self._patients_of(account_id, patient_id)
        for p in patients:
            await self.refresh(p)
        bookings, rows = await self.store.visit_fees(patients)
        by_visit: dict[str | None, list[dict[str, Any]]] = {}
        for r in rows:
            by_visit.setdefault(r["visit_id"], []).append(self._view(r))
        visits = []
        for b in bookings:
            items = []
            if b["fee_fen"]:
                paid = {"paid": "paid", "refunded": "refunded"}.get(b["fee_status"] or "", "unpaid")
                items.append({"bill_id": None, "code": "REG", "name": "挂号费", "category": "registration",
                              "category_name": "挂号", "quantity": 1, "amount_fen": b["fee_fen"], "status": paid})
            items += by_visit.pop(b["id"], [])
            visits.append(self._visit(b["id"], b["patient_id"], items, day=b["day"].isoformat(),
                                      doctor_name=b["doctor_name"], department=b["department_name"],
                                      booking_status=b["status"]))
        for visit_id, items in by_visit.items():  # charges of visits booked elsewhere, and self-service orders
            visits.append(self._visit(visit_id, items[0]["patient_id"], items, day=items[0]["occurred_at"][:10],
                                      doctor_name=None, department=None, booking_status=None))
        return visits

    @staticmethod
    def _visit(visit_id: str | None, patient_id: str, items: list[dict[str, Any]], **about: Any) -> dict[str, Any]:
        def total(*statuses: str) -> int:
            return sum(i["amount_fen"] for i in items if i["status"] in statuses)

        return {"visit_id": visit_id, "patient_id": patient_id, **about, "items": items,
                "total_fen": total("unpaid", "paid", "refunded"), "paid_fen": total("paid"),
                "unpaid_fen": total("unpaid"), "refunded_fen": total("refunded")}

    async def orders(self, account_id: str) -> list[dict[str, Any]]:
        """Outpatient payment history (ME-6): every bill order of the account, newest first."""
        return [self._order_view(r) for r in await self.store.orders_of(account_id)]

    async def order(self, out_trade_no: str, account_id: str | None) -> dict[str, Any]:
        if not _ORDER_NO.match(out_trade_no):
            raise BillRefused("没有这笔缴费订单 (no such bill order)", code="not_found")
        row = await self.store.order(out_trade_no)
        if row is None or (account_id is not None and row["account_id"] != account_id):
            raise BillRefused("没有这笔缴费订单 (no such bill order)", code="not_found")
        return self._order_view(row)

    def _order_view(self, r: dict[str, Any]) -> dict[str, Any]:
        return {
            "out_trade_no": r["out_trade_no"], "patient_id": r["patient_id"], "total_fen": r["total_fen"],
            "status": r["status"], "method": "wechat", "transaction_id": r["transaction_id"],
            "refunded_fen": r["refunded_fen"], "note": r["note"], "created_at": r["created_at"].isoformat(),
            "paid_at": _iso(r["paid_at"]), "items": [self._view(i) for i in r["items"]],
        }

    # ---- paying ----------------------------------------------------------------------------

    async def pay(self, account_id: str, bill_ids: list[str], openid: str,
                  client_ref: str | None = None) -> dict[str, Any]:
        """One WeChat Pay order for unpaid bills of one family member (real-name verified)."""
        ids = sorted(set(bill_ids))
        if not 1 <= len(ids) <= MAX_BILLS_PER_ORDER:
            raise BillRefused(f"一次缴费需选择 1 到 {MAX_BILLS_PER_ORDER} 项费用", code="invalid")
        if not all(_BILL_ID.match(i) for i in ids):
            raise BillRefused("没有这些费用 (no such bills on this account)", code="not_found")
        _text(openid, "openid")
        _text(client_ref or "", "client_ref")
        if self.gateway is None:
            raise BillRefused("本院尚未开通在线支付 (no payment gateway is configured)",
                              code="payment_not_offered")
        family = await self.family(account_id)
        rows = await self.store.by_ids(ids)
        # the HIS first: a charge paid at a window or withdrawn since it was listed is not taken again
        for patient in {r["patient_id"] for r in rows} if len(rows) == len(ids) else family:
            if patient in family:
                await self.refresh(patient)
        rows = await self.store.by_ids(ids)
        if len(rows) != len(ids) or any(r["patient_id"] not in family for r in rows):
            raise BillRefused("没有这些费用 (no such bills on this account)", code="not_found")
        patients = {r["patient_id"] for r in rows}
        if len(patients) != 1:
            raise BillRefused("一次只能为一位就诊人缴费 (one family member per payment)", code="invalid")
        patient_id = patients.pop()
        await self.patients.for_booking(account_id, patient_id)  # linked, consented, real-name verified
        seed = f"{account_id}\x00{client_ref}" if client_ref else uuid.uuid4().hex
        out_trade_no = ORDER_PREFIX + hashlib.sha256(seed.encode()).hexdigest()[:20]
        earlier = await self.store.order_status(out_trade_no)
        unpaid = [r for r in rows if r["status"] != BillStatus.UNPAID]
        if unpaid and earlier in (None, BillOrderStatus.CREATED):
            raise BillRefused(f"{unpaid[0]['name']} 已缴费或已撤销 (already paid or withdrawn)", code="already_paid")
        total = sum(r["amount_fen"] for r in rows)
        if total <= 0:
            raise BillRefused("应缴金额为零, 无需支付", code="invalid")
        now = dt.datetime.now(dt.UTC)

        status = await self.store.create_order(out_trade_no, account_id, patient_id, ids, total,
                                               BillOrderStatus.CREATED, now)
        if status is None:
            raise BillRefused("client_ref 已用于另一笔缴费 (client_ref reused)", code="conflict")
        names = sorted(r["name"] for r in rows)
        description = f"门诊缴费-{names[0]}" + (f"等{len(names)}项" if len(names) > 1 else "")
        prepay = None
        if status == BillOrderStatus.CREATED:
            prepay = await self._create(out_trade_no, description[:120], total, openid)
        order = await self.order(out_trade_no, account_id)
        return {"order": order, "pay_params": None if prepay is None else {"appId": prepay.app_id,
                                                                             **prepay.request_payment()}}

    async def _create(self, out_trade_no: str, description: str, total: int, openid: str) -> Prepay | None:
        assert self.gateway is not None
        attach = "bills"
        try:
            return await self.gateway.create_order(out_trade_no, description, total, openid, attach=attach)
        except PaymentTimeout as err:
            log.warning("order %s: no answer to the create (%s); querying the gateway", out_trade_no, err)
        except PaymentError as err:
            if not err.retryable:  # refused outright: this order can never be paid
                await self.store.move_order(
                    out_trade_no, was=BillOrderStatus.CREATED,
                    status=BILL_ORDER.step(BillOrderStatus.CREATED, "create_refused"),
                    note=f"下单失败: {err.code}"[:200], now=dt.datetime.now(dt.UTC))
            raise BillRefused(f"支付下单失败: {err.message}", code="payment_refused") from None
        # the create may or may not have landed: ask, never assume
        try:
            tx = await self.gateway.query(out_trade_no)
        except OrderNotFound:
            tx = None
        except PaymentError as err:
            raise BillRefused("支付通道响应超时, 请稍后在缴费记录中查看 (the gateway did not answer)",
                              code="payment_unknown") from err
        if tx is not None and tx.trade_state == "SUCCESS" and tx.transaction_id:
            await self.settle(out_trade_no, tx.transaction_id, tx.payer_total_fen or tx.total_fen or total)
            return None
        if tx is not None and tx.trade_state not in ("NOTPAY", "USERPAYING"):
            raise BillRefused(f"支付订单状态为 {tx.trade_state}, 请重新缴费", code="payment_refused")
        try:  # not there: create it; NOTPAY: the identical create answers the same prepay_id
            return await self.gateway.create_order(out_trade_no, description, total, openid, attach=attach)
        except PaymentError as err:
            raise BillRefused("支付通道暂不可用, 请稍后再试 (the gateway did not answer)",
                              code="payment_unknown") from err

    async def on_notification(self, event_type: str, resource: Mapping[str, Any]) -> bool:
        """A verified WeChat Pay notification about an order that is not a booking's: False when it
        is not a bill order either (the caller answers 404, the gateway retries later)."""
        out_trade_no = str(resource.get("out_trade_no", ""))
        if not out_trade_no.startswith(ORDER_PREFIX):
            return False
        amount = resource.get("amount") or {}
        if event_type == "TRANSACTION.SUCCESS":
            return await self.settle(out_trade_no, str(resource.get("transaction_id") or ""),
                                     int(amount.get("payer_total") or amount.get("total") or 0))
        if event_type == "REFUND.SUCCESS":
            return await self.refund_settled(out_trade_no, int(amount.get("refund") or 0))
        return await self.store.order_exists(out_trade_no)

    async def settle(self, out_trade_no: str, transaction_id: str, paid_fen: int) -> bool:
        """The gateway says the order is paid: its bills become paid, once. False: no such order."""
        now = dt.datetime.now(dt.UTC)

        # some bill was paid by another order (or withdrawn): this money goes back whole
        note = "费用已由其他订单缴清, 本笔原路退回"

        def refund_whole(total_fen: int) -> list[tuple[str, msgspec.Struct]]:
            back = paid_fen or total_fen
            return [(f"billrefund/{out_trade_no}", RefundBillOrder(out_trade_no, f"{out_trade_no}R", back, back, note))]

        created = BillOrderStatus.CREATED
        on_paid: list[tuple[str, msgspec.Struct]] = [(f"hisbill/{out_trade_no}", SyncBillOrder(out_trade_no))]
        order = await self.store.order(out_trade_no) if _ORDER_NO.match(out_trade_no) else None
        if order is not None:
            # MSG-3: "payment succeeded", through the message center, committed with the payment
            items = "、".join(i["name"] for i in order["items"][:3]) + ("等" if len(order["items"]) > 3 else "")
            on_paid.append((f"notify/{out_trade_no}:payment.succeeded", NoticeEvent(
                order["account_id"], "payment.succeeded",
                {"patient": "", "amount": f"{order['total_fen'] / 100:.2f}元", "item": items or "门诊费用",
                 "order_id": out_trade_no}, source="bills")))
        settled = await self.store.settle(
            out_trade_no, transaction_id, now, created=created, paid=BILL_ORDER.step(created, "paid"),
            refunding=BILL_ORDER.step(created, "paid_late"), bill_unpaid=BillStatus.UNPAID,
            bill_paid=BILL.step(BillStatus.UNPAID, "paid"), refund_no=f"{out_trade_no}R", note=note,
            on_paid=on_paid, on_refund=refund_whole,
        )
        if settled is None:
            return False
        outcome, total = settled
        if outcome != "replayed" and paid_fen != total:
            log.error("ALARM order %s paid %d fen, expected %d", out_trade_no, paid_fen, total)
        log.info("bill order %s: notification -> %s", out_trade_no, outcome)
        return True

    async def refund(self, out_trade_no: str, reason: str, by: str) -> dict[str, Any]:
        """Refund a paid order whole, by its original method (an admin's decision, audited); the HIS
        is told its charges are void."""
        reason = _text(reason, "退费原因").strip()[:80]
        if not reason:
            raise BillRefused("退费需要填写原因", code="invalid")
        if not _ORDER_NO.match(out_trade_no):
            raise BillRefused("没有这笔缴费订单 (no such bill order)", code="not_found")
        now = dt.datetime.now(dt.UTC)

        def tells(total_fen: int) -> list[tuple[str, msgspec.Struct]]:
            return [(f"billrefund/{out_trade_no}",
                     RefundBillOrder(out_trade_no, f"{out_trade_no}R", total_fen, total_fen, reason)),
                    (f"hisbill/{out_trade_no}", SyncBillOrder(out_trade_no))]

        if not await self.store.refund(
            out_trade_no, now, paid=BillOrderStatus.PAID, refunding=BILL_ORDER.step(BillOrderStatus.PAID, "refund"),
            bill_paid=BillStatus.PAID, bill_refunded=BILL.step(BillStatus.PAID, "refund"),
            refund_no=f"{out_trade_no}R", note=reason, tells=tells,
        ):
            raise BillRefused("只有已支付的订单可以退费 (only a paid order can be refunded)", code="not_paid")
        await self.audit.append(AuditEntry(action="bill.refund", target=f"bill_order/{out_trade_no}", actor_id=by,
                                           detail={"reason": reason}))
        return await self.order(out_trade_no, None)

    async def refund_settled(self, out_trade_no: str, refunded_fen: int) -> bool:
        refunding = BillOrderStatus.REFUNDING
        return await self.store.refund_settled(out_trade_no, refunded_fen, dt.datetime.now(dt.UTC),
                                               refunding=refunding,
                                               refunded=BILL_ORDER.step(refunding, "refund_settled"))

    # ---- slip QR codes ---------------------------------------------------------------------

    def slip_code(self, patient_id: str, slip: str) -> str:
        """The signed QR payload printed on a prescription or exam slip: the patient and the slip
        (``ServiceRequest/<id>`` or ``MedicationRequest/<id>``), sealed with HMAC-SM3."""
        return seal(self.keyring, SLIP_DOMAIN, SLIP_CODE_PREFIX, "|", patient_id, slip)

    def read_slip_code(self, code: str) -> tuple[str, str]:
        try:
            patient_id, slip = unseal(self.keyring, SLIP_DOMAIN, SLIP_CODE_PREFIX, "|", code, 2)
        except BadCode as err:
            if err.forged:
                raise BillRefused("单据二维码无效 (slip code signature does not match)",
                                  code="bad_code") from None
            raise BillRefused("无法识别的单据二维码 (unreadable slip code)", code="bad_code") from None
        return patient_id, slip

    def issue_slip_code(self, patient_id: str, slip: str) -> str:
        if not _SLIP.match(slip) or not _PATIENT_ID.match(patient_id):
            raise BillRefused("slip 应为 ServiceRequest/<id> 或 MedicationRequest/<id>", code="invalid")
        return self.slip_code(patient_id, slip)

    # ---- the self-service test catalogue (OUT-14) ------------------------------------------

    async def catalogue(self, *, active_only: bool = True) -> list[dict[str, Any]]:
        rows = await self.store.catalogue(active_only=active_only)
        return [{"code": r["code"], "name": r["name"], "category": r["category"],
                 "category_name": CATEGORY_NAMES.get(r["category"], "其他"), "price_fen": r["price_fen"],
                 "description": r["description"], "notice": r["notice"], "active": r["active"],
                 "updated_at": r["updated_at"].isoformat()} for r in rows]

    async def put_test(self, entry: CatalogueEntry, by: str) -> dict[str, Any]:
        problems = []
        if not _CODE.match(entry.code):
            problems.append("项目编码为 1-40 位字母、数字、-、_")
        if not 1 <= len(entry.name.strip()) <= 100:
            problems.append("项目名称 1-100 字")
        if entry.category not in CATEGORIES:
            problems.append(f"类别为 {', '.join(CATEGORIES)} 之一")
        if not 1 <= entry.price_fen <= 10_000_000:
            problems.append("价格为 1 分到 10 万元")
        if len(entry.description) > 500 or len(entry.notice) > 500:
            problems.append("说明和注意事项各不超过 500 字")
        if any("\x00" in text for text in (entry.name, entry.description, entry.notice)):
            problems.append("文字中含有不允许的字符 (NUL)")
        if problems:
            raise BillRefused("; ".join(problems), code="invalid")
        now = dt.datetime.now(dt.UTC)
        values = (entry.code, entry.name.strip(), entry.category, entry.price_fen, entry.description, entry.notice,
                  entry.active, now, by)

        if not await self.store.put_test(values):
            raise BillRefused("该项目正被同时修改, 请重试", code="conflict")
        await self.audit.append(AuditEntry(action="catalogue.put", target=f"test/{entry.code}", actor_id=by,
                                           detail={"price_fen": entry.price_fen, "active": entry.active}))
        return next(t for t in await self.catalogue(active_only=False) if t["code"] == entry.code)

    async def withdraw_test(self, code: str, by: str) -> None:
        """Take a test off the catalogue (kept for the orders that name it)."""
        if not _CODE.match(code):
            raise BillRefused("没有这个项目 (no such test)", code="not_found")
        if not await self.store.withdraw_test(code, by, dt.datetime.now(dt.UTC)):
            raise BillRefused("没有这个项目 (no such test)", code="not_found")
        await self.audit.append(AuditEntry(action="catalogue.withdraw", target=f"test/{code}", actor_id=by))

    async def order_test(self, account_id: str, patient_id: str, code: str,
                         client_ref: str | None = None) -> dict[str, Any]:
        """A catalogue test ordered for a verified family member: a new unpaid bill (OUT-14)."""
        if not _PATIENT_ID.match(patient_id):
            raise BillRefused("没有这个就诊人 (no such person on this account)", code="not_found")
        if not _CODE.match(code):
            raise BillRefused("没有这个自助开单项目 (no such test in the catalogue)", code="not_found")
        _text(client_ref or "", "client_ref")
        await self.patients.for_booking(account_id, patient_id)  # linked, consented, real-name verified
        test = await self.store.active_test(code)
        if test is None:
            raise BillRefused("没有这个自助开单项目 (no such test in the catalogue)", code="not_found")
        seed = f"{account_id}\x00{client_ref}" if client_ref else uuid.uuid4().hex
        order_id = hashlib.sha256(seed.encode()).hexdigest()[:24]
        bill_id = f"self-{order_id}"
        now = dt.datetime.now(dt.UTC)

        row = await self.store.order_test(order_id, account_id, patient_id, test, bill_id, BillStatus.UNPAID, now)
        return {"order_id": order_id, "bill": self._view(row), "notice": test["notice"]}

    # ---- the HIS side of an order (performed by BillHisEffect) -----------------------------

    async def sync_to_his(self, out_trade_no: str) -> None:
        """Push an order's current state: its HIS charges billed (paid) or aborted (refunded), its
        self-service tests as an active or revoked ServiceRequest with their ChargeItem."""
        if self.his is None:
            return
        order, rows = await self.store.for_his(out_trade_no)
        if order is None or order["status"] not in (BillOrderStatus.PAID, BillOrderStatus.REFUNDING,
                                                    BillOrderStatus.REFUNDED):
            return
        for b in rows:
            paid = b["status"] == BillStatus.PAID
            if b["source"] == "his":
                await self.his.set_charge_status(b["his_id"], "billed" if paid else "aborted", payment=out_trade_no)
            elif b["test_order_id"] is not None:
                info = SelfServiceOrder(
                    order_id=b["test_order_id"], bill_id=b["id"], patient_id=b["patient_id"], code=b["code"],
                    name=b["name"], category=b["category"], amount_fen=b["amount_fen"], created=b["ordered_at"],
                    paid_by=out_trade_no, status="active" if paid else "revoked")
                request_id = await self.his.push_service_request(info)
                await self.his.push_charge_item(info, request_id)


# ---- effects (registered in carehub/app.py) -------------------------------------------------------


class BillHisEffect(Effect):
    """``hisbill/<out_trade_no>``: tell the HIS what an order paid (or that it was refunded)."""

    kind = "hisbill"
    messages: ClassVar[dict[str, type[msgspec.Struct]]] = {"SyncBillOrder": SyncBillOrder}

    def __init__(self, bills: Bills) -> None:
        self.bills = bills

    async def perform(self, message: msgspec.Struct, ctx: Context) -> None:
        assert isinstance(message, SyncBillOrder)
        await self.bills.sync_to_his(message.out_trade_no)


class BillRefundEffect(Effect):
    """``billrefund/<out_trade_no>``: refund a bill order by its original method (same refund
    number on every attempt, so a retry is the same refund)."""

    kind = "billrefund"
    messages: ClassVar[dict[str, type[msgspec.Struct]]] = {"RefundBillOrder": RefundBillOrder}

    def __init__(self, bills: Bills) -> None:
        self.bills = bills

    async def perform(self, message: msgspec.Struct, ctx: Context) -> None:
        assert isinstance(message, RefundBillOrder)
        pay = self.bills.gateway
        if pay is None:
            raise NotConfigured("no payment gateway configured (CAREHUB_PAY_URL)")
        refund = await pay.refund(message.out_trade_no, message.refund_no, message.refund_fen, message.total_fen,
                                  message.reason)
        if refund.status == "SUCCESS":
            await self.bills.refund_settled(message.out_trade_no, refund.refund_fen)
        elif refund.status in ("CLOSED", "ABNORMAL"):
            self.bills.hub.alarm("error", f"refund {message.refund_no} is {refund.status}: needs the finance desk")
        # PROCESSING: the REFUND.SUCCESS notification settles it


__all__ = ["BillHisEffect", "BillRefundEffect", "BillRefused", "Bills", "CatalogueEntry"]

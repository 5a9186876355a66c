"""WeChat Pay API v3 (JSAPI / mini-program) and medical-insurance mixed orders (``/v3/med-ins/``).

:class:`WeChatPay` is the adapter, configured by a :class:`WeChatPayConfig`:

- :meth:`~WeChatPay.create_order` (``POST /v3/pay/transactions/jsapi``) returns a :class:`Prepay`:
  the ``prepay_id`` and the ``wx.requestPayment`` parameters, signed with the merchant key;
- :meth:`~WeChatPay.query`, :meth:`~WeChatPay.close`, :meth:`~WeChatPay.refund`,
  :meth:`~WeChatPay.query_refund`;
- :meth:`~WeChatPay.create_mixed_order` (``POST /v3/med-ins/orders``) and
  :meth:`~WeChatPay.query_mixed`: one payment split between medical insurance (统筹, 个账, other
  funds, all settled by the NHSA) and cash (a normal JSAPI order whose ``prepay_id`` the mixed
  order carries);
- refunding a mixed order takes three calls: :meth:`~WeChatPay.refund` of the cash part,
  :meth:`~WeChatPay.nhsa_refund` (NHSA message 6203, through :class:`NhsaClient`) of the
  insurance part, then :meth:`~WeChatPay.notify_med_ins_refund`
  (``POST /v3/med-ins/refunds/notify``) with the cash refund's ``out_refund_no``;
- :meth:`~WeChatPay.parse_notification` verifies and decrypts what WeChat POSTs to ``notify_url``.

Every request carries a ``WECHATPAY2-SHA256-RSA2048`` Authorization header (SHA256withRSA,
PKCS#1 v1.5, over ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n``; the body is signed as the
exact bytes sent, see :func:`authorization`). Every 2xx answer and every notification must carry
a valid ``Wechatpay-Signature`` made with the platform key (``Wechatpay-Serial`` equal to
``platform_key_id``) over ``TIMESTAMP\\nNONCE\\nBODY\\n``, dated within 5 minutes.

Errors (each carries the provider's ``code``, ``message``, the HTTP ``status`` and whether trying
again later may succeed, ``retryable``)::

    PaymentError             anything the provider refused (SIGN_ERROR, PARAM_ERROR, NOTENOUGH...)
    ├── PaymentTimeout       no answer: the request may or may not have been carried out. NEVER
    │   │                    read it as "failed": query (an identical create_order or refund
    │   │                    retry is safe, see their docs)
    │   └── UnverifiedAnswer an answer whose signature did not verify: as good as no answer
    ├── PaymentProviderDown  SYSTEM_ERROR, HTTP 5xx, FREQUENCY_LIMITED/429, unreachable (retryable)
    ├── OrderAlreadyExists   OUT_TRADE_NO_USED: that out_trade_no was used with other content
    ├── OrderPaid            ORDERPAID: the order is paid (closing or re-ordering it is refused)
    ├── OrderClosed          ORDER_CLOSED
    ├── OrderNotFound        ORDER_NOT_EXIST / RESOURCE_NOT_EXISTS
    ├── RuleLimit            RULE_LIMIT, and mixed-order amounts that break the formulas (raised
    │                        before sending)
    └── NhsaRefused          the NHSA refused a 6203 refund (unknown or unsettled payOrdId,
                             amounts beyond what was settled, a refund number reused with other
                             amounts); an NHSA that is down or silent raises PaymentProviderDown
                             / PaymentTimeout like WeChat

Amounts are integer fen. Patient names and ID numbers are never logged; they are sent only
RSA-OAEP-encrypted with the platform key (``payer`` of a mixed order).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import logging
import re
import secrets
import string
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal
from urllib.parse import quote

import httpx
import orjson
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger("carehub.channels.payment")

SCHEME = "WECHATPAY2-SHA256-RSA2048"
#: WeChat's times (``success_time``, ``time_expire``...) are RFC 3339 in Beijing time.
BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")
#: Answers and notifications dated further than this from our clock are refused.
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
#: WeChat's signature probes start so; they must fail verification (and be answered 4xx/5xx).
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"
#: The HTTP status that acknowledges a notification (no body).
NOTIFICATION_ACK_STATUS = 204

MixPayType = Literal["CASH_ONLY", "INSURANCE_ONLY", "CASH_AND_INSURANCE"]
_OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
_OUT_REFUND_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
_NONCE_ALPHABET = string.ascii_uppercase + string.digits


# ---- errors -------------------------------------------------------------------------------------


class PaymentError(Exception):
    """WeChat Pay refused a request, or could not be reached."""

    default_retryable = False

    def __init__(self, code: str, message: str, *, status: int | None = None, retryable: bool | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (HTTP {status})" if status else ""))
        self.code = code
        self.message = message
        self.status = status
        self.retryable = self.default_retryable if retryable is None else retryable


class PaymentTimeout(PaymentError):
    """No answer in time, or the connection broke after the request was sent.

    The provider may have carried the request out: this never means "failed". Find out with
    :meth:`WeChatPay.query` / :meth:`WeChatPay.query_refund` (or repeat the identical request:
    orders and refunds are idempotent on ``out_trade_no`` / ``out_refund_no``).
    """

    default_retryable = True


class UnverifiedAnswer(PaymentTimeout):
    """An answer came whose platform signature did not verify (or was missing or stale): it is
    not trusted, so the outcome is as unknown as after a timeout."""


class PaymentProviderDown(PaymentError):
    """``SYSTEM_ERROR``/HTTP 5xx, ``FREQUENCY_LIMITED``/429, or the gateway could not be reached.
    Retry later; for a create or refund that reached the gateway, query before re-posting."""

    default_retryable = True


class OrderAlreadyExists(PaymentError):
    """``OUT_TRADE_NO_USED``: this ``out_trade_no`` already names an order with other content."""


class OrderPaid(PaymentError):
    """``ORDERPAID``: the order is paid."""


class OrderClosed(PaymentError):
    """``ORDER_CLOSED``: the order is closed; order again under a new ``out_trade_no``."""


class OrderNotFound(PaymentError):
    """The order (or refund) does not exist."""


class RuleLimit(PaymentError):
    """``RULE_LIMIT``: a business rule refused it (for mixed orders: the amount formulas)."""


class NhsaRefused(PaymentError):
    """The NHSA refused a request (6203 医保退费): trying again will not help."""


class NotificationRejected(ValueError):
    """A notification that must not be trusted; answer it with 4xx/5xx and
    :func:`notification_refusal`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_ERRORS: dict[str, tuple[type[PaymentError], bool | None]] = {
    "OUT_TRADE_NO_USED": (OrderAlreadyExists, None),
    "ORDERPAID": (OrderPaid, None),
    "ORDER_PAID": (OrderPaid, None),
    "ORDER_CLOSED": (OrderClosed, None),
    "ORDERNOTEXIST": (OrderNotFound, None),
    "ORDER_NOT_EXIST": (OrderNotFound, None),
    "RESOURCE_NOT_EXISTS": (OrderNotFound, None),
    "RULE_LIMIT": (RuleLimit, None),
    "SYSTEM_ERROR": (PaymentProviderDown, None),
    "FREQUENCY_LIMITED": (PaymentProviderDown, None),
    "BANK_ERROR": (PaymentProviderDown, None),
}


def _error(code: str, message: str, status: int) -> PaymentError:
    fallback: type[PaymentError] = PaymentProviderDown if status >= 500 or status == 429 else PaymentError
    kind, retryable = _ERRORS.get(code, (fallback, None))
    return kind(code, message, status=status, retryable=retryable)


# ---- configuration and results ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WeChatPayConfig:
    """The merchant's identity and keys. ``base_url`` is ``https://api.mch.weixin.qq.com`` or the
    simulator's; ``merchant_serial`` is the serial number of the merchant API certificate;
    ``platform_key_id`` is the ``PUB_KEY_ID_…`` (or platform certificate serial) of
    ``platform_public_key_pem``; ``apiv3_key`` is the 32-character APIv3 key."""

    base_url: str
    mchid: str
    appid: str
    merchant_private_key_pem: str = dataclasses.field(repr=False)
    merchant_serial: str
    platform_public_key_pem: str = dataclasses.field(repr=False)
    platform_key_id: str
    apiv3_key: str = dataclasses.field(repr=False)
    notify_url: str
    timeout_seconds: float = 5.0
    #: Where :class:`NhsaClient` sends 6203; None: the simulator's stand-in, ``<base_url>/_sim/nhsa``.
    nhsa_url: str | None = None


@dataclasses.dataclass(frozen=True)
class Prepay:
    """A created order: hand :meth:`request_payment` to ``wx.requestPayment`` (plus ``app_id``
    for the JSAPI ``WeixinJSBridge``)."""

    prepay_id: str
    app_id: str
    time_stamp: str
    nonce_str: str
    package: str
    sign_type: str
    pay_sign: str

    def request_payment(self) -> dict[str, str]:
        return {
            "timeStamp": self.time_stamp,
            "nonceStr": self.nonce_str,
            "package": self.package,
            "signType": self.sign_type,
            "paySign": self.pay_sign,
        }


def _time(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(str(value)) if value else None


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


@dataclasses.dataclass(frozen=True)
class Transaction:
    """An order as a query or a ``TRANSACTION.*`` notification reports it. ``trade_state``:
    ``SUCCESS``, ``REFUND``, ``NOTPAY``, ``CLOSED``, ``REVOKED``, ``USERPAYING``, ``PAYERROR``."""

    out_trade_no: str
    trade_state: str
    trade_state_desc: str
    transaction_id: str | None
    total_fen: int | None
    payer_total_fen: int | None
    success_time: dt.datetime | None
    attach: str | None
    openid: str | None
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transaction:
        amount = data.get("amount") or {}
        return cls(
            out_trade_no=str(data["out_trade_no"]),
            trade_state=str(data["trade_state"]),
            trade_state_desc=str(data.get("trade_state_desc", "")),
            transaction_id=data.get("transaction_id") or None,
            total_fen=_int(amount.get("total")),
            payer_total_fen=_int(amount.get("payer_total")),
            success_time=_time(data.get("success_time")),
            attach=data.get("attach") or None,
            openid=(data.get("payer") or {}).get("openid"),
            raw=data,
        )


@dataclasses.dataclass(frozen=True)
class Refund:
    """A refund as the refund API or a ``REFUND.*`` notification reports it. ``status``:
    ``PROCESSING`` (accepted, not yet done), ``SUCCESS``, ``CLOSED``, ``ABNORMAL``."""

    out_refund_no: str
    refund_id: str
    out_trade_no: str
    transaction_id: str
    status: str
    refund_fen: int
    total_fen: int
    payer_refund_fen: int | None
    user_received_account: str
    create_time: dt.datetime | None
    success_time: dt.datetime | None
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Refund:
        amount = data.get("amount") or {}
        return cls(
            out_refund_no=str(data["out_refund_no"]),
            refund_id=str(data.get("refund_id", "")),
            out_trade_no=str(data.get("out_trade_no", "")),
            transaction_id=str(data.get("transaction_id", "")),
            status=str(data.get("status") or data.get("refund_status")),  # notifications say refund_status
            refund_fen=int(amount["refund"]),
            total_fen=int(amount["total"]),
            payer_refund_fen=_int(amount.get("payer_refund")),
            user_received_account=str(data.get("user_received_account", "")),
            create_time=_time(data.get("create_time")),
            success_time=_time(data.get("success_time")),
            raw=data,
        )


@dataclasses.dataclass(frozen=True)
class CashAdjustment:
    """One ``cash_add_detail`` (e.g. ``FREIGHT``) or ``cash_reduce_detail`` (e.g.
    ``HOSPITAL_REDUCE``) entry of a mixed order."""

    kind: str
    fee: int


@dataclasses.dataclass(frozen=True)
class MixedOrderRequest:
    """A mixed (insurance + cash) order after NHSA pre-settlement.

    ``pay_auth_no`` is the patient's medical-insurance authorization, ``pay_order_id`` the NHSA
    pre-settlement order, ``serial_no`` the hospital's order number at the NHSA (``medOrgOrd``);
    the fees are the pre-settlement's split; ``prepay_id`` is a :meth:`WeChatPay.create_order`
    of ``wechat_pay_cash_fee`` for the cash part (None when there is none). Amount rules
    (:func:`mixed_amount_violations`)::

        total_fee = gov + self + other + wechat_pay_cash_fee + Σreduce
                  = gov + self + other + med_ins_cash_fee + Σadd
    """

    out_trade_no: str
    mix_pay_type: MixPayType
    order_type: str  # REG_PAY, DIAG_PAY, IN_HOSP_PAY, PHARMACY_PAY, INT_RX_PAY, MED_PAY...
    openid: str
    payer_name: str = dataclasses.field(repr=False)
    payer_id_number: str = dataclasses.field(repr=False)
    serial_no: str
    pay_order_id: str
    pay_auth_no: str
    city_id: str
    med_inst_name: str
    med_inst_no: str
    med_ins_order_create_time: dt.datetime  # when the hospital created it (part of the content)
    total_fee: int
    med_ins_gov_fee: int
    med_ins_self_fee: int
    med_ins_other_fee: int
    med_ins_cash_fee: int
    wechat_pay_cash_fee: int
    prepay_id: str | None = None
    geo_location: str | None = None  # "lng,lat"
    cash_add_detail: tuple[CashAdjustment, ...] = ()
    cash_reduce_detail: tuple[CashAdjustment, ...] = ()
    callback_url: str | None = None  # None: the config's notify_url
    attach: str | None = None
    card_type: str = "ID_CARD"
    channel_no: str | None = None
    med_ins_test_env: bool = False


def mixed_amount_violations(request: MixedOrderRequest) -> list[str]:
    """What is wrong with the amounts of a mixed order (empty when nothing is)."""
    r = request
    fees = {
        "total_fee": r.total_fee,
        "med_ins_gov_fee": r.med_ins_gov_fee,
        "med_ins_self_fee": r.med_ins_self_fee,
        "med_ins_other_fee": r.med_ins_other_fee,
        "med_ins_cash_fee": r.med_ins_cash_fee,
        "wechat_pay_cash_fee": r.wechat_pay_cash_fee,
    }
    problems = [f"{name} must be a non-negative integer (fen)" for name, v in fees.items() if v < 0]
    problems += [f"{a.kind} must be a positive fee" for a in (*r.cash_add_detail, *r.cash_reduce_detail) if a.fee <= 0]
    insured = r.med_ins_gov_fee + r.med_ins_self_fee + r.med_ins_other_fee
    added = sum(a.fee for a in r.cash_add_detail)
    reduced = sum(a.fee for a in r.cash_reduce_detail)
    if r.total_fee <= 0:
        problems.append("total_fee must be positive")
    if r.total_fee != insured + r.wechat_pay_cash_fee + reduced:
        problems.append("total_fee != gov + self + other + wechat_pay_cash_fee + Σreduce")
    if r.total_fee != insured + r.med_ins_cash_fee + added:
        problems.append("total_fee != gov + self + other + med_ins_cash_fee + Σadd")
    if r.wechat_pay_cash_fee != r.med_ins_cash_fee + added - reduced:
        problems.append("wechat_pay_cash_fee != med_ins_cash_fee + Σadd - Σreduce")
    if r.mix_pay_type == "CASH_ONLY" and (insured != 0 or r.wechat_pay_cash_fee <= 0):
        problems.append("CASH_ONLY: no insurance part and a positive wechat_pay_cash_fee")
    if r.mix_pay_type == "INSURANCE_ONLY" and (insured <= 0 or r.wechat_pay_cash_fee != 0):
        problems.append("INSURANCE_ONLY: an insurance part and no wechat_pay_cash_fee")
    if r.mix_pay_type == "CASH_AND_INSURANCE" and (insured <= 0 or r.wechat_pay_cash_fee <= 0):
        problems.append("CASH_AND_INSURANCE: both an insurance part and a wechat_pay_cash_fee")
    if (r.wechat_pay_cash_fee > 0) != bool(r.prepay_id):
        problems.append("prepay_id is required exactly when wechat_pay_cash_fee > 0")
    return problems


@dataclasses.dataclass(frozen=True)
class MixedOrder:
    """A created mixed order. ``mix_pay_status``: ``MIX_PAY_CREATED|SUCCESS|REFUND|FAIL``."""

    mix_trade_no: str
    out_trade_no: str
    mix_pay_status: str
    self_pay_status: str
    med_ins_pay_status: str
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class MixedTransaction:
    """A mixed order as a query or a ``MEDICAL_INSURANCE.*`` notification reports it.

    ``med_ins_pay_status`` and ``self_pay_status`` tell the two parts apart: the insurance part
    can settle while the cash part fails (``mix_pay_status`` is then ``MIX_PAY_FAIL``).
    """

    mix_trade_no: str
    out_trade_no: str
    mix_pay_status: str
    self_pay_status: str
    med_ins_pay_status: str
    mix_pay_type: str
    total_fee: int
    med_ins_gov_fee: int
    med_ins_self_fee: int
    med_ins_other_fee: int
    med_ins_cash_fee: int
    wechat_pay_cash_fee: int
    pay_order_id: str
    prepay_id: str | None
    paid_time: dt.datetime | None
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MixedTransaction:
        return cls(
            mix_trade_no=str(data["mix_trade_no"]),
            out_trade_no=str(data["out_trade_no"]),
            mix_pay_status=str(data["mix_pay_status"]),
            self_pay_status=str(data.get("self_pay_status", "")),
            med_ins_pay_status=str(data.get("med_ins_pay_status", "")),
            mix_pay_type=str(data.get("mix_pay_type", "")),
            total_fee=int(data["total_fee"]),
            med_ins_gov_fee=int(data.get("med_ins_gov_fee", 0)),
            med_ins_self_fee=int(data.get("med_ins_self_fee", 0)),
            med_ins_other_fee=int(data.get("med_ins_other_fee", 0)),
            med_ins_cash_fee=int(data.get("med_ins_cash_fee", 0)),
            wechat_pay_cash_fee=int(data.get("wechat_pay_cash_fee", 0)),
            pay_order_id=str(data.get("pay_order_id", "")),
            prepay_id=data.get("prepay_id") or None,
            paid_time=_time(data.get("paid_time")),
            raw=data,
        )


@dataclasses.dataclass(frozen=True)
class NhsaRefund:
    """A 6203 refund as the NHSA answered it (amounts in fen; ``fund`` = 统筹 + other funds,
    ``psn_acct`` = 个账). A repeat of the same ``refund_sn`` answers the first refund again, with
    its ``refund_time``."""

    pay_order_id: str
    refund_sn: str
    total_fen: int
    fund_fen: int
    psn_acct_fen: int
    cash_fen: int
    refund_time: dt.datetime
    trx_sn: str
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class Notification:
    """A verified, decrypted notification. ``event_type``: ``TRANSACTION.SUCCESS``,
    ``REFUND.SUCCESS|ABNORMAL|CLOSED``, ``MEDICAL_INSURANCE.SUCCESS``...; ``id`` is the same on
    every delivery of one notification (duplicates are normal: handle them idempotently)."""

    id: str
    event_type: str
    create_time: str
    summary: str
    original_type: str
    resource: Mapping[str, Any] = dataclasses.field(repr=False)

    def transaction(self) -> Transaction:
        return Transaction.from_json(self.resource)

    def refund(self) -> Refund:
        return Refund.from_json(self.resource)

    def mixed(self) -> MixedTransaction:
        return MixedTransaction.from_json(self.resource)


# ---- signatures and encryption (pure functions) -------------------------------------------------


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the merchant key must be an RSA private key")
    return key


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the platform key must be an RSA public key")
    return key


def rsa_sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5), Base64."""
    return base64.b64encode(private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def rsa_verify(public_key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def request_message(method: str, path_and_query: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """What a request signature covers: ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n``."""
    return f"{method}\n{path_and_query}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"


def answer_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """What an answer's or a notification's signature covers: ``TIMESTAMP\\nNONCE\\nBODY\\n``."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def authorization(
    *,
    method: str,
    path_and_query: str,
    body: bytes,
    mchid: str,
    serial_no: str,
    private_key: rsa.RSAPrivateKey,
    timestamp: str,
    nonce: str,
) -> str:
    """The ``Authorization`` header of one request (``path_and_query`` exactly as sent: the
    path without the host, ``?query`` included when there is one)."""
    signature = rsa_sign(private_key, request_message(method, path_and_query, timestamp, nonce, body))
    return (
        f'{SCHEME} mchid="{mchid}",nonce_str="{nonce}",timestamp="{timestamp}",'
        f'serial_no="{serial_no}",signature="{signature}"'
    )


def pay_sign(private_key: rsa.RSAPrivateKey, appid: str, timestamp: str, nonce: str, package: str) -> str:
    """``paySign`` of ``wx.requestPayment``: SHA256withRSA over ``appId\\ntimeStamp\\nnonceStr\\npackage\\n``."""
    return rsa_sign(private_key, f"{appid}\n{timestamp}\n{nonce}\n{package}\n".encode())


def decrypt_resource(apiv3_key: bytes, resource: Mapping[str, Any]) -> bytes:
    """The plaintext of a notification's ``resource`` (AEAD_AES_256_GCM, tag at the end of the
    Base64 ciphertext; nonce and associated data as UTF-8). Raises ``InvalidTag``/``ValueError``."""
    if resource.get("algorithm") != "AEAD_AES_256_GCM":
        raise ValueError(f"unsupported algorithm {resource.get('algorithm')!r}")
    ciphertext = base64.b64decode(str(resource["ciphertext"]), validate=True)
    aad = str(resource.get("associated_data") or "").encode()
    return AESGCM(apiv3_key).decrypt(str(resource["nonce"]).encode(), ciphertext, aad)


def encrypt_sensitive(public_key: rsa.RSAPublicKey, text: str) -> str:
    """A sensitive field encrypted for WeChat: RSA-OAEP (SHA-1, MGF1-SHA-1) with the platform key, Base64."""
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    return base64.b64encode(public_key.encrypt(text.encode(), oaep)).decode("ascii")


def id_digest(id_number: str) -> str:
    """``payer.id_digest``: MD5 of the upper-cased ID number, lower-case hex."""
    return hashlib.md5(id_number.strip().upper().encode(), usedforsecurity=False).hexdigest()


def notification_refusal(reason: str) -> bytes:
    """The body of a 4xx/5xx answer to a notification (WeChat will deliver it again)."""
    return orjson.dumps({"code": "FAIL", "message": reason})


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_nonce() -> str:
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(32))


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(BEIJING).isoformat(timespec="seconds")


def _segment(value: str) -> str:
    return quote(value, safe="")


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _fen(value: Any) -> int:
    yuan, _, cents = str(value).partition(".")
    return int(yuan) * 100 + int(cents.ljust(2, "0")[:2])


def _nhsa_time(value: Any) -> dt.datetime:
    return dt.datetime.strptime(str(value), "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)


# ---- the NHSA (6203) ----------------------------------------------------------------------------


class NhsaClient:
    """NHSA message 6203 (医保退费): give back the insurance part of a mobile-payment settlement.

    In real life CareHub does not talk to the NHSA: the hospital's HIS does, over its NHSA
    interface (定点医药机构接口, SM2-signed and SM4-encrypted with the institution's keys), and
    CareHub would ask the HIS to send 6203. No such HIS interface exists here yet, so this small
    client posts the 6203 fields (names as seen in public HIS code; the specification is not
    public) as JSON to a stand-in: the payment simulator's ``/_sim/nhsa/refund``. Swap the
    transport, not the callers, when the HIS offers one.
    """

    def __init__(self, http: httpx.AsyncClient, base_url: str, *, timeout_seconds: float = 5.0) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._timeout = timeout_seconds

    async def refund(
        self,
        pay_order_id: str,
        refund_sn: str,
        *,
        fund_fen: int,
        psn_acct_fen: int,
        cash_fen: int = 0,
        refund_type: Literal["ALL", "HI", "CASH"] = "HI",
        asked_at: dt.datetime | None = None,
    ) -> NhsaRefund:
        """Refund ``fund_fen`` (统筹 + other funds) and ``psn_acct_fen`` (个账) of the settlement
        ``pay_order_id``. Idempotent by ``refund_sn`` (``appRefdSn``): after a timeout or an error,
        repeat the same call. Raises :class:`NhsaRefused`, :class:`PaymentProviderDown` (retryable)
        or :class:`PaymentTimeout` (retryable: the refund may have been made; repeat it)."""
        if min(fund_fen, psn_acct_fen, cash_fen) < 0 or fund_fen + psn_acct_fen + cash_fen <= 0:
            raise ValueError("refund amounts must be non-negative and not all zero")
        if not _OUT_REFUND_NO.match(refund_sn):
            raise ValueError("refund_sn: 1-64 characters of [0-9A-Za-z_-|*@]")
        when = (asked_at or _utcnow()).astimezone(BEIJING)
        body = {
            "payOrdId": pay_order_id,
            "appRefdSn": refund_sn,
            "appRefdTime": when.strftime("%Y%m%d%H%M%S"),
            "totlRefdAmt": _yuan(fund_fen + psn_acct_fen + cash_fen),
            "fundRefdAmt": _yuan(fund_fen),
            "psnAcctRefdAmt": _yuan(psn_acct_fen),
            "cashRefdAmt": _yuan(cash_fen),
            "refdType": refund_type,
        }
        what = "NHSA 6203"
        try:
            response = await self._http.post(f"{self._base}/refund", content=orjson.dumps(body),
                                             headers={"Content-Type": "application/json"}, timeout=self._timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as err:
            raise PaymentProviderDown("NHSA_UNREACHABLE", f"{what}: {type(err).__name__}: {err}") from err
        except httpx.TransportError as err:
            raise PaymentTimeout("NHSA_NO_ANSWER", f"{what}: {type(err).__name__}: {err}") from err
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            answer = None
        if response.status_code >= 500 or response.status_code == 429:
            raise PaymentProviderDown("NHSA_DOWN", f"{what}: HTTP {response.status_code}", status=response.status_code)
        if not response.is_success:
            detail = answer.get("error") if isinstance(answer, dict) else response.text[:200]
            code = str(answer.get("code") or "NHSA_REFUSED") if isinstance(answer, dict) else "NHSA_REFUSED"
            log.warning("%s of %s refused: %s", what, pay_order_id, detail)
            raise NhsaRefused(code, f"{what}: {detail}", status=response.status_code)
        if not isinstance(answer, dict):
            raise PaymentTimeout("NHSA_BAD_ANSWER", f"{what}: the answer is not a JSON object")
        try:
            refund = NhsaRefund(
                pay_order_id=str(answer["payOrdId"]), refund_sn=str(answer["appRefdSn"]),
                total_fen=_fen(answer["totlRefdAmt"]), fund_fen=_fen(answer["fundRefdAmt"]),
                psn_acct_fen=_fen(answer["psnAcctRefdAmt"]), cash_fen=_fen(answer["cashRefdAmt"]),
                refund_time=_nhsa_time(answer["refdTime"]), trx_sn=str(answer.get("trxSn", "")), raw=answer,
            )
        except (KeyError, ValueError) as err:
            raise PaymentTimeout("NHSA_BAD_ANSWER", f"{what}: an answer that is not a refund ({err!r})") from err
        log.info("%s of %s: %s, %d fen", what, pay_order_id, refund_sn, refund.total_fen)
        return refund


# ---- the adapter --------------------------------------------------------------------------------


class WeChatPay:
    """WeChat Pay API v3 for one merchant. Use :func:`open_wechat_pay`, or pass an
    ``httpx.AsyncClient`` whose lifetime the caller owns. ``clock`` and ``nonce`` exist for tests."""

    def __init__(
        self,
        config: WeChatPayConfig,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], dt.datetime] = _utcnow,
        nonce: Callable[[], str] = _new_nonce,
    ) -> None:
        self.config = config
        self._http = http
        self._clock = clock
        self._nonce = nonce
        self._base = config.base_url.rstrip("/")
        self._merchant_key = load_private_key(config.merchant_private_key_pem)
        self._platform_key = load_public_key(config.platform_public_key_pem)
        self._apiv3_key = config.apiv3_key.encode()
        if len(self._apiv3_key) != 32:
            raise ValueError("the APIv3 key must be 32 ASCII characters")
        #: 6203 refunds of the insurance part (see :class:`NhsaClient` for who really sends them)
        self.nhsa = NhsaClient(http, config.nhsa_url or f"{self._base}/_sim/nhsa",
                               timeout_seconds=config.timeout_seconds)

    # -- JSAPI orders ------------------------------------------------------------------------

    async def create_order(
        self,
        out_trade_no: str,
        description: str,
        total_fen: int,
        openid: str,
        *,
        attach: str | None = None,
        expire_at: dt.datetime | None = None,
    ) -> Prepay:
        """Create a JSAPI order and sign the payment parameters for the front end.

        Re-posting identical content returns the same ``prepay_id``, so after a
        :class:`PaymentTimeout` the same call is safe; other content under the same
        ``out_trade_no`` raises :class:`OrderAlreadyExists`.
        """
        if not _OUT_TRADE_NO.match(out_trade_no):
            raise ValueError("out_trade_no: 6-32 characters of [0-9A-Za-z_-|*]")
        if not 1 <= len(description) <= 127:
            raise ValueError("description: 1-127 characters")
        if total_fen <= 0:
            raise ValueError("total_fen must be positive")
        body: dict[str, Any] = {
            "appid": self.config.appid,
            "mchid": self.config.mchid,
            "description": description,
            "out_trade_no": out_trade_no,
            "notify_url": self.config.notify_url,
            "amount": {"total": total_fen, "currency": "CNY"},
            "payer": {"openid": openid},
        }
        if expire_at is not None:
            body["time_expire"] = _rfc3339(expire_at)
        if attach is not None:
            body["attach"] = attach
        answer = await self._json("POST", "/v3/pay/transactions/jsapi", body)
        prepay_id = str(answer["prepay_id"])
        log.info("order %s created: %d fen, prepay_id %s", out_trade_no, total_fen, prepay_id)
        return self.payment_parameters(prepay_id)

    def payment_parameters(self, prepay_id: str) -> Prepay:
        """Fresh ``wx.requestPayment`` parameters for an existing ``prepay_id`` (valid 2 hours)."""
        timestamp = str(int(self._clock().timestamp()))
        nonce = self._nonce()
        package = f"prepay_id={prepay_id}"
        signature = pay_sign(self._merchant_key, self.config.appid, timestamp, nonce, package)
        return Prepay(prepay_id, self.config.appid, timestamp, nonce, package, "RSA", signature)

    async def query(self, out_trade_no: str) -> Transaction:
        path = f"/v3/pay/transactions/out-trade-no/{_segment(out_trade_no)}?mchid={_segment(self.config.mchid)}"
        return Transaction.from_json(await self._json("GET", path))

    async def close(self, out_trade_no: str) -> None:
        """Close an unpaid order (closing a closed one is fine; a paid one raises :class:`OrderPaid`)."""
        path = f"/v3/pay/transactions/out-trade-no/{_segment(out_trade_no)}/close"
        await self.call("POST", path, {"mchid": self.config.mchid})
        log.info("order %s closed", out_trade_no)

    # -- refunds -----------------------------------------------------------------------------

    async def refund(
        self,
        out_trade_no: str,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        reason: str,
        *,
        notify_url: str | None = None,
    ) -> Refund:
        """Ask for a refund; the answer is usually ``PROCESSING`` (accepted, not done): the
        outcome comes as a ``REFUND.*`` notification or from :meth:`query_refund`.

        A retry (after a timeout or an error) must reuse the same ``out_refund_no``: a new one is
        a new refund. All refunds of an order together cannot exceed its total (``NOTENOUGH``).
        """
        if not _OUT_REFUND_NO.match(out_refund_no):
            raise ValueError("out_refund_no: 1-64 characters of [0-9A-Za-z_-|*@]")
        if not 0 < refund_fen <= total_fen:
            raise ValueError("refund_fen must be positive and at most total_fen")
        body: dict[str, Any] = {
            "out_trade_no": out_trade_no,
            "out_refund_no": out_refund_no,
            "reason": reason,
            "notify_url": notify_url or self.config.notify_url,
            "amount": {"refund": refund_fen, "total": total_fen, "currency": "CNY"},
        }
        refund = Refund.from_json(await self._json("POST", "/v3/refund/domestic/refunds", body))
        log.info("refund %s of order %s: %d fen, %s", out_refund_no, out_trade_no, refund_fen, refund.status)
        return refund

    async def query_refund(self, out_refund_no: str) -> Refund:
        return Refund.from_json(await self._json("GET", f"/v3/refund/domestic/refunds/{_segment(out_refund_no)}"))

    # -- medical-insurance mixed orders ------------------------------------------------------

    async def create_mixed_order(self, request: MixedOrderRequest) -> MixedOrder:
        """``POST /v3/med-ins/orders``. The amounts are checked first (:class:`RuleLimit`,
        nothing sent); ``payer`` is encrypted with the platform key."""
        problems = mixed_amount_violations(request)
        if problems:
            raise RuleLimit("RULE_LIMIT", "; ".join(problems))
        if not _OUT_TRADE_NO.match(request.out_trade_no):
            raise ValueError("out_trade_no: 6-32 characters of [0-9A-Za-z_-|*]")
        r = request
        body: dict[str, Any] = {
            "mix_pay_type": r.mix_pay_type,
            "order_type": r.order_type,
            "appid": self.config.appid,
            "openid": r.openid,
            "payer": {
                "name": encrypt_sensitive(self._platform_key, r.payer_name),
                "id_digest": encrypt_sensitive(self._platform_key, id_digest(r.payer_id_number)),
                "card_type": r.card_type,
            },
            "pay_for_relatives": False,
            "out_trade_no": r.out_trade_no,
            "serial_no": r.serial_no,
            "pay_order_id": r.pay_order_id,
            "pay_auth_no": r.pay_auth_no,
            "city_id": r.city_id,
            "med_inst_name": r.med_inst_name,
            "med_inst_no": r.med_inst_no,
            "med_ins_order_create_time": _rfc3339(r.med_ins_order_create_time),
            "total_fee": r.total_fee,
            "med_ins_gov_fee": r.med_ins_gov_fee,
            "med_ins_self_fee": r.med_ins_self_fee,
            "med_ins_other_fee": r.med_ins_other_fee,
            "med_ins_cash_fee": r.med_ins_cash_fee,
            "wechat_pay_cash_fee": r.wechat_pay_cash_fee,
            "callback_url": r.callback_url or self.config.notify_url,
            "med_ins_test_env": r.med_ins_test_env,
        }
        optional: dict[str, Any] = {
            "geo_location": r.geo_location,
            "prepay_id": r.prepay_id,
            "attach": r.attach,
            "channel_no": r.channel_no,
            "cash_add_detail": [{"cash_add_type": a.kind, "cash_add_fee": a.fee} for a in r.cash_add_detail],
            "cash_reduce_detail": [
                {"cash_reduce_type": a.kind, "cash_reduce_fee": a.fee} for a in r.cash_reduce_detail
            ],
        }
        body.update({name: value for name, value in optional.items() if value})
        answer = await self._json(
            "POST", "/v3/med-ins/orders", body, headers={"Wechatpay-Serial": self.config.platform_key_id}
        )
        order = MixedOrder(
            mix_trade_no=str(answer["mix_trade_no"]),
            out_trade_no=str(answer.get("out_trade_no", r.out_trade_no)),
            mix_pay_status=str(answer["mix_pay_status"]),
            self_pay_status=str(answer.get("self_pay_status", "")),
            med_ins_pay_status=str(answer.get("med_ins_pay_status", "")),
            raw=answer,
        )
        log.info("mixed order %s created: %s, mix_trade_no %s", r.out_trade_no, r.mix_pay_type, order.mix_trade_no)
        return order

    async def query_mixed(self, out_trade_no: str) -> MixedTransaction:
        """A mixed order's state. Its notification is sent once and retried only briefly: poll
        orders still ``MIX_PAY_CREATED``."""
        path = f"/v3/med-ins/orders/out-trade-no/{_segment(out_trade_no)}"
        return MixedTransaction.from_json(await self._json("GET", path))

    async def query_mixed_by_mix_trade_no(self, mix_trade_no: str) -> MixedTransaction:
        path = f"/v3/med-ins/orders/mix-trade-no/{_segment(mix_trade_no)}"
        return MixedTransaction.from_json(await self._json("GET", path))

    async def nhsa_refund(
        self, pay_order_id: str, refund_sn: str, *, fund_fen: int, psn_acct_fen: int
    ) -> NhsaRefund:
        """The insurance part of a mixed order back to the patient's funds: 6203 at the NHSA
        (:meth:`NhsaClient.refund`, type ``HI``: the cash part goes back through :meth:`refund`).
        Use the cash refund's ``out_refund_no`` as ``refund_sn``: it is idempotent by it."""
        return await self.nhsa.refund(pay_order_id, refund_sn, fund_fen=fund_fen, psn_acct_fen=psn_acct_fen)

    async def notify_med_ins_refund(
        self,
        mix_trade_no: str,
        *,
        out_refund_no: str,
        gov_fen: int,
        self_fen: int,
        other_fen: int,
        refund_time: dt.datetime,
    ) -> MixedTransaction:
        """``POST /v3/med-ins/refunds/notify?mix_trade_no=…``: tell WeChat the insurance part was
        refunded at the NHSA (after :meth:`nhsa_refund`). ``out_refund_no`` must be the cash
        refund's when the order has a cash part. Repeating it with the same content is harmless;
        the answer is the order (``mix_pay_status`` is ``MIX_PAY_REFUND`` once both parts are back)."""
        if min(gov_fen, self_fen, other_fen) < 0 or gov_fen + self_fen + other_fen <= 0:
            raise ValueError("refund amounts must be non-negative and not all zero")
        if not _OUT_REFUND_NO.match(out_refund_no):
            raise ValueError("out_refund_no: 1-64 characters of [0-9A-Za-z_-|*@]")
        body = {
            "med_refund_total_fee": gov_fen + self_fen + other_fen,
            "med_refund_gov_fee": gov_fen,
            "med_refund_self_fee": self_fen,
            "med_refund_other_fee": other_fen,
            "refund_time": _rfc3339(refund_time),
            "out_refund_no": out_refund_no,
        }
        path = f"/v3/med-ins/refunds/notify?mix_trade_no={_segment(mix_trade_no)}"
        order = MixedTransaction.from_json(await self._json("POST", path, body))
        log.info("med-ins refund %s of %s told: %d fen, %s", out_refund_no, mix_trade_no,
                 body["med_refund_total_fee"], order.mix_pay_status)
        return order

    # -- notifications -----------------------------------------------------------------------

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes, *, now: dt.datetime | None = None
    ) -> Notification:
        """Verify a notification POSTed to ``notify_url`` and decrypt its resource.

        Raises :class:`NotificationRejected` for a missing or bad signature (SIGNTEST probes
        included), an unknown key, a timestamp more than 5 minutes from ``now``, or a resource
        that does not decrypt. Answer a rejection with 4xx/5xx (:func:`notification_refusal`) and
        a handled notification with :data:`NOTIFICATION_ACK_STATUS`, within 5 seconds.
        """
        lower = {name.lower(): value for name, value in headers.items()}
        timestamp = lower.get("wechatpay-timestamp", "")
        nonce = lower.get("wechatpay-nonce", "")
        signature = lower.get("wechatpay-signature", "")
        serial = lower.get("wechatpay-serial", "")
        if not (timestamp and nonce and signature and serial):
            raise NotificationRejected("missing Wechatpay-Timestamp/-Nonce/-Signature/-Serial headers")
        if signature.startswith(SIGNTEST_PREFIX):
            raise NotificationRejected("signature probe (WECHATPAY/SIGNTEST/)")
        if serial != self.config.platform_key_id:
            raise NotificationRejected(f"unknown platform key {serial!r}")
        self._check_fresh(timestamp, now, NotificationRejected)
        if not rsa_verify(self._platform_key, answer_message(timestamp, nonce, body), signature):
            raise NotificationRejected("signature does not verify")
        try:
            envelope = orjson.loads(body)
            resource = envelope["resource"]
            plaintext = decrypt_resource(self._apiv3_key, resource)
            decrypted = orjson.loads(plaintext)
        except InvalidTag as err:
            raise NotificationRejected("resource does not decrypt with the APIv3 key") from err
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise NotificationRejected(f"not a notification: {type(err).__name__}: {err}") from err
        if not isinstance(decrypted, dict):
            raise NotificationRejected("the decrypted resource is not a JSON object")
        return Notification(
            id=str(envelope.get("id", "")),
            event_type=str(envelope.get("event_type", "")),
            create_time=str(envelope.get("create_time", "")),
            summary=str(envelope.get("summary", "")),
            original_type=str(resource.get("original_type", "")),
            resource=decrypted,
        )

    # -- transport ---------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path_and_query: str,
        payload: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """One signed API request; the verified JSON answer (None for 204). For APIs without a
        method here; raises the :class:`PaymentError` family."""
        body = orjson.dumps(payload) if payload is not None else b""
        url = httpx.URL(self._base + path_and_query)
        signed_path = url.raw_path.decode("ascii")  # exactly what goes on the request line
        timestamp = str(int(self._clock().timestamp()))
        request_headers = {
            "Accept": "application/json",
            "User-Agent": "CareHub WeChatPay-APIv3",
            "Authorization": authorization(
                method=method,
                path_and_query=signed_path,
                body=body,
                mchid=self.config.mchid,
                serial_no=self.config.merchant_serial,
                private_key=self._merchant_key,
                timestamp=timestamp,
                nonce=self._nonce(),
            ),
        }
        if payload is not None:
            request_headers["Content-Type"] = "application/json"
        request_headers.update(headers or {})
        what = f"{method} {url.path}"
        try:
            response = await self._http.request(
                method, url, content=body, headers=request_headers, timeout=self.config.timeout_seconds
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as err:
            raise PaymentProviderDown("UNREACHABLE", f"{what}: {type(err).__name__}: {err}") from err
        except httpx.TransportError as err:
            raise PaymentTimeout("NO_ANSWER", f"{what}: {type(err).__name__}: {err}") from err
        if not response.is_success:
            try:
                answer = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                answer = None
            if isinstance(answer, dict) and "code" in answer:
                error = _error(str(answer["code"]), str(answer.get("message", "")), response.status_code)
            else:
                error = _error(f"HTTP{response.status_code}", f"{what}: {response.text[:200]!r}", response.status_code)
            log.warning("%s refused: %s", what, error)
            raise error
        self._verify_answer(response, what)
        if not response.content:
            return None
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as err:
            raise UnverifiedAnswer("BAD_ANSWER", f"{what}: the answer is not JSON") from err
        if not isinstance(data, dict):
            raise UnverifiedAnswer("BAD_ANSWER", f"{what}: the answer is not a JSON object")
        return data

    async def _json(
        self,
        method: str,
        path_and_query: str,
        payload: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        answer = await self.call(method, path_and_query, payload, headers=headers)
        if answer is None:
            raise UnverifiedAnswer("BAD_ANSWER", f"{method} {path_and_query}: an empty answer")
        return answer

    def _verify_answer(self, response: httpx.Response, what: str) -> None:
        timestamp = response.headers.get("wechatpay-timestamp", "")
        nonce = response.headers.get("wechatpay-nonce", "")
        signature = response.headers.get("wechatpay-signature", "")
        serial = response.headers.get("wechatpay-serial", "")
        if not (timestamp and nonce and signature):
            raise UnverifiedAnswer("ANSWER_NOT_SIGNED", f"{what}: the answer carries no signature")
        if serial != self.config.platform_key_id:
            raise UnverifiedAnswer("ANSWER_SIGNATURE_INVALID", f"{what}: signed with unknown key {serial!r}")
        self._check_fresh(timestamp, None, lambda reason: UnverifiedAnswer("ANSWER_SIGNATURE_INVALID", reason))
        if not rsa_verify(self._platform_key, answer_message(timestamp, nonce, response.content), signature):
            raise UnverifiedAnswer("ANSWER_SIGNATURE_INVALID", f"{what}: the answer's signature does not verify")

    def _check_fresh(self, timestamp: str, now: dt.datetime | None, error: Callable[[str], Exception]) -> None:
        try:
            stamp = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)
        except (ValueError, OverflowError, OSError):
            raise error(f"malformed timestamp {timestamp[:20]!r}") from None
        if abs((now or self._clock()) - stamp) > MAX_CLOCK_SKEW:
            raise error(f"timestamp {timestamp} is more than 5 minutes away")


@asynccontextmanager
async def open_wechat_pay(
    config: WeChatPayConfig,
    *,
    clock: Callable[[], dt.datetime] = _utcnow,
    nonce: Callable[[], str] = _new_nonce,
) -> AsyncIterator[WeChatPay]:
    """A :class:`WeChatPay` with its own connection pool, closed on exit."""
    async with httpx.AsyncClient(timeout=config.timeout_seconds) as http:
        yield WeChatPay(config, http, clock=clock, nonce=nonce)

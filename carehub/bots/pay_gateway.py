"""A simulator of WeChat Pay API v3 (JSAPI) and of medical-insurance mixed orders, for tests and demos.

It is an outsider like every bot: it shares no code with CareHub's payment adapter
(:mod:`carehub.channels.payment`) and implements the provider's side of the protocol on its own
(signatures, encryption, state machines), so a test that passes against it proves the adapter
speaks the protocol. It holds its own keys: a platform key pair (it signs every answer and
notification with it and publishes the public half under ``platform_key_id``), and the merchant's
key pair (it keeps the public half to verify requests; the private half is handed to whoever
plays the merchant, so one :func:`serve_pay_gateway` call gives a working configuration).

WeChat Pay API v3 (JSON; every request must carry ``Authorization: WECHATPAY2-SHA256-RSA2048
mchid="…",nonce_str="…",timestamp="…",serial_no="…",signature="…"``, verified byte-exactly over
``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n`` with the merchant public key; a bad signature,
an unknown mchid or serial, or a timestamp more than 5 minutes away is ``401 SIGN_ERROR``):

- ``POST /v3/pay/transactions/jsapi`` -> ``{prepay_id}``. An identical re-post of an unpaid order
  returns the same ``prepay_id``; other content under the same ``out_trade_no`` is
  ``403 OUT_TRADE_NO_USED``; re-posting a paid order ``403 ORDERPAID``, a closed one
  ``400 ORDER_CLOSED``.
- ``GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=`` and ``…/id/{transaction_id}?mchid=``:
  the transaction (``404 ORDER_NOT_EXIST``). States: NOTPAY -> SUCCESS | PAYERROR | CLOSED
  (closed, or ``time_expire`` passed); SUCCESS -> REFUND once a refund succeeds.
- ``POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close`` ``{mchid}`` -> 204.
- ``POST /v3/refund/domestic/refunds`` -> the refund, ``PROCESSING``; it turns ``SUCCESS``
  ``refund_seconds`` later (or when ``/_sim/refunds/{no}/settle`` says so). A retry with the same
  ``out_refund_no`` and content returns the same refund; refunds beyond the order's total are
  ``403 NOTENOUGH``; more than 50 per order, unpaid or year-old orders ``400 INVALID_REQUEST``.
- ``GET /v3/refund/domestic/refunds/{out_refund_no}`` (``404 RESOURCE_NOT_EXISTS``).

Medical-insurance mixed orders (移动医保支付 2.0):

- ``POST /v3/med-ins/orders`` with ``Wechatpay-Serial: <platform_key_id>`` and ``payer.name``,
  ``payer.id_digest`` RSA-OAEP-encrypted with the platform key. Checks the formulas
  ``total = gov+self+other + wechat_cash + Σreduce = gov+self+other + med_ins_cash + Σadd``, the
  per-type rules (CASH_ONLY: no insurance part; INSURANCE_ONLY: no cash; CASH_AND_INSURANCE: both)
  and that the split equals the NHSA pre-settlement of ``pay_order_id`` (else ``403 RULE_LIMIT``);
  ``pay_auth_no`` must be one the NHSA side issued and not expired (``400 INVALID_REQUEST``); the
  cash part's ``prepay_id`` must be an unpaid JSAPI order of exactly ``wechat_pay_cash_fee``.
  Idempotent on ``out_trade_no`` like JSAPI orders.
- ``GET /v3/med-ins/orders/out-trade-no/{out_trade_no}`` and ``…/mix-trade-no/{mix_trade_no}``.
  ``mix_pay_status`` MIX_PAY_CREATED|SUCCESS|REFUND|FAIL, ``med_ins_pay_status`` MED_INS_PAY_CREATED|
  SUCCESS|REFUND|FAIL (NO_MED_INS_PAY without an insurance part), ``self_pay_status`` SELF_PAY_CREATED|
  SUCCESS|REFUND|FAIL (NO_SELF_PAY without cash). The sub-status names are [unverified]; so is
  ``med_ins_refunds`` (the insurance refunds told so far) in the answer.
- ``POST /v3/med-ins/refunds/notify?mix_trade_no=…`` ``{med_refund_total_fee, med_refund_gov_fee,
  med_refund_self_fee, med_refund_other_fee, refund_time, out_refund_no}``: the hospital tells
  WeChat that the insurance part was refunded at the NHSA (6203). Refused unless the order was
  paid, ``total = gov + self + other``, no fund goes back beyond what it paid (``403 NOTENOUGH``),
  the NHSA side has in fact refunded at least that much (``400 INVALID_REQUEST``), and, when
  the order has a cash part, ``out_refund_no`` is a refund of that cash order (the same number
  as the cash refund's). A repeat with the same ``out_refund_no`` and amounts is answered the
  same; other amounts under it are ``400 INVALID_REQUEST``. Answers the order (as the query).
  ``mix_pay_status`` becomes MIX_PAY_REFUND once both parts are back (the cash refund
  ``SUCCESS`` and the whole insurance part told), whichever comes last.

The NHSA side is minimal (its mobile-payment specification is not public): the admin API issues
``pay_auth_no`` (the patient authorizing 医保电子凭证, expiring after ``pay_auth_ttl_seconds``)
and pre-settles (6201 + pre-settlement: the split, and a ``pay_order_id``); paying a mixed order
settles or fails the insurance part there; ``/_sim/nhsa/refund`` stands in for 6203 (医保退费),
which in real life the HIS sends over its NHSA interface.

Notifications (``TRANSACTION.SUCCESS``, ``REFUND.SUCCESS|ABNORMAL|CLOSED`` to the order's or the
refund's ``notify_url``, ``MEDICAL_INSURANCE.SUCCESS`` to a mixed order's ``callback_url``):
the §1 envelope, the resource AES-256-GCM-encrypted with the APIv3 key, signed with the platform
key (re-signed on each attempt), POSTed asynchronously. An attempt fails on a non-2xx answer or
no answer within ``notify_timeout_seconds`` (5 s); failed ones are retried on WeChat's schedule
(15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h) times ``notify_time_scale``; mixed-order
notifications only for about 30 s (so callers must poll).

The admin API under ``/_sim/`` (no authentication; bind it to localhost):

- ``POST /_sim/orders/{out_trade_no}/pay`` — the user paid in WeChat. Body (optional)
  ``{"outcome": "SUCCESS"|"PAYERROR"}``; for a mixed order ``{"insurance": "SUCCESS"|"FAIL",
  "cash": "SUCCESS"|"FAIL"}`` (insurance settles but cash fails: ``MIX_PAY_FAIL``, no notification).
  Paying the cash order of a mixed order pays the mixed order.
- ``GET /_sim/orders`` (``?out_trade_no=``) — every order, mixed order, refund and NHSA record.
- ``POST /_sim/refunds/{out_refund_no}/settle`` ``{"status": "SUCCESS"|"ABNORMAL"|"CLOSED"}``.
- ``GET /_sim/notifications`` — every notification sent, newest first, with its attempts and outcome.
- ``POST /_sim/notifications/{out_trade_no}/repeat`` — send the latest notification of that order
  (or refund: ``{"out_refund_no": …}``) once more, same ``id``.
- ``POST /_sim/notifications/signtest`` ``{"url"?, "out_trade_no"?}`` — a probe whose
  ``Wechatpay-Signature`` starts ``WECHATPAY/SIGNTEST/``; its outcome is ``rejected`` (good) or
  ``accepted`` (the receiver does not verify signatures).
- ``POST /_sim/faults`` ``{"kind": "500"|"429"|"hang", "count": N, "path": "/v3/…"?, "accept":
  false}`` — the next N authenticated API requests (under ``path``) answer 500 SYSTEM_ERROR, 429
  FREQUENCY_LIMITED or never; with ``"accept": true`` the request is carried out first (an
  answer lost on the way back).
- ``POST /_sim/nhsa/auth`` ``{"ttl_seconds"?}`` -> ``{pay_auth_no, expires_at}``;
  ``POST /_sim/nhsa/presettle`` ``{pay_auth_no, total_fee, med_ins_gov_fee, med_ins_self_fee,
  med_ins_other_fee, med_ins_cash_fee}`` -> ``{pay_order_id, …}``.
- ``POST /_sim/nhsa/refund`` — 【6203】医保退费 of a settled ``payOrdId``, with the field names seen
  in public HIS code (the specification is not public): ``{payOrdId, appRefdSn, appRefdTime
  (yyyyMMddHHmmss), totlRefdAmt, fundRefdAmt (统筹 + other funds), psnAcctRefdAmt (个账),
  cashRefdAmt, refdType: ALL|HI|CASH}``, amounts in yuan as strings ("6.00"). Answers the
  refund ``{…, refStatus: "SUCC", refdTime}``; idempotent by ``appRefdSn`` (same content: the
  same record; other content: 400); 400 for a settlement not settled or amounts beyond what was
  settled and not yet refunded. The answer shape is [unverified].
- ``POST /_sim/clock`` ``{"advance_seconds": S}`` — business time only (expiry of orders and
  authorizations); signature timestamps are checked against the real clock.
- ``GET``/``POST /_sim/config`` — ``auto_pay_seconds`` (None: wait for the pay trigger; a number:
  orders pay themselves that long after creation, for benchmarks), ``refund_seconds``,
  ``notify_time_scale``, ``notify_timeout_seconds``, ``pay_auth_ttl_seconds``,
  ``deliver_notifications`` (false: every notification attempt is lost on the way, so the
  merchant's polling is exercised).
- ``GET /_sim/credentials`` — the configuration the merchant side needs (test keys only).
- ``POST /_sim/reset``, ``GET /_sim/health``.

Run it alone with ``python -m carehub.bots.pay_gateway --port 8092``; tests start it in-process
with ``handle = await nursery.start(functools.partial(serve_pay_gateway, port=0, ...))``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import dataclasses
import datetime as dt
import functools
import itertools
import logging
import re
import secrets
import string
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
import orjson
import trio
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._asgi import Receive, Request, Send, SimulatorApp, admin_json, hang, respond, run_until_signalled, serve_app

log = logging.getLogger("carehub.bots.pay_gateway")

SCHEME = "WECHATPAY2-SHA256-RSA2048"
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"
BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")
MAX_CLOCK_SKEW = 300  # seconds
MAX_BODY_BYTES = 256 * 1024
MAX_REFUNDS_PER_ORDER = 50
DEFAULT_MCHID = "1900009191"
DEFAULT_APPID = "wxd678efh567hg6787"
#: WeChat's retry schedule for an unacknowledged notification (seconds; 24h4m in all).
NOTIFY_RETRY_SECONDS = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600)
#: Mixed-order notifications are retried only for about 30 seconds.
MIXED_NOTIFY_RETRY_SECONDS = (15, 15)
_OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
_OUT_REFUND_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
_AUTH_FIELD = re.compile(r'(\w+)="([^"]*)"')
_ALNUM = string.ascii_letters + string.digits
_FEES = ("total_fee", "med_ins_gov_fee", "med_ins_self_fee", "med_ins_other_fee", "med_ins_cash_fee")
_MIX_TYPES = ("CASH_ONLY", "INSURANCE_ONLY", "CASH_AND_INSURANCE")
_TRADE_STATE_DESC = {
    "NOTPAY": "订单未支付",
    "SUCCESS": "支付成功",
    "PAYERROR": "支付失败，请重新下单支付",
    "CLOSED": "订单已关闭",
    "REFUND": "转入退款",
}
_SUMMARY = {
    "TRANSACTION.SUCCESS": "支付成功",
    "REFUND.SUCCESS": "退款成功",
    "REFUND.ABNORMAL": "退款异常",
    "REFUND.CLOSED": "退款关闭",
    "MEDICAL_INSURANCE.SUCCESS": "医保混合收款成功",
}


# ---- keys and crypto (the provider's own copy) --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimKeys:
    """PEMs of the merchant's and the platform's RSA key pairs (test keys)."""

    merchant_private_key_pem: str = dataclasses.field(repr=False)
    merchant_public_key_pem: str
    platform_private_key_pem: str = dataclasses.field(repr=False)
    platform_public_key_pem: str


def _pem_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.decode("ascii"), public.decode("ascii")


def generate_keys() -> SimKeys:
    """Fresh RSA-2048 key pairs for the merchant and the platform."""
    merchant_private, merchant_public = _pem_pair()
    platform_private, platform_public = _pem_pair()
    return SimKeys(merchant_private, merchant_public, platform_private, platform_public)


def _load_private(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _load_public(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def _sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def _verify(key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def _nonce(length: int = 32) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(BEIJING).isoformat(timespec="seconds")


def _digits(count: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(count))


# ---- state --------------------------------------------------------------------------------------


@dataclasses.dataclass
class GatewaySettings:
    """Everything the admin API can change, with the values ``/_sim/reset`` returns to."""

    #: None: orders wait for ``/_sim/orders/{no}/pay``; a number: they pay themselves that long after creation.
    auto_pay_seconds: float | None = None
    #: A refund stays PROCESSING this long, then succeeds (None: until ``/_sim/refunds/{no}/settle``).
    refund_seconds: float | None = 2.0
    #: Multiplies every wait of the notification retry schedules (0.001 turns 15 s into 15 ms).
    notify_time_scale: float = 1.0
    notify_retry_seconds: tuple[float, ...] = NOTIFY_RETRY_SECONDS
    mixed_notify_retry_seconds: tuple[float, ...] = MIXED_NOTIFY_RETRY_SECONDS
    #: An attempt not answered within this is a failure (WeChat: 5 s).
    notify_timeout_seconds: float = 5.0
    #: False: every delivery attempt is lost on the way (recorded, never sent), so callers must poll.
    deliver_notifications: bool = True
    #: How long a ``pay_auth_no`` stays usable [unverified: the real lifetime is not public].
    pay_auth_ttl_seconds: float = 600.0
    #: Seconds a ``hang`` fault keeps the request open (unless the client leaves first).
    hang_seconds: float = 120.0
    max_notifications: int = 10_000


@dataclasses.dataclass
class Order:
    """One JSAPI order."""

    out_trade_no: str
    appid: str
    mchid: str
    description: str
    total: int
    openid: str
    notify_url: str
    attach: str | None
    time_expire: dt.datetime | None
    content: dict[str, Any]  # the create body, for the idempotency check
    prepay_id: str
    created_at: dt.datetime
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: dt.datetime | None = None
    mixed: str | None = None  # out_trade_no of the mixed order whose cash part this is
    refunds: list[str] = dataclasses.field(default_factory=list)

    def view(self) -> dict[str, Any]:
        """The transaction as query answers and notifications carry it."""
        answer: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "out_trade_no": self.out_trade_no,
            "trade_type": "JSAPI",
            "trade_state": self.trade_state,
            "trade_state_desc": _TRADE_STATE_DESC[self.trade_state],
            "payer": {"openid": self.openid},
            "amount": {"total": self.total, "currency": "CNY", "payer_currency": "CNY"},
        }
        if self.attach is not None:
            answer["attach"] = self.attach
        if self.transaction_id:
            answer["transaction_id"] = self.transaction_id
            answer["bank_type"] = "OTHERS"
            answer["amount"]["payer_total"] = self.total
        if self.success_time:
            answer["success_time"] = _rfc3339(self.success_time)
        return answer


@dataclasses.dataclass
class RefundRecord:
    out_refund_no: str
    refund_id: str
    out_trade_no: str
    amount: int
    reason: str
    notify_url: str
    content: dict[str, Any]
    created_at: dt.datetime
    status: str = "PROCESSING"
    success_time: dt.datetime | None = None


@dataclasses.dataclass
class MixedRecord:
    """One medical-insurance mixed order (``body`` holds the decrypted, normalized request)."""

    out_trade_no: str
    mix_trade_no: str
    body: dict[str, Any]
    payer: dict[str, str]
    created_at: dt.datetime
    mix_pay_status: str = "MIX_PAY_CREATED"
    self_pay_status: str = "SELF_PAY_CREATED"
    med_ins_pay_status: str = "MED_INS_PAY_CREATED"
    paid_time: dt.datetime | None = None
    passthrough: str | None = None
    #: out_refund_no -> the insurance refund the hospital told (``/v3/med-ins/refunds/notify``)
    med_refunds: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def insured(self) -> int:
        b = self.body
        return int(b["med_ins_gov_fee"]) + int(b["med_ins_self_fee"]) + int(b["med_ins_other_fee"])

    def view(self) -> dict[str, Any]:
        answer = {k: v for k, v in self.body.items() if k != "payer"}
        answer.update(
            mix_trade_no=self.mix_trade_no,
            mix_pay_status=self.mix_pay_status,
            self_pay_status=self.self_pay_status,
            med_ins_pay_status=self.med_ins_pay_status,
        )
        if self.paid_time:
            answer["paid_time"] = _rfc3339(self.paid_time)
        if self.passthrough:
            answer["passthrough_response_content"] = self.passthrough
        if self.med_refunds:
            answer["med_ins_refunds"] = list(self.med_refunds.values())
        return answer


@dataclasses.dataclass
class PayAuth:
    pay_auth_no: str
    expires_at: dt.datetime


@dataclasses.dataclass
class Presettlement:
    pay_order_id: str
    pay_auth_no: str
    fees: dict[str, int]
    status: str = "PRESETTLED"  # SETTLED, FAILED, REFUNDED (6203 gave everything back)
    setl_id: str | None = None
    #: 6203 refunds, each with its amounts in fen (``fund``, ``psn_acct``, ``cash``)
    refunds: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def refunded(self, part: str) -> int:
        return sum(int(r[part]) for r in self.refunds)


@dataclasses.dataclass
class Notice:
    """One notification (or duplicate, or SIGNTEST probe) and its delivery attempts."""

    id: str
    kind: str  # notify, duplicate, signtest
    event_type: str
    url: str
    body: bytes
    schedule: tuple[float, ...]
    out_trade_no: str | None = None
    out_refund_no: str | None = None
    attempts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    outcome: str = "pending"  # delivered, retrying, abandoned; probes: rejected, accepted

    def admin_view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "event_type": self.event_type,
            "url": self.url,
            "out_trade_no": self.out_trade_no,
            "out_refund_no": self.out_refund_no,
            "attempts": self.attempts,
            "outcome": self.outcome,
        }


@dataclasses.dataclass
class Fault:
    kind: str  # "500", "429", "hang"
    count: int
    path: str | None = None
    accept: bool = False


@dataclasses.dataclass
class Reply:
    """What the shell does with one API request: answer (signed), or hang."""

    status: int
    body: dict[str, Any] | None
    hang: bool = False


class Refused(Exception):
    """A request the provider answers with ``{code, message}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _field(data: Mapping[str, Any], name: str, kind: type = str) -> Any:
    value = data.get(name)
    if value is None or value == "" or not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise Refused(400, "PARAM_ERROR", f"参数错误: {name}")
    return value


# ---- the provider -------------------------------------------------------------------------------


class PayGateway:
    """The provider's state and rules (no I/O: the ASGI shell below serves it). Side effects the
    shell must carry out are queued: :attr:`outbox` (notifications to send) and :attr:`timers`."""

    def __init__(
        self,
        *,
        mchid: str,
        appid: str,
        merchant_serial: str,
        platform_key_id: str,
        apiv3_key: str,
        keys: SimKeys,
        settings: GatewaySettings,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.mchid = mchid
        self.appid = appid
        self.merchant_serial = merchant_serial
        self.platform_key_id = platform_key_id
        self.apiv3_key = apiv3_key
        self.keys = keys
        self._merchant_public = _load_public(keys.merchant_public_key_pem)
        self._platform_private = _load_private(keys.platform_private_key_pem)
        self._initial = settings
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._ids = itertools.count(1)
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        self.settings = dataclasses.replace(self._initial)
        self.offset = dt.timedelta(0)
        self.orders: dict[str, Order] = {}
        self.by_prepay: dict[str, str] = {}
        self.by_transaction: dict[str, str] = {}
        self.refunds: dict[str, RefundRecord] = {}
        self.mixed: dict[str, MixedRecord] = {}
        self.by_mix_trade_no: dict[str, str] = {}
        self.auths: dict[str, PayAuth] = {}
        self.presettlements: dict[str, Presettlement] = {}
        self.notices: collections.deque[Notice] = collections.deque(maxlen=self.settings.max_notifications)
        self.faults: collections.deque[Fault] = collections.deque()
        self.outbox: list[Notice] = []
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.generation += 1

    def real_now(self) -> dt.datetime:
        """The unshifted clock: signature timestamps are checked against it."""
        return self._clock()

    def now(self) -> dt.datetime:
        """Business time (moved by ``/_sim/clock``)."""
        return self._clock() + self.offset

    def credentials(self) -> dict[str, str]:
        return {
            "mchid": self.mchid,
            "appid": self.appid,
            "merchant_private_key_pem": self.keys.merchant_private_key_pem,
            "merchant_serial": self.merchant_serial,
            "platform_public_key_pem": self.keys.platform_public_key_pem,
            "platform_key_id": self.platform_key_id,
            "apiv3_key": self.apiv3_key,
        }

    # -- signatures and notifications --------------------------------------------------------

    def signed_headers(self, body: bytes, *, probe: bool = False) -> dict[str, str]:
        """``Wechatpay-*`` headers for an answer or a notification (a SIGNTEST probe if ``probe``)."""
        timestamp = str(int(self.real_now().timestamp()))
        nonce = _nonce()
        if probe:
            signature = SIGNTEST_PREFIX + base64.b64encode(secrets.token_bytes(192)).decode("ascii")
        else:
            signature = _sign(self._platform_private, f"{timestamp}\n{nonce}\n".encode() + body + b"\n")
        return {
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Serial": self.platform_key_id,
            "Wechatpay-Signature-Type": SCHEME,
        }

    def _notify(
        self,
        event_type: str,
        original_type: str,
        plaintext: Mapping[str, Any],
        url: str,
        schedule: tuple[float, ...],
        *,
        out_trade_no: str | None = None,
        out_refund_no: str | None = None,
    ) -> None:
        nonce = _nonce(12)
        ciphertext = AESGCM(self.apiv3_key.encode()).encrypt(
            nonce.encode(), orjson.dumps(plaintext), original_type.encode()
        )
        envelope: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "create_time": _rfc3339(self.now()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": _SUMMARY.get(event_type, event_type),
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
                "associated_data": original_type,
                "nonce": nonce,
            },
        }
        notice = Notice(
            id=envelope["id"],
            kind="notify",
            event_type=event_type,
            url=url,
            body=orjson.dumps(envelope),
            schedule=schedule,
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
        )
        self.notices.append(notice)
        self.outbox.append(notice)

    def take_side_effects(self) -> tuple[list[Notice], list[tuple[float, Callable[[], None]]]]:
        outbox, timers = self.outbox, self.timers
        self.outbox, self.timers = [], []
        return outbox, timers

    # -- the API -----------------------------------------------------------------------------

    def handle_api(
        self, method: str, target: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        """One API request; ``target`` is the raw request target (path and query, as received)."""
        try:
            self._authenticate(method, target, headers, body)
            fault = self._take_fault(path)
            if fault is not None and not fault.accept:
                return self._fault_reply(fault)
            reply = self._route(method, path, query, headers, body)
            return self._fault_reply(fault) if fault is not None else reply
        except Refused as refused:
            return Reply(refused.status, {"code": refused.code, "message": refused.message})

    def _fault_reply(self, fault: Fault) -> Reply:
        if fault.kind == "hang":
            return Reply(200, None, hang=True)
        if fault.kind == "429":
            return Reply(429, {"code": "FREQUENCY_LIMITED", "message": "频率超限，请降低请求频率"})
        return Reply(500, {"code": "SYSTEM_ERROR", "message": "系统错误，请稍后重试"})

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.path is None or path.startswith(fault.path):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _authenticate(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> None:
        header = headers.get("authorization", "")
        if not header.startswith(SCHEME + " "):
            raise Refused(401, "SIGN_ERROR", "签名错误: Authorization 缺失或认证类型不正确")
        fields = dict(_AUTH_FIELD.findall(header[len(SCHEME) + 1 :]))
        missing = [n for n in ("mchid", "nonce_str", "timestamp", "serial_no", "signature") if not fields.get(n)]
        if missing:
            raise Refused(401, "SIGN_ERROR", f"签名错误: Authorization 缺少 {', '.join(missing)}")
        if fields["mchid"] != self.mchid:
            raise Refused(401, "SIGN_ERROR", "签名错误: 商户号不存在")
        if fields["serial_no"] != self.merchant_serial:
            raise Refused(401, "SIGN_ERROR", "签名错误: 商户证书序列号不正确")
        try:
            stamp = int(fields["timestamp"])
        except ValueError:
            raise Refused(401, "SIGN_ERROR", "签名错误: 时间戳格式不正确") from None
        if abs(self.real_now().timestamp() - stamp) > MAX_CLOCK_SKEW:
            raise Refused(401, "SIGN_ERROR", "签名错误: 请求时间戳已过期")
        message = f"{method}\n{target}\n{fields['timestamp']}\n{fields['nonce_str']}\n".encode() + body + b"\n"
        if not _verify(self._merchant_public, message, fields["signature"]):
            raise Refused(401, "SIGN_ERROR", "签名错误，请检查后再试")

    def _route(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Reply:
        args = dict(parse_qsl(query))
        data: dict[str, Any] = {}
        if method == "POST":
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise Refused(400, "PARAM_ERROR", "请求体不是合法的JSON") from None
            if not isinstance(parsed, dict):
                raise Refused(400, "PARAM_ERROR", "请求体必须是JSON对象")
            data = parsed
        parts = [unquote(p) for p in path.split("/")[1:]]
        match method, parts:
            case "POST", ["v3", "pay", "transactions", "jsapi"]:
                return Reply(200, self._create_order(data))
            case "GET", ["v3", "pay", "transactions", "out-trade-no", no]:
                self._check_mchid(args.get("mchid"))
                return Reply(200, self._order(no).view())
            case "GET", ["v3", "pay", "transactions", "id", transaction_id]:
                self._check_mchid(args.get("mchid"))
                found = self.by_transaction.get(transaction_id)
                if found is None:
                    raise Refused(404, "ORDER_NOT_EXIST", "订单不存在")
                return Reply(200, self._order(found).view())
            case "POST", ["v3", "pay", "transactions", "out-trade-no", no, "close"]:
                self._check_mchid(data.get("mchid"))
                self._close(no)
                return Reply(204, None)
            case "POST", ["v3", "refund", "domestic", "refunds"]:
                return Reply(200, self._refund(data))
            case "GET", ["v3", "refund", "domestic", "refunds", out_refund_no]:
                refund = self.refunds.get(out_refund_no)
                if refund is None:
                    raise Refused(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
                return Reply(200, self._refund_view(refund))
            case "POST", ["v3", "med-ins", "orders"]:
                return Reply(200, self._create_mixed(data, headers))
            case "GET", ["v3", "med-ins", "orders", "out-trade-no", no]:
                return Reply(200, self._mixed_order(no).view())
            case "GET", ["v3", "med-ins", "orders", "mix-trade-no", mix_trade_no]:
                found = self.by_mix_trade_no.get(mix_trade_no)
                if found is None:
                    raise Refused(404, "ORDER_NOT_EXIST", "订单不存在")
                return Reply(200, self._mixed_order(found).view())
            case "POST", ["v3", "med-ins", "refunds", "notify"]:
                return Reply(200, self._med_refund_notify(args.get("mix_trade_no", ""), data))
        raise Refused(404, "NOT_FOUND", f"接口不存在: {method} {path}")

    def _check_mchid(self, mchid: Any) -> None:
        if mchid != self.mchid:
            raise Refused(400, "PARAM_ERROR", "参数错误: mchid")

    def _order(self, out_trade_no: str) -> Order:
        order = self.orders.get(out_trade_no)
        if order is None:
            raise Refused(404, "ORDER_NOT_EXIST", "订单不存在")
        self._expire(order)
        return order

    def _expire(self, order: Order) -> None:
        if order.trade_state == "NOTPAY" and order.time_expire is not None and self.now() > order.time_expire:
            order.trade_state = "CLOSED"

    # -- JSAPI orders ------------------------------------------------------------------------

    def _create_order(self, data: dict[str, Any]) -> dict[str, Any]:
        appid, mchid = _field(data, "appid"), _field(data, "mchid")
        if mchid != self.mchid:
            raise Refused(400, "MCH_NOT_EXISTS", "商户号不存在")
        if appid != self.appid:
            raise Refused(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        out_trade_no = _field(data, "out_trade_no")
        if not _OUT_TRADE_NO.match(out_trade_no):
            raise Refused(400, "PARAM_ERROR", "参数错误: out_trade_no 须为6-32位数字、字母、_-|*")
        description = _field(data, "description")
        if len(description) > 127:
            raise Refused(400, "PARAM_ERROR", "参数错误: description 超长")
        notify_url = _field(data, "notify_url")
        if not notify_url.startswith(("http://", "https://")) or "?" in notify_url:
            raise Refused(400, "PARAM_ERROR", "参数错误: notify_url 须为不带参数的网址")
        amount = _field(data, "amount", dict)
        total = _field(amount, "total", int)
        if total <= 0 or amount.get("currency", "CNY") != "CNY":
            raise Refused(400, "PARAM_ERROR", "参数错误: amount")
        openid = _field(_field(data, "payer", dict), "openid")
        time_expire = None
        if data.get("time_expire"):
            try:
                time_expire = dt.datetime.fromisoformat(str(data["time_expire"]))
            except ValueError:
                raise Refused(400, "PARAM_ERROR", "参数错误: time_expire 须为RFC3339格式") from None
            if time_expire.tzinfo is None:
                raise Refused(400, "PARAM_ERROR", "参数错误: time_expire 须带时区")
        existing = self.orders.get(out_trade_no)
        if existing is not None:
            self._expire(existing)
            if existing.content != data:
                raise Refused(403, "OUT_TRADE_NO_USED", "商户订单号重复")
            if existing.trade_state in ("SUCCESS", "REFUND"):
                raise Refused(403, "ORDERPAID", "该订单已支付")
            if existing.trade_state == "CLOSED":
                raise Refused(400, "ORDER_CLOSED", "订单已关闭")
            return {"prepay_id": existing.prepay_id}
        now = self.now()
        prepay_id = f"wx{now.astimezone(BEIJING):%d%H%M%S}{secrets.token_hex(13)}"
        order = Order(
            out_trade_no=out_trade_no,
            appid=appid,
            mchid=mchid,
            description=description,
            total=total,
            openid=openid,
            notify_url=notify_url,
            attach=data.get("attach"),
            time_expire=time_expire,
            content=data,
            prepay_id=prepay_id,
            created_at=now,
        )
        self.orders[out_trade_no] = order
        self.by_prepay[prepay_id] = out_trade_no
        if self.settings.auto_pay_seconds is not None:
            self.timers.append((self.settings.auto_pay_seconds, functools.partial(self._auto_pay, out_trade_no)))
        log.info("order %s created: %d fen", out_trade_no, total)
        return {"prepay_id": prepay_id}

    def _close(self, out_trade_no: str) -> None:
        order = self._order(out_trade_no)
        if order.trade_state in ("SUCCESS", "REFUND"):
            raise Refused(403, "ORDERPAID", "订单已支付，不能关闭")
        order.trade_state = "CLOSED"

    def _auto_pay(self, out_trade_no: str) -> None:
        order = self.orders.get(out_trade_no)
        if order is not None and order.mixed is None and order.trade_state == "NOTPAY":
            self._pay_order(order, "SUCCESS")
        mixed = self.mixed.get(out_trade_no)
        if mixed is not None and mixed.mix_pay_status == "MIX_PAY_CREATED":
            self._pay_mixed(mixed, "SUCCESS", "SUCCESS")

    def _pay_order(self, order: Order, outcome: str) -> None:
        self._expire(order)
        if order.trade_state not in ("NOTPAY", "PAYERROR"):
            raise Refused(409, "INVALID_STATE", f"订单状态为 {order.trade_state}，不能支付")
        if outcome == "PAYERROR":
            order.trade_state = "PAYERROR"
            return
        order.trade_state = "SUCCESS"
        order.transaction_id = f"42000{self.now().astimezone(BEIJING):%Y%m%d}{_digits(15)}"
        order.success_time = self.now()
        self.by_transaction[order.transaction_id] = order.out_trade_no
        log.info("order %s paid, transaction %s", order.out_trade_no, order.transaction_id)
        self._notify(
            "TRANSACTION.SUCCESS",
            "transaction",
            order.view(),
            order.notify_url,
            self.settings.notify_retry_seconds,
            out_trade_no=order.out_trade_no,
        )

    # -- refunds -----------------------------------------------------------------------------

    def _refund(self, data: dict[str, Any]) -> dict[str, Any]:
        out_refund_no = _field(data, "out_refund_no")
        if not _OUT_REFUND_NO.match(out_refund_no):
            raise Refused(400, "PARAM_ERROR", "参数错误: out_refund_no")
        amount = _field(data, "amount", dict)
        refund, total = _field(amount, "refund", int), _field(amount, "total", int)
        if data.get("out_trade_no"):
            out_trade_no = str(data["out_trade_no"])
        elif data.get("transaction_id") in self.by_transaction:
            out_trade_no = self.by_transaction[str(data["transaction_id"])]
        elif data.get("transaction_id"):
            raise Refused(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        else:
            raise Refused(400, "PARAM_ERROR", "参数错误: transaction_id 和 out_trade_no 必须二选一")
        content = {"out_trade_no": out_trade_no, "refund": refund, "total": total}
        existing = self.refunds.get(out_refund_no)
        if existing is not None:
            if existing.content != content:
                raise Refused(400, "INVALID_REQUEST", "退款单号已用于其他退款请求")
            return self._refund_view(existing)
        order = self.orders.get(out_trade_no)
        if order is None:
            raise Refused(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        if order.trade_state not in ("SUCCESS", "REFUND"):
            raise Refused(400, "INVALID_REQUEST", "订单未支付，不能退款")
        if total != order.total:
            raise Refused(400, "PARAM_ERROR", "参数错误: 订单金额与原订单不一致")
        if refund <= 0:
            raise Refused(400, "PARAM_ERROR", "参数错误: 退款金额须大于0")
        assert order.success_time is not None
        if self.now() - order.success_time > dt.timedelta(days=365):
            raise Refused(400, "INVALID_REQUEST", "订单已超过退款期限（一年）")
        if len(order.refunds) >= MAX_REFUNDS_PER_ORDER:
            raise Refused(400, "INVALID_REQUEST", "部分退款次数超过50次")
        refunded = sum(self.refunds[n].amount for n in order.refunds if self.refunds[n].status != "CLOSED")
        if refunded + refund > order.total:
            raise Refused(403, "NOTENOUGH", "退款金额超过订单可退金额")
        record = RefundRecord(
            out_refund_no=out_refund_no,
            refund_id=f"50{_digits(27)}",
            out_trade_no=out_trade_no,
            amount=refund,
            reason=str(data.get("reason") or ""),
            notify_url=str(data.get("notify_url") or order.notify_url),
            content=content,
            created_at=self.now(),
        )
        self.refunds[out_refund_no] = record
        order.refunds.append(out_refund_no)
        if self.settings.refund_seconds is not None:
            self.timers.append(
                (self.settings.refund_seconds, functools.partial(self._settle_refund_later, out_refund_no))
            )
        log.info("refund %s of order %s accepted: %d fen", out_refund_no, out_trade_no, refund)
        return self._refund_view(record)

    def _refund_view(self, refund: RefundRecord) -> dict[str, Any]:
        order = self.orders[refund.out_trade_no]
        answer: dict[str, Any] = {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": order.transaction_id,
            "out_trade_no": order.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": _rfc3339(refund.created_at),
            "status": refund.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": order.total,
                "refund": refund.amount,
                "from": [],
                "payer_total": order.total,
                "payer_refund": refund.amount,
                "settlement_refund": refund.amount,
                "settlement_total": order.total,
                "discount_refund": 0,
                "currency": "CNY",
            },
        }
        if refund.success_time:
            answer["success_time"] = _rfc3339(refund.success_time)
        return answer

    def _settle_refund_later(self, out_refund_no: str) -> None:
        refund = self.refunds.get(out_refund_no)
        if refund is not None and refund.status == "PROCESSING":
            self.settle_refund(refund, "SUCCESS")

    def settle_refund(self, refund: RefundRecord, status: str) -> None:
        if refund.status != "PROCESSING":
            raise Refused(409, "INVALID_STATE", f"退款状态为 {refund.status}")
        refund.status = status
        order = self.orders[refund.out_trade_no]
        if status == "SUCCESS":
            refund.success_time = self.now()
            order.trade_state = "REFUND"
            if order.mixed is not None:
                self._mixed_refund_state(self.mixed[order.mixed])
        plaintext: dict[str, Any] = {
            "mchid": self.mchid,
            "out_trade_no": order.out_trade_no,
            "transaction_id": order.transaction_id,
            "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_id,
            "refund_status": status,
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": order.total,
                "refund": refund.amount,
                "payer_total": order.total,
                "payer_refund": refund.amount,
            },
        }
        if refund.success_time:
            plaintext["success_time"] = _rfc3339(refund.success_time)
        log.info("refund %s: %s", refund.out_refund_no, status)
        self._notify(
            f"REFUND.{status}",
            "refund",
            plaintext,
            refund.notify_url,
            self.settings.notify_retry_seconds,
            out_trade_no=order.out_trade_no,
            out_refund_no=refund.out_refund_no,
        )

    # -- medical-insurance mixed orders ------------------------------------------------------

    def _mixed_order(self, out_trade_no: str) -> MixedRecord:
        mixed = self.mixed.get(out_trade_no)
        if mixed is None:
            raise Refused(404, "ORDER_NOT_EXIST", "订单不存在")
        return mixed

    def _decrypt(self, value: Any, name: str) -> str:
        try:
            return self._platform_private.decrypt(base64.b64decode(str(value), validate=True), _OAEP).decode()
        except (ValueError, TypeError):
            raise Refused(400, "PARAM_ERROR", f"参数错误: {name} 解密失败") from None

    def _create_mixed(self, data: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        if headers.get("wechatpay-serial") != self.platform_key_id:
            raise Refused(400, "PARAM_ERROR", "参数错误: Wechatpay-Serial 与加密所用的微信支付公钥不一致")
        if _field(data, "appid") != self.appid:
            raise Refused(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        out_trade_no = _field(data, "out_trade_no")
        if not _OUT_TRADE_NO.match(out_trade_no):
            raise Refused(400, "PARAM_ERROR", "参数错误: out_trade_no")
        mix_pay_type = _field(data, "mix_pay_type")
        if mix_pay_type not in _MIX_TYPES:
            raise Refused(400, "PARAM_ERROR", "参数错误: mix_pay_type")
        for name in ("order_type", "openid", "serial_no", "pay_order_id", "pay_auth_no", "city_id"):
            _field(data, name)
        for name in ("med_inst_name", "med_inst_no", "callback_url"):
            _field(data, name)
        fees = {name: _field(data, name, int) for name in (*_FEES, "wechat_pay_cash_fee")}
        payer = _field(data, "payer", dict)
        clear_payer = {
            "name": self._decrypt(_field(payer, "name"), "payer.name"),
            "id_digest": self._decrypt(_field(payer, "id_digest"), "payer.id_digest"),
            "card_type": str(payer.get("card_type", "ID_CARD")),
        }
        if not re.fullmatch(r"[0-9a-f]{32}", clear_payer["id_digest"]):
            raise Refused(400, "PARAM_ERROR", "参数错误: payer.id_digest 须为身份证号MD5（小写十六进制）")
        normalized = dict(data, payer=clear_payer)
        existing = self.mixed.get(out_trade_no)
        if existing is not None:
            if existing.body != normalized:
                raise Refused(403, "OUT_TRADE_NO_USED", "商户订单号重复")
            return existing.view()
        self._check_mixed_amounts(data, fees, mix_pay_type)
        auth = self.auths.get(str(data["pay_auth_no"]))
        if auth is None:
            raise Refused(400, "INVALID_REQUEST", "医保支付授权码无效")
        if self.now() > auth.expires_at:
            raise Refused(400, "INVALID_REQUEST", "医保支付授权码已过期，请重新授权")
        presettlement = self.presettlements.get(str(data["pay_order_id"]))
        if presettlement is None or presettlement.pay_auth_no != auth.pay_auth_no:
            raise Refused(400, "INVALID_REQUEST", "医保支付单号不存在或与授权码不匹配")
        if presettlement.status != "PRESETTLED":
            raise Refused(400, "INVALID_REQUEST", "医保支付单已结算或已失败")
        if any(presettlement.fees[name] != fees[name] for name in _FEES):
            raise Refused(403, "RULE_LIMIT", "金额与医保预结算结果不一致")
        cash_order: Order | None = None
        if fees["wechat_pay_cash_fee"] > 0:
            cash_no = self.by_prepay.get(str(data["prepay_id"]))
            cash_order = self.orders.get(cash_no) if cash_no else None
            if cash_order is None:
                raise Refused(400, "INVALID_REQUEST", "prepay_id 不存在")
            self._expire(cash_order)
            if cash_order.trade_state != "NOTPAY" or cash_order.mixed is not None:
                raise Refused(400, "INVALID_REQUEST", "prepay_id 对应的订单不可用于医保混合支付")
            if cash_order.total != fees["wechat_pay_cash_fee"] or cash_order.openid != data["openid"]:
                raise Refused(403, "RULE_LIMIT", "prepay_id 订单金额或用户与 wechat_pay_cash_fee/openid 不一致")
        mixed = MixedRecord(
            out_trade_no=out_trade_no,
            mix_trade_no=f"{self.now().astimezone(BEIJING):%Y%m%d}{_digits(20)}",
            body=normalized,
            payer=clear_payer,
            created_at=self.now(),
            self_pay_status="SELF_PAY_CREATED" if cash_order else "NO_SELF_PAY",
            med_ins_pay_status="MED_INS_PAY_CREATED" if sum(fees[n] for n in _FEES[1:4]) else "NO_MED_INS_PAY",
        )
        if cash_order is not None:
            cash_order.mixed = out_trade_no
        self.mixed[out_trade_no] = mixed
        self.by_mix_trade_no[mixed.mix_trade_no] = out_trade_no
        if self.settings.auto_pay_seconds is not None:
            self.timers.append((self.settings.auto_pay_seconds, functools.partial(self._auto_pay, out_trade_no)))
        log.info("mixed order %s created: %s, %d fen", out_trade_no, mix_pay_type, fees["total_fee"])
        return mixed.view()

    def _check_mixed_amounts(self, data: Mapping[str, Any], fees: Mapping[str, int], mix_pay_type: str) -> None:
        def details(name: str, fee: str) -> int:
            items = data.get(name) or []
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise Refused(400, "PARAM_ERROR", f"参数错误: {name}")
            values = [i.get(fee) for i in items]
            if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
                raise Refused(400, "PARAM_ERROR", f"参数错误: {name}.{fee}")
            return sum(int(v) for v in values if v is not None)

        added = details("cash_add_detail", "cash_add_fee")
        reduced = details("cash_reduce_detail", "cash_reduce_fee")
        if any(v < 0 for v in fees.values()) or fees["total_fee"] <= 0:
            raise Refused(403, "RULE_LIMIT", "金额须为非负整数（分），总金额须大于0")
        insured = fees["med_ins_gov_fee"] + fees["med_ins_self_fee"] + fees["med_ins_other_fee"]
        total, cash, wechat_cash = fees["total_fee"], fees["med_ins_cash_fee"], fees["wechat_pay_cash_fee"]
        if total != insured + wechat_cash + reduced or total != insured + cash + added:
            raise Refused(403, "RULE_LIMIT", "金额校验失败: total_fee 与医保、现金及加减项金额之和不一致")
        if mix_pay_type == "CASH_ONLY" and (insured != 0 or wechat_cash <= 0):
            raise Refused(403, "RULE_LIMIT", "CASH_ONLY 订单不能有医保支付部分")
        if mix_pay_type == "INSURANCE_ONLY" and (insured <= 0 or wechat_cash != 0):
            raise Refused(403, "RULE_LIMIT", "INSURANCE_ONLY 订单不能有现金支付部分")
        if mix_pay_type == "CASH_AND_INSURANCE" and (insured <= 0 or wechat_cash <= 0):
            raise Refused(403, "RULE_LIMIT", "CASH_AND_INSURANCE 订单须同时有医保和现金支付部分")
        if (wechat_cash > 0) != bool(data.get("prepay_id")):
            raise Refused(403, "RULE_LIMIT", "有现金支付部分时须且仅须传 prepay_id")

    def _pay_mixed(self, mixed: MixedRecord, insurance: str, cash: str) -> None:
        if mixed.mix_pay_status != "MIX_PAY_CREATED":
            raise Refused(409, "INVALID_STATE", f"订单状态为 {mixed.mix_pay_status}，不能支付")
        presettlement = self.presettlements[str(mixed.body["pay_order_id"])]
        insurance_ok = True
        if mixed.insured:
            if insurance == "SUCCESS":
                presettlement.status = "SETTLED"
                presettlement.setl_id = f"SETL{_digits(20)}"
                mixed.med_ins_pay_status = "MED_INS_PAY_SUCCESS"
                mixed.passthrough = orjson.dumps(
                    {"setl_id": presettlement.setl_id, "pay_order_id": presettlement.pay_order_id}
                ).decode()
            else:
                presettlement.status = "FAILED"
                mixed.med_ins_pay_status = "MED_INS_PAY_FAIL"
                insurance_ok = False
        cash_ok = True
        cash_no = self.by_prepay.get(str(mixed.body.get("prepay_id") or ""))
        if cash_no is not None and insurance_ok:
            order = self.orders[cash_no]
            self._pay_order(order, "SUCCESS" if cash == "SUCCESS" else "PAYERROR")
            cash_ok = order.trade_state == "SUCCESS"
            mixed.self_pay_status = "SELF_PAY_SUCCESS" if cash_ok else "SELF_PAY_FAIL"
        if insurance_ok and cash_ok:
            mixed.mix_pay_status = "MIX_PAY_SUCCESS"
            mixed.paid_time = self.now()
            self._notify(
                "MEDICAL_INSURANCE.SUCCESS",
                "medical_insurance",  # [unverified]
                mixed.view(),
                str(mixed.body["callback_url"]),
                self.settings.mixed_notify_retry_seconds,
                out_trade_no=mixed.out_trade_no,
            )
        else:
            mixed.mix_pay_status = "MIX_PAY_FAIL"
        log.info("mixed order %s: %s", mixed.out_trade_no, mixed.mix_pay_status)

    def _cash_order(self, mixed: MixedRecord) -> Order | None:
        cash_no = self.by_prepay.get(str(mixed.body.get("prepay_id") or ""))
        return self.orders[cash_no] if cash_no is not None else None

    def _med_refund_notify(self, mix_trade_no: str, data: dict[str, Any]) -> dict[str, Any]:
        """``POST /v3/med-ins/refunds/notify``: the insurance part was refunded at the NHSA (6203)."""
        if not mix_trade_no:
            raise Refused(400, "PARAM_ERROR", "参数错误: mix_trade_no")
        found = self.by_mix_trade_no.get(mix_trade_no)
        if found is None:
            raise Refused(404, "ORDER_NOT_EXIST", "订单不存在")
        mixed = self.mixed[found]
        out_refund_no = _field(data, "out_refund_no")
        if not _OUT_REFUND_NO.match(out_refund_no):
            raise Refused(400, "PARAM_ERROR", "参数错误: out_refund_no")
        names = ("med_refund_total_fee", "med_refund_gov_fee", "med_refund_self_fee", "med_refund_other_fee")
        fees = {name: _field(data, name, int) for name in names}
        try:
            refund_time = dt.datetime.fromisoformat(_field(data, "refund_time"))
        except ValueError:
            raise Refused(400, "PARAM_ERROR", "参数错误: refund_time 须为RFC3339格式") from None
        if refund_time.tzinfo is None:
            raise Refused(400, "PARAM_ERROR", "参数错误: refund_time 须带时区")
        total, gov, own, other = (fees[name] for name in names)
        if min(gov, own, other) < 0 or total <= 0 or total != gov + own + other:
            raise Refused(400, "PARAM_ERROR", "金额校验失败: med_refund_total_fee 须为统筹、个账、其他之和且大于0")
        existing = mixed.med_refunds.get(out_refund_no)
        if existing is not None:
            if any(existing[name] != fees[name] for name in names):
                raise Refused(400, "INVALID_REQUEST", "退款单号已用于其他医保退款通知")
            return mixed.view()
        if mixed.mix_pay_status not in ("MIX_PAY_SUCCESS", "MIX_PAY_REFUND"):
            raise Refused(400, "INVALID_REQUEST", "订单未支付成功，不能退款")
        told = {name: sum(int(r[name]) for r in mixed.med_refunds.values()) for name in names}
        paid = {"med_refund_gov_fee": int(mixed.body["med_ins_gov_fee"]),
                "med_refund_self_fee": int(mixed.body["med_ins_self_fee"]),
                "med_refund_other_fee": int(mixed.body["med_ins_other_fee"])}
        if any(told[name] + fees[name] > paid[name] for name in paid):
            raise Refused(403, "NOTENOUGH", "医保退款金额超过订单医保支付金额")
        cash = self._cash_order(mixed)
        if cash is not None and out_refund_no not in cash.refunds:
            raise Refused(400, "INVALID_REQUEST", "out_refund_no 须与现金部分的退款单号一致")
        presettlement = self.presettlements[str(mixed.body["pay_order_id"])]
        fund = told["med_refund_gov_fee"] + told["med_refund_other_fee"] + gov + other
        psn_acct = told["med_refund_self_fee"] + own
        if presettlement.refunded("fund") < fund or presettlement.refunded("psn_acct") < psn_acct:
            raise Refused(400, "INVALID_REQUEST", "医保侧尚未退费（6203），不能通知医保退款")
        mixed.med_refunds[out_refund_no] = {"out_refund_no": out_refund_no, **fees,
                                            "refund_time": _rfc3339(refund_time)}
        self._mixed_refund_state(mixed)
        log.info("mixed order %s: insurance refund %s told, %d fen", mixed.out_trade_no, out_refund_no, total)
        return mixed.view()

    def _mixed_refund_state(self, mixed: MixedRecord) -> None:
        """The statuses after a refund of either part: MIX_PAY_REFUND once both parts are back."""
        told = sum(int(r["med_refund_total_fee"]) for r in mixed.med_refunds.values())
        insurance_back = told >= mixed.insured
        if mixed.insured and insurance_back:
            mixed.med_ins_pay_status = "MED_INS_PAY_REFUND"
        cash = self._cash_order(mixed)
        cash_back = True
        if cash is not None:
            returned = sum(self.refunds[n].amount for n in cash.refunds if self.refunds[n].status == "SUCCESS")
            cash_back = returned >= cash.total
            if cash_back:
                mixed.self_pay_status = "SELF_PAY_REFUND"
        if insurance_back and cash_back and mixed.mix_pay_status == "MIX_PAY_SUCCESS":
            mixed.mix_pay_status = "MIX_PAY_REFUND"
            log.info("mixed order %s: both parts refunded", mixed.out_trade_no)

    # -- the NHSA stand-in -------------------------------------------------------------------

    def nhsa_refund(self, data: Mapping[str, Any]) -> tuple[int, Any]:
        """【6203】医保退费 of a settled pre-settlement (field names as in public HIS code)."""

        def text(name: str) -> str:
            value = data.get(name)
            if not isinstance(value, str) or not value.strip():
                raise Refused(400, "PARAM_ERROR", f"参数错误: {name}")
            return value.strip()

        def fen(name: str) -> int:
            value = data.get(name, "0.00")
            if not isinstance(value, str) or not re.fullmatch(r"\d{1,9}(\.\d{1,2})?", value):
                raise Refused(400, "PARAM_ERROR", f"参数错误: {name} 须为以元为单位的金额字符串（如 6.00）")
            yuan, _, cents = value.partition(".")
            return int(yuan) * 100 + int(cents.ljust(2, "0"))

        pay_ord_id, refund_sn = text("payOrdId"), text("appRefdSn")
        if len(refund_sn) > 64:
            raise Refused(400, "PARAM_ERROR", "参数错误: appRefdSn 超长")
        try:
            asked_at = dt.datetime.strptime(text("appRefdTime"), "%Y%m%d%H%M%S")
        except ValueError:
            raise Refused(400, "PARAM_ERROR", "参数错误: appRefdTime 须为 yyyyMMddHHmmss") from None
        kind = text("refdType").upper()
        if kind not in ("ALL", "HI", "CASH"):
            raise Refused(400, "PARAM_ERROR", "参数错误: refdType 须为 ALL、HI 或 CASH")
        amounts = {"total": fen("totlRefdAmt"), "fund": fen("fundRefdAmt"), "psn_acct": fen("psnAcctRefdAmt"),
                   "cash": fen("cashRefdAmt")}
        presettlement = self.presettlements.get(pay_ord_id)
        if presettlement is None:
            raise Refused(404, "NOT_FOUND", "医保支付订单不存在")
        content = {"payOrdId": pay_ord_id, "refdType": kind, **amounts}
        for earlier in presettlement.refunds:
            if earlier["appRefdSn"] == refund_sn:
                if earlier["content"] != content:
                    raise Refused(400, "INVALID_REQUEST", "应用退款流水号已用于其他退费")
                return 200, self._nhsa_refund_view(presettlement, earlier)
        if presettlement.status not in ("SETTLED", "REFUNDED"):
            raise Refused(400, "INVALID_REQUEST", "医保支付订单未结算，不能退费")
        if amounts["total"] <= 0 or amounts["total"] != amounts["fund"] + amounts["psn_acct"] + amounts["cash"]:
            raise Refused(400, "INVALID_REQUEST", "totlRefdAmt 须为基金、个账、现金退费金额之和且大于0")
        if (kind == "HI" and amounts["cash"]) or (kind == "CASH" and (amounts["fund"] or amounts["psn_acct"])):
            raise Refused(400, "INVALID_REQUEST", f"退费类型 {kind} 与退费金额不符")
        fees = presettlement.fees
        settled = {"fund": fees["med_ins_gov_fee"] + fees["med_ins_other_fee"], "psn_acct": fees["med_ins_self_fee"],
                   "cash": fees["med_ins_cash_fee"]}
        if any(presettlement.refunded(part) + amounts[part] > settled[part] for part in settled):
            raise Refused(400, "INVALID_REQUEST", "退费金额超过结算金额（含已退金额）")
        record = {"appRefdSn": refund_sn, "appRefdTime": asked_at.strftime("%Y%m%d%H%M%S"), "content": content,
                  "trxSn": f"RF{_digits(22)}", "refdTime": self.now().astimezone(BEIJING).strftime("%Y%m%d%H%M%S"),
                  **amounts}
        presettlement.refunds.append(record)
        if all(presettlement.refunded(part) >= settled[part] for part in settled if part != "cash"):
            presettlement.status = "REFUNDED"
        log.info("NHSA 6203: %s refunded %d fen (%s)", pay_ord_id, amounts["total"], refund_sn)
        return 200, self._nhsa_refund_view(presettlement, record)

    @staticmethod
    def _nhsa_refund_view(presettlement: Presettlement, record: Mapping[str, Any]) -> dict[str, Any]:
        def yuan(fen: int) -> str:
            return f"{fen // 100}.{fen % 100:02d}"

        return {
            "payOrdId": presettlement.pay_order_id, "appRefdSn": record["appRefdSn"],
            "appRefdTime": record["appRefdTime"], "refdType": record["content"]["refdType"],
            "totlRefdAmt": yuan(record["total"]), "fundRefdAmt": yuan(record["fund"]),
            "psnAcctRefdAmt": yuan(record["psn_acct"]), "cashRefdAmt": yuan(record["cash"]),
            "trxSn": record["trxSn"], "refStatus": "SUCC", "refdTime": record["refdTime"],
            "setlStatus": presettlement.status,
        }

    # -- the admin API -----------------------------------------------------------------------

    def handle_admin(self, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
        args = dict(parse_qsl(query))
        data, problem = admin_json(body)
        if data is None:
            return 400, {"error": problem}
        parts = [unquote(p) for p in path.split("/")[2:]]
        try:
            match method, parts:
                case "POST", ["orders", no, "pay"]:
                    return self._admin_pay(no, data)
                case "GET", ["orders"]:
                    return 200, self._admin_orders(args.get("out_trade_no"))
                case "POST", ["refunds", out_refund_no, "settle"]:
                    refund = self.refunds.get(out_refund_no)
                    if refund is None:
                        return 404, {"error": f"no refund {out_refund_no}"}
                    status = str(data.get("status", "SUCCESS"))
                    if status not in ("SUCCESS", "ABNORMAL", "CLOSED"):
                        return 400, {"error": "status must be SUCCESS, ABNORMAL or CLOSED"}
                    self.settle_refund(refund, status)
                    return 200, self._refund_view(refund)
                case "GET", ["notifications"]:
                    return 200, {"notifications": [n.admin_view() for n in reversed(self.notices)]}
                case "POST", ["notifications", "signtest"]:
                    return self._admin_signtest(data)
                case "POST", ["notifications", no, "repeat"]:
                    return self._admin_repeat(no, data)
                case "POST", ["faults"]:
                    fault = Fault(
                        kind=str(data.get("kind", "500")),
                        count=int(data.get("count", 1)),
                        path=data.get("path"),
                        accept=bool(data.get("accept", False)),
                    )
                    if fault.kind not in ("500", "429", "hang") or fault.count < 1:
                        return 400, {"error": "kind must be 500, 429 or hang, and count >= 1"}
                    self.faults.append(fault)
                    return 200, {"faults": [dataclasses.asdict(f) for f in self.faults]}
                case "POST", ["nhsa", "auth"]:
                    ttl = float(data.get("ttl_seconds", self.settings.pay_auth_ttl_seconds))
                    auth = PayAuth(f"AUTH{_digits(24)}", self.now() + dt.timedelta(seconds=ttl))
                    self.auths[auth.pay_auth_no] = auth
                    return 200, {"pay_auth_no": auth.pay_auth_no, "expires_at": _rfc3339(auth.expires_at)}
                case "POST", ["nhsa", "presettle"]:
                    return self._admin_presettle(data)
                case "POST", ["nhsa", "refund"]:
                    return self.nhsa_refund(data)
                case "POST", ["clock"]:
                    self.offset += dt.timedelta(seconds=float(data.get("advance_seconds", 0)))
                    return 200, {"now": _rfc3339(self.now())}
                case "GET", ["config"]:
                    return 200, self._config_view()
                case "POST", ["config"]:
                    return self._configure(data)
                case "GET", ["credentials"]:
                    return 200, self.credentials()
                case "POST", ["reset"]:
                    self.reset()
                    return 200, {"reset": True}
                case "GET", ["health"]:
                    return 200, {"ok": True, "now": _rfc3339(self.now())}
        except Refused as refused:
            return refused.status, {"error": refused.message, "code": refused.code}
        except (ValueError, TypeError) as err:
            return 400, {"error": str(err)}
        return 404, {"error": f"no admin route {method} {path}"}

    def _admin_pay(self, out_trade_no: str, data: Mapping[str, Any]) -> tuple[int, Any]:
        mixed = self.mixed.get(out_trade_no)
        order = self.orders.get(out_trade_no)
        if mixed is None and order is not None and order.mixed is not None:
            mixed = self.mixed[order.mixed]
        if mixed is not None:
            insurance = str(data.get("insurance", "SUCCESS"))
            cash = str(data.get("cash", data.get("outcome", "SUCCESS")))
            if insurance not in ("SUCCESS", "FAIL") or cash not in ("SUCCESS", "FAIL", "PAYERROR"):
                return 400, {"error": "insurance and cash must be SUCCESS or FAIL"}
            self._pay_mixed(mixed, insurance, "SUCCESS" if cash == "SUCCESS" else "FAIL")
            return 200, mixed.view()
        if order is None:
            return 404, {"error": f"no order {out_trade_no}"}
        outcome = str(data.get("outcome", "SUCCESS"))
        if outcome not in ("SUCCESS", "PAYERROR"):
            return 400, {"error": "outcome must be SUCCESS or PAYERROR"}
        self._pay_order(order, outcome)
        return 200, order.view()

    def _admin_orders(self, out_trade_no: str | None) -> dict[str, Any]:
        def wanted(no: str) -> bool:
            return out_trade_no is None or no == out_trade_no

        orders = []
        for order in self.orders.values():
            if wanted(order.out_trade_no):
                self._expire(order)
                view = order.view() | {"prepay_id": order.prepay_id, "mixed_order": order.mixed}
                view["refunds"] = [self._refund_view(self.refunds[n]) for n in order.refunds]
                orders.append(view)
        return {
            "orders": orders,
            "mixed_orders": [m.view() for m in self.mixed.values() if wanted(m.out_trade_no)],
            "nhsa": {
                "authorizations": [
                    {"pay_auth_no": a.pay_auth_no, "expires_at": _rfc3339(a.expires_at)} for a in self.auths.values()
                ],
                "presettlements": [dataclasses.asdict(p) for p in self.presettlements.values()],
            },
        }

    def _admin_presettle(self, data: Mapping[str, Any]) -> tuple[int, Any]:
        auth = self.auths.get(str(data.get("pay_auth_no", "")))
        if auth is None:
            return 400, {"error": "unknown pay_auth_no"}
        if self.now() > auth.expires_at:
            return 400, {"error": "pay_auth_no expired"}
        fees = {name: int(data.get(name, 0)) for name in _FEES}
        if fees["total_fee"] != sum(fees[name] for name in _FEES[1:]):
            return 400, {"error": "total_fee must be gov + self + other + med_ins_cash"}
        presettlement = Presettlement(f"ORD{_digits(24)}", auth.pay_auth_no, fees)
        self.presettlements[presettlement.pay_order_id] = presettlement
        return 200, dataclasses.asdict(presettlement)

    def _admin_repeat(self, out_trade_no: str, data: Mapping[str, Any]) -> tuple[int, Any]:
        refund_no = data.get("out_refund_no")
        found = next(
            (
                n
                for n in reversed(self.notices)
                if n.kind == "notify"
                and n.out_trade_no == out_trade_no
                and (refund_no is None or n.out_refund_no == refund_no)
            ),
            None,
        )
        if found is None:
            return 404, {"error": f"no notification about {out_trade_no}"}
        duplicate = dataclasses.replace(found, kind="duplicate", schedule=(), attempts=[], outcome="pending")
        self.notices.append(duplicate)
        self.outbox.append(duplicate)
        return 200, duplicate.admin_view()

    def _admin_signtest(self, data: Mapping[str, Any]) -> tuple[int, Any]:
        url = data.get("url")
        body = b""
        no = data.get("out_trade_no")
        latest = next((n for n in reversed(self.notices) if n.kind == "notify" and no in (None, n.out_trade_no)), None)
        if latest is not None:
            url, body = url or latest.url, latest.body
        if not url:
            return 400, {"error": "no url, and no notification to take one from"}
        if not body:
            resource = {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM", "ciphertext": "", "nonce": ""}
            body = orjson.dumps({"id": str(uuid.uuid4()), "event_type": "TRANSACTION.SUCCESS", "resource": resource})
        probe = Notice(str(uuid.uuid4()), "signtest", "SIGNTEST", str(url), body, (), out_trade_no=no)
        self.notices.append(probe)
        self.outbox.append(probe)
        return 200, probe.admin_view()

    def _config_view(self) -> dict[str, Any]:
        s = self.settings
        return {
            "auto_pay_seconds": s.auto_pay_seconds,
            "refund_seconds": s.refund_seconds,
            "notify_time_scale": s.notify_time_scale,
            "notify_retry_seconds": list(s.notify_retry_seconds),
            "mixed_notify_retry_seconds": list(s.mixed_notify_retry_seconds),
            "notify_timeout_seconds": s.notify_timeout_seconds,
            "pay_auth_ttl_seconds": s.pay_auth_ttl_seconds,
            "hang_seconds": s.hang_seconds,
            "deliver_notifications": s.deliver_notifications,
        }

    def _configure(self, data: Mapping[str, Any]) -> tuple[int, Any]:
        s = self.settings
        for name in ("auto_pay_seconds", "refund_seconds"):
            if name in data:
                setattr(s, name, None if data[name] is None else float(data[name]))
        for name in ("notify_time_scale", "notify_timeout_seconds", "pay_auth_ttl_seconds", "hang_seconds"):
            if name in data:
                setattr(s, name, float(data[name]))
        for name in ("notify_retry_seconds", "mixed_notify_retry_seconds"):
            if name in data:
                setattr(s, name, tuple(float(x) for x in data[name]))
        if "deliver_notifications" in data:
            s.deliver_notifications = bool(data["deliver_notifications"])
        return 200, self._config_view()


class GatewayServer(SimulatorApp):
    """The I/O shell: an ASGI app for hypercorn, timers and the notification sender."""

    max_body = MAX_BODY_BYTES

    def __init__(self, gateway: PayGateway, nursery: trio.Nursery, http: httpx.AsyncClient) -> None:
        self.gateway = gateway
        self.nursery = nursery
        self.http = http

    async def too_large(self, send: Send) -> None:
        await self._answer(send, 413, {"code": "PARAM_ERROR", "message": "请求体过大"}, signed=False)

    async def handle(self, request: Request, receive: Receive, send: Send) -> None:
        if request.path.startswith("/_sim/"):
            status, answer = self.gateway.handle_admin(request.method, request.path, request.query, request.body)
            self._start_side_effects()
            await self._answer(send, status, answer, signed=False)
            return
        reply = self.gateway.handle_api(
            request.method, request.target, request.path, request.query, request.headers, request.body
        )
        self._start_side_effects()
        if reply.hang:
            await hang(receive, self.gateway.settings.hang_seconds)
            return
        await self._answer(send, reply.status, reply.body, signed=True)

    async def _answer(self, send: Send, status: int, body: Any, *, signed: bool) -> None:
        payload = orjson.dumps(body) if body is not None else b""
        headers = [(b"request-id", str(uuid.uuid4()).encode())]
        if payload:
            headers.append((b"content-type", b"application/json; charset=utf-8"))
        if signed:
            headers += [(k.lower().encode(), v.encode()) for k, v in self.gateway.signed_headers(payload).items()]
        await respond(send, status, payload, headers)

    def _start_side_effects(self) -> None:
        notices, timers = self.gateway.take_side_effects()
        generation = self.gateway.generation
        for notice in notices:
            self.nursery.start_soon(self._deliver, notice, generation)
        for delay, action in timers:
            self.nursery.start_soon(self._timer, delay, action, generation)

    async def _timer(self, delay: float, action: Callable[[], None], generation: int) -> None:
        await trio.sleep(delay)
        if generation != self.gateway.generation:
            return
        try:
            action()
        except Refused as refused:
            log.info("timer skipped: %s", refused)
        self._start_side_effects()

    async def _deliver(self, notice: Notice, generation: int) -> None:
        """Send one notification, retrying on the schedule until acknowledged or abandoned."""
        waits = (0.0, *notice.schedule)
        for attempt, wait in enumerate(waits, start=1):
            if wait:
                await trio.sleep(wait * self.gateway.settings.notify_time_scale)
            if generation != self.gateway.generation:
                return
            ok = await self._attempt(notice, attempt)
            if notice.kind == "signtest":
                notice.outcome = "accepted" if ok else "rejected"
                if ok:
                    log.warning("%s accepted a SIGNTEST probe: it does not verify signatures", notice.url)
                return
            if ok:
                notice.outcome = "delivered"
                return
            notice.outcome = "retrying" if attempt < len(waits) else "abandoned"
        log.warning("gave up notification %s (%s) to %s", notice.id, notice.event_type, notice.url)

    async def _attempt(self, notice: Notice, attempt: int) -> bool:
        headers = {"Content-Type": "application/json", "User-Agent": "Mozilla/4.0"}
        headers |= self.gateway.signed_headers(notice.body, probe=notice.kind == "signtest")
        entry: dict[str, Any] = {"attempt": attempt, "at": _rfc3339(self.gateway.now())}
        if not self.gateway.settings.deliver_notifications and notice.kind != "signtest":
            entry["error"] = "lost on the way (deliver_notifications is off)"
            notice.attempts.append(entry)
            return False
        limit = self.gateway.settings.notify_timeout_seconds
        started = time.monotonic()
        ok = False
        with trio.move_on_after(limit) as scope:
            try:
                response = await self.http.post(notice.url, content=notice.body, headers=headers, timeout=limit + 1)
                entry["status"] = response.status_code
                ok = response.is_success
            except httpx.HTTPError as err:
                entry["error"] = f"{type(err).__name__}: {err}"
        if scope.cancelled_caught:
            entry["error"] = f"no answer within {limit:g} s"
        entry["elapsed_ms"] = round((time.monotonic() - started) * 1000)
        notice.attempts.append(entry)
        return ok and not scope.cancelled_caught


@dataclasses.dataclass(frozen=True)
class GatewayHandle:
    """Where the simulator listens, and the configuration the merchant side needs."""

    base_url: str
    mchid: str
    appid: str
    merchant_private_key_pem: str = dataclasses.field(repr=False)
    merchant_serial: str
    platform_public_key_pem: str = dataclasses.field(repr=False)
    platform_key_id: str
    apiv3_key: str = dataclasses.field(repr=False)
    merchant_public_key_pem: str = dataclasses.field(repr=False)


async def serve_pay_gateway(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    settings: GatewaySettings | None = None,
    keys: SimKeys | None = None,
    mchid: str = DEFAULT_MCHID,
    appid: str = DEFAULT_APPID,
    merchant_serial: str | None = None,
    platform_key_id: str | None = None,
    apiv3_key: str | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    task_status: trio.TaskStatus[GatewayHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulator until cancelled; ``task_status.started`` gets a :class:`GatewayHandle`.

    Keys and ids not given are generated (``keys``: two RSA-2048 pairs, which takes a moment;
    tests pass one :func:`generate_keys` result to many simulators).
    """
    keys = keys or generate_keys()
    gateway = PayGateway(
        mchid=mchid,
        appid=appid,
        merchant_serial=merchant_serial or secrets.token_hex(20).upper(),
        platform_key_id=platform_key_id or f"PUB_KEY_ID_01{mchid}{_digits(18)}",
        apiv3_key=apiv3_key or _nonce(32),
        keys=keys,
        settings=dataclasses.replace(settings or GatewaySettings()),
        clock=clock,
    )
    if len(gateway.apiv3_key.encode()) != 32:
        raise ValueError("the APIv3 key must be 32 ASCII characters")
    async with httpx.AsyncClient(timeout=10) as http, trio.open_nursery() as nursery:
        server = GatewayServer(gateway, nursery, http)
        url = await serve_app(nursery, server, host, port, logging.getLogger("hypercorn.error"))
        log.info("WeChat Pay simulator at %s (mchid %s)", url, mchid)
        task_status.started(
            GatewayHandle(
                base_url=url,
                mchid=gateway.mchid,
                appid=gateway.appid,
                merchant_private_key_pem=keys.merchant_private_key_pem,
                merchant_serial=gateway.merchant_serial,
                platform_public_key_pem=keys.platform_public_key_pem,
                platform_key_id=gateway.platform_key_id,
                apiv3_key=gateway.apiv3_key,
                merchant_public_key_pem=keys.merchant_public_key_pem,
            )
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m carehub.bots.pay_gateway", description="WeChat Pay API v3 + med-ins mixed-order simulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8092)
    parser.add_argument("--mchid", default=DEFAULT_MCHID)
    parser.add_argument("--appid", default=DEFAULT_APPID)
    parser.add_argument("--apiv3-key", default=None, help="32 ASCII characters (generated if not given)")
    parser.add_argument("--auto-pay-seconds", type=float, default=None, help="orders pay themselves after this")
    parser.add_argument("--refund-seconds", type=float, default=2.0, help="refunds stay PROCESSING this long")
    parser.add_argument("--notify-time-scale", type=float, default=1.0, help="multiplies the retry schedule")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = GatewaySettings(
        auto_pay_seconds=args.auto_pay_seconds,
        refund_seconds=args.refund_seconds,
        notify_time_scale=args.notify_time_scale,
    )

    async def start(nursery: trio.Nursery) -> None:
        handle: GatewayHandle = await nursery.start(
            functools.partial(
                serve_pay_gateway,
                host=args.host,
                port=args.port,
                settings=settings,
                mchid=args.mchid,
                appid=args.appid,
                apiv3_key=args.apiv3_key,
            )
        )
        print(f"WeChat Pay simulator listening on {handle.base_url}", flush=True)
        print(f"merchant configuration (test keys): GET {handle.base_url}/_sim/credentials", flush=True)

    run_until_signalled(start)


if __name__ == "__main__":
    main()

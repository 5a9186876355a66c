"""SMS through Aliyun's SMS service (dysmsapi, version 2017-05-25), signed with V3 signatures.

CareHub sends template messages only (a sign name such as 「智慧医院」 plus an approved template
and its variables); :data:`TEMPLATES` lists the templates it uses. :class:`SmsChannel` is the
adapter: :meth:`~SmsChannel.send` (``SendSms``), :meth:`~SmsChannel.query`
(``QuerySendDetails``); :func:`parse_receipts` reads the delivery reports the provider pushes
(``SmsReport`` HTTP batch push), answered with :data:`RECEIPT_ACCEPTED`.

Errors (each carries the provider's ``code``, its ``message``, the ``request_id`` and whether
sending again later may succeed, ``retryable``)::

    SmsError                 anything the provider refused or a failure to reach it
    ├── SmsRateLimited       per-number flow control (isv.BUSINESS_LIMIT_CONTROL), daily quota;
    │                        QPS throttling is the retryable kind
    ├── SmsBadNumber         not a number the provider sends to (isv.MOBILE_NUMBER_ILLEGAL)
    ├── SmsTemplateError     unknown template or sign, missing or malformed template variables
    ├── SmsProviderDown      isp.SYSTEM_ERROR, HTTP 5xx, unreachable (retryable)
    └── SmsTimeout           no answer: the message may or may not have been accepted (retryable,
                             but only after checking, see :meth:`SmsChannel.send`)

Signature or key problems (``SignatureDoesNotMatch``, ``InvalidAccessKeyId.NotFound``,
``InvalidTimeStamp.Expired``...) and a missing balance (``isv.AMOUNT_NOT_ENOUGH``) raise the base
:class:`SmsError`, not retryable: they need an operator.

Phone numbers and message texts are personal data (verification codes are secrets): they are
never logged in full.

The V3 signature (ACS3-HMAC-SHA256) is :func:`acs3_headers`, a pure function; it reproduces the
worked example of Aliyun's "V3 request structure and signature" page (a test checks it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal, NewType
from urllib.parse import quote, urlsplit

import httpx
import orjson

from .notices import ChannelError, ChannelName, ChannelReceipt, DeliveryReport, OutgoingNotice

log = logging.getLogger("carehub.channels.sms")

API_VERSION = "2017-05-25"
SIGNATURE_ALGORITHM = "ACS3-HMAC-SHA256"
#: Aliyun's SendDate, send_time, report_time... are Beijing time.
BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")
#: The answer to a receipt push that tells the provider not to push it again.
RECEIPT_ACCEPTED = orjson.dumps({"code": 0, "msg": "接收成功"})

BizId = NewType("BizId", str)
TemplateKind = Literal["verification", "notice"]
_VARIABLE = re.compile(r"\$\{(\w+)\}")


@dataclasses.dataclass(frozen=True)
class SmsTemplate:
    """A template approved in the provider's console: its code, kind and text.

    The provider applies stricter flow control to ``verification`` templates (codes) than to
    ``notice`` templates.
    """

    code: str
    kind: TemplateKind
    content: str

    @property
    def variables(self) -> tuple[str, ...]:
        """The ``${name}`` variables, in order of first appearance."""
        return tuple(dict.fromkeys(_VARIABLE.findall(self.content)))

    def missing(self, params: Mapping[str, str]) -> list[str]:
        """Variables of the template that ``params`` does not give."""
        return [name for name in self.variables if name not in params]

    def render(self, params: Mapping[str, str]) -> str:
        """The text the patient reads (without the 【sign】 the provider puts in front)."""
        return _VARIABLE.sub(lambda m: params[m.group(1)], self.content)


#: The templates CareHub sends, by purpose. Each must be approved in the provider's console
#: under the same code and text (and registered in the simulator, carehub/bots/sms_gateway.py).
TEMPLATES: Mapping[str, SmsTemplate] = {
    # sign-in code (issue 3): 5 minutes, single use
    "login_code": SmsTemplate("SMS_CAREHUB_LOGIN", "verification", "您的验证码为${code}，5分钟内有效，请勿泄露。"),
    # generic notice for later issues (clinic cancelled, pickup ready...): name + one sentence
    "notice": SmsTemplate("SMS_CAREHUB_NOTICE", "notice", "${name}您好，${content}如有疑问请咨询医院服务台。"),
}


class SmsError(Exception):
    """The provider refused a request, or could not be reached."""

    default_retryable = False

    def __init__(
        self, code: str, message: str, *, request_id: str | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(f"{code}: {message}" + (f" (RequestId {request_id})" if request_id else ""))
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retryable = self.default_retryable if retryable is None else retryable


class SmsRateLimited(SmsError):
    """Flow control: too many messages to this number (not retryable: its quota resets later,
    tell the patient to wait) or too many requests per second (retryable)."""


class SmsBadNumber(SmsError):
    """The number is not one the provider can send to."""


class SmsTemplateError(SmsError):
    """The template or sign is not approved, or the template variables are missing or malformed."""


class SmsProviderDown(SmsError):
    """The provider failed (isp.SYSTEM_ERROR, HTTP 5xx) or could not be reached."""

    default_retryable = True


class SmsTimeout(SmsError):
    """No answer in time, or the connection broke after the request was sent.

    The provider may have accepted the message: ``SendSms`` is not idempotent, so check with
    :meth:`SmsChannel.query` (the phone, the day, its ``out_id``) before sending again.
    """

    default_retryable = True


_ERRORS: dict[str, tuple[type[SmsError], bool | None]] = {
    "isv.BUSINESS_LIMIT_CONTROL": (SmsRateLimited, False),
    "isv.DAY_LIMIT_CONTROL": (SmsRateLimited, False),
    "isv.OUT_OF_SERVICE": (SmsRateLimited, False),
    "Throttling": (SmsRateLimited, True),
    "Throttling.User": (SmsRateLimited, True),
    "Throttling.Api": (SmsRateLimited, True),
    "isv.MOBILE_NUMBER_ILLEGAL": (SmsBadNumber, None),
    "isv.MOBILE_COUNT_OVER_LIMIT": (SmsBadNumber, None),
    "isv.BLACK_KEY_CONTROL_LIMIT": (SmsBadNumber, None),
    "isv.TEMPLATE_MISSING_PARAMETERS": (SmsTemplateError, None),
    "isv.INVALID_JSON_PARAM": (SmsTemplateError, None),
    "isv.SMS_TEMPLATE_ILLEGAL": (SmsTemplateError, None),
    "isv.SMS_SIGNATURE_ILLEGAL": (SmsTemplateError, None),
    "isv.PARAM_LENGTH_LIMIT": (SmsTemplateError, None),
    "isv.INVALID_PARAMETERS": (SmsTemplateError, None),
    "isp.SYSTEM_ERROR": (SmsProviderDown, None),
    "ServiceUnavailable": (SmsProviderDown, None),
    "InternalError": (SmsProviderDown, None),
}


def _error(code: str, message: str, request_id: str | None, status: int) -> SmsError:
    kind, retryable = _ERRORS.get(code, (SmsProviderDown if status >= 500 else SmsError, None))
    return kind(code, message, request_id=request_id, retryable=retryable)


@dataclasses.dataclass(frozen=True)
class SmsConfig:
    """Where and as whom to send. ``endpoint`` is a base URL (``https://dysmsapi.aliyuncs.com``
    or the simulator's); ``timeout`` bounds one request in seconds."""

    endpoint: str
    access_key_id: str
    access_key_secret: str = dataclasses.field(repr=False)  # kept out of logs and tracebacks
    sign_name: str
    timeout: float = 10.0


@dataclasses.dataclass(frozen=True)
class SendResult:
    """The provider accepted the message: ``biz_id`` finds it in receipts and queries."""

    biz_id: BizId
    request_id: str


class SmsStatus(enum.IntEnum):
    """``SendStatus`` of QuerySendDetails."""

    WAITING = 1
    FAILED = 2
    DELIVERED = 3


@dataclasses.dataclass(frozen=True)
class SmsDetail:
    """One message as ``QuerySendDetails`` reports it."""

    phone: str
    status: SmsStatus
    err_code: str
    template_code: str
    content: str
    send_date: dt.datetime
    receive_date: dt.datetime | None
    out_id: str | None


@dataclasses.dataclass(frozen=True)
class SmsReceipt:
    """One delivery report of an ``SmsReport`` push."""

    phone_number: str
    send_time: dt.datetime
    report_time: dt.datetime
    success: bool
    err_code: str
    err_msg: str
    sms_size: int
    biz_id: BizId
    out_id: str | None


class InvalidReceipt(ValueError):
    """A receipt push body that is not a JSON array of SmsReport items (answer it with 400)."""


def percent_encode(text: str) -> str:
    """RFC 3986 percent-encoding of UTF-8 as Aliyun canonicalizes (only ``A-Za-z0-9-_.~`` kept)."""
    return quote(text, safe="-_.~")


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """Parameters sorted by name, names and values percent-encoded, joined with ``&``."""
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params))


def acs3_headers(
    *,
    action: str,
    host: str,
    query: Mapping[str, str],
    access_key_id: str,
    access_key_secret: str,
    date: dt.datetime,
    nonce: str,
    body: bytes = b"",
    method: str = "POST",
    path: str = "/",
    version: str = API_VERSION,
) -> dict[str, str]:
    """The headers of a request signed with Aliyun's V3 signature (ACS3-HMAC-SHA256).

    The request must carry ``query`` as :func:`canonical_query` encodes it and ``body`` as is.
    Every header returned except ``Authorization`` is signed.
    """
    body_hash = hashlib.sha256(body).hexdigest()
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-content-sha256": body_hash,
        "x-acs-date": date.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce,
        "x-acs-version": version,
    }
    signed = sorted(headers)
    canonical_request = "\n".join(
        [
            method,
            path,
            canonical_query(query.items()),
            "".join(f"{name}:{headers[name].strip()}\n" for name in signed),
            ";".join(signed),
            body_hash,
        ]
    )
    to_sign = f"{SIGNATURE_ALGORITHM}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
    signature = hmac.new(access_key_secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"{SIGNATURE_ALGORITHM} Credential={access_key_id},SignedHeaders={';'.join(signed)},Signature={signature}"
    )
    return headers


def mask_phone(phone: str) -> str:
    """``138****5678``: enough to tell numbers apart in logs."""
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "****"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_nonce() -> str:
    return secrets.token_hex(16)


def _beijing_time(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)


class SmsChannel:
    """Sends template messages through Aliyun SMS. Use :func:`open_sms_channel`, or pass an
    ``httpx.AsyncClient`` whose lifetime the caller owns.

    ``clock`` and ``nonce`` exist for tests; keep the defaults otherwise.
    """

    def __init__(
        self,
        config: SmsConfig,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], dt.datetime] = _utcnow,
        nonce: Callable[[], str] = _new_nonce,
    ) -> None:
        self.config = config
        self._http = http
        self._clock = clock
        self._nonce = nonce
        parts = urlsplit(config.endpoint)
        self._url = f"{parts.scheme}://{parts.netloc}/"
        # httpx sends this Host header for the URL (the port only when it is not the default)
        self._host = httpx.URL(self._url).netloc.decode("ascii")

    async def send(self, phone: str, template_code: str, params: Mapping[str, str], *, out_id: str) -> SendResult:
        """Send one template message to ``phone``; ``out_id`` (ours, at most 256 characters)
        comes back in receipts and queries.

        ``SendSms`` is not idempotent: a request repeated sends a second message (and counts
        against the number's flow control). On :class:`SmsTimeout` the provider may have
        accepted the first one: look for it with :meth:`query` (and wait for its receipt)
        before sending again. :class:`SmsProviderDown` from an unreachable provider means
        nothing was sent; from ``isp.SYSTEM_ERROR`` the provider says to send again.
        """
        query = {
            "PhoneNumbers": phone,
            "SignName": self.config.sign_name,
            "TemplateCode": template_code,
            "TemplateParam": orjson.dumps(dict(params)).decode(),
            "OutId": out_id,
        }
        answer = await self._call("SendSms", query)
        result = SendResult(BizId(str(answer["BizId"])), str(answer.get("RequestId", "")))
        log.info("sent %s to %s, BizId %s, OutId %s", template_code, mask_phone(phone), result.biz_id, out_id)
        return result

    async def query(
        self, phone: str, biz_id: str | None, send_date: dt.date, *, page_size: int = 50
    ) -> list[SmsDetail]:
        """Messages sent to ``phone`` on ``send_date`` (Beijing time, at most 30 days back),
        only those of ``biz_id`` unless it is None; every page is read."""
        details: list[SmsDetail] = []
        page = 1
        while True:
            query = {
                "PhoneNumber": phone,
                "SendDate": send_date.strftime("%Y%m%d"),
                "PageSize": str(page_size),
                "CurrentPage": str(page),
            }
            if biz_id:
                query["BizId"] = biz_id
            answer = await self._call("QuerySendDetails", query)
            items = answer.get("SmsSendDetailDTOs") or []
            if isinstance(items, dict):  # the JSON form of the XML-shaped answer
                items = items.get("SmsSendDetailDTO") or []
            details.extend(_detail(item) for item in items)
            if not items or len(details) >= int(answer.get("TotalCount") or 0):
                return details
            page += 1

    async def _call(self, action: str, query: Mapping[str, str]) -> dict[str, Any]:
        headers = acs3_headers(
            action=action,
            host=self._host,
            query=query,
            access_key_id=self.config.access_key_id,
            access_key_secret=self.config.access_key_secret,
            date=self._clock(),
            nonce=self._nonce(),
        )
        url = self._url + "?" + canonical_query(query.items())
        try:
            response = await self._http.post(url, headers=headers, timeout=self.config.timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as err:
            raise SmsProviderDown("Unreachable", f"{action}: {type(err).__name__}: {err}") from err
        except httpx.TransportError as err:
            raise SmsTimeout("NoAnswer", f"{action}: {type(err).__name__}: {err}") from err
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict) or "Code" not in answer:
            code = f"HTTP{response.status_code}"
            raise _error(code, f"{action}: not an API answer: {response.text[:200]!r}", None, response.status_code)
        if answer["Code"] != "OK":
            error = _error(
                str(answer["Code"]), str(answer.get("Message", "")), answer.get("RequestId"), response.status_code
            )
            log.warning("%s refused: %s", action, error)
            raise error
        return answer


def _detail(item: Mapping[str, Any]) -> SmsDetail:
    receive = item.get("ReceiveDate") or ""
    return SmsDetail(
        phone=str(item.get("PhoneNum", "")),
        status=SmsStatus(int(item["SendStatus"])),
        err_code=str(item.get("ErrCode") or ""),
        template_code=str(item.get("TemplateCode", "")),
        content=str(item.get("Content", "")),
        send_date=_beijing_time(str(item["SendDate"])),
        receive_date=_beijing_time(receive) if receive else None,
        out_id=item.get("OutId") or None,
    )


@asynccontextmanager
async def open_sms_channel(
    config: SmsConfig,
    *,
    clock: Callable[[], dt.datetime] = _utcnow,
    nonce: Callable[[], str] = _new_nonce,
) -> AsyncIterator[SmsChannel]:
    """An :class:`SmsChannel` with its own connection pool, closed on exit."""
    async with httpx.AsyncClient(timeout=config.timeout) as http:
        yield SmsChannel(config, http, clock=clock, nonce=nonce)


def parse_receipts(body: bytes) -> list[SmsReceipt]:
    """The receipts of one ``SmsReport`` push (a JSON array); raises :class:`InvalidReceipt`.

    Answer a push you have stored with :data:`RECEIPT_ACCEPTED`; any other answer makes the
    provider push it again, so storing receipts must tolerate duplicates (key: ``biz_id`` and
    ``phone_number``).
    """
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidReceipt(f"a receipt push must be JSON: {err}") from err
    if not isinstance(items, list):
        raise InvalidReceipt(f"a receipt push must be a JSON array, not {type(items).__name__}")
    receipts = []
    for index, item in enumerate(items):
        try:
            success = item["success"]
            if isinstance(success, str):
                success = success.lower() == "true"
            receipts.append(
                SmsReceipt(
                    phone_number=str(item["phone_number"]),
                    send_time=_beijing_time(item["send_time"]),
                    report_time=_beijing_time(item["report_time"]),
                    success=bool(success),
                    err_code=str(item.get("err_code") or ""),
                    err_msg=str(item.get("err_msg") or ""),
                    sms_size=int(item.get("sms_size") or 1),
                    biz_id=BizId(str(item["biz_id"])),
                    out_id=str(item["out_id"]) if item.get("out_id") else None,
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidReceipt(f"receipt {index} is not an SmsReport item: {type(err).__name__}: {err}") from err
    return receipts


# -- SMS as a notice channel of the message center (MSG-1) -----------------------------------------

#: Aliyun's per-variable length limits for notice templates [unverified: "其他" variables at
#: most 35 characters, a name shorter]; longer values are cut with "…" rather than refused.
NOTICE_NAME_LIMIT = 20
NOTICE_CONTENT_LIMIT = 35
#: ``OutId`` of a notice: the idempotency key, cut to this length (matched the same way).
NOTICE_OUT_ID_LIMIT = 64
_SENTENCE_END = ("。", "！", "？", "!", "?", ".", "…")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def notice_params(notice: OutgoingNotice) -> dict[str, str]:
    """The variables of the notice template (``${name}您好，${content}如有疑问…``) for ``notice``.

    ``content`` is the title and the body as one sentence; a template given in
    ``notice.template`` must use the same two variables.
    """
    content = f"{notice.title}：{notice.body}" if notice.title and notice.body else notice.title or notice.body
    if not content.endswith(_SENTENCE_END):
        content += "。"
    return {
        "name": _cut(notice.name or "尊敬的用户", NOTICE_NAME_LIMIT),
        "content": _cut(content, NOTICE_CONTENT_LIMIT),
    }


def notice_error(error: SmsError) -> ChannelError:
    """What the message center does about an SMS failure (see :mod:`carehub.channels.notices`).

    A bad number, or its per-number quota used up, cannot be helped by retrying this channel
    today: the next channel (``fallback``). QPS throttling, a provider failure or no answer:
    retry. Template and sign problems, keys and balance: neither, an operator must act.
    """
    if isinstance(error, SmsBadNumber):
        return ChannelError(error.code, error.message, fallback=True)
    if isinstance(error, SmsRateLimited):
        if error.retryable:
            return ChannelError(error.code, error.message, retryable=True, retry_after=1.0)
        return ChannelError(error.code, error.message, fallback=True)
    if isinstance(error, SmsProviderDown | SmsTimeout):
        return ChannelError(error.code, error.message, retryable=True)
    return ChannelError(error.code, error.message, retryable=error.retryable)


class SmsNoticeChannel:
    """The message center's SMS channel: one notice to one phone through :class:`SmsChannel`.

    Sends :data:`TEMPLATES` ``["notice"]`` (or ``notice.template`` as the template code) with
    :func:`notice_params` and ``OutId`` = the idempotency key cut to 64 characters.

    The receipt's ``provider_id`` is that ``OutId``, not the ``BizId``: ``QuerySendDetails``
    answers no ``BizId``, so a receipt :meth:`find_sent` recovers could not name it, while the
    ``OutId`` is in all three: the send (ours), the query and the ``SmsReport`` push
    (:func:`sms_report`). The ``BizId`` is in the log line of every send, next to the ``OutId``.

    ``SendSms`` is not idempotent: after a crash, or a ``NoAnswer`` (:class:`SmsTimeout`), the
    message center asks :meth:`find_sent` before sending again.
    """

    name: ChannelName = "sms"

    def __init__(self, sms: SmsChannel, *, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.sms = sms
        self._clock = clock

    async def send_notice(self, address: str, notice: OutgoingNotice, *, idempotency_key: str) -> ChannelReceipt:
        """Send ``notice`` to the phone ``address``; raises :class:`ChannelError`."""
        template = notice.template or TEMPLATES["notice"].code
        out_id = idempotency_key[:NOTICE_OUT_ID_LIMIT]
        try:
            await self.sms.send(address, template, notice_params(notice), out_id=out_id)
        except SmsError as err:
            raise notice_error(err) from err
        return ChannelReceipt(provider_id=out_id)

    async def find_sent(self, address: str, idempotency_key: str) -> ChannelReceipt | None:
        """The message sent to ``address`` with this key today or yesterday (Beijing), or None.

        ``QuerySendDetails`` reads one day at a time; yesterday covers a crash around midnight.
        Raises :class:`ChannelError` when the query fails (not knowing is not "not sent").
        """
        out_id = idempotency_key[:NOTICE_OUT_ID_LIMIT]
        today = self._clock().astimezone(BEIJING).date()
        for day in (today, today - dt.timedelta(days=1)):
            try:
                details = await self.sms.query(address, None, day)
            except SmsError as err:
                raise notice_error(err) from err
            for detail in details:
                if detail.out_id == out_id:
                    return ChannelReceipt(provider_id=out_id, delivered=detail.status is SmsStatus.DELIVERED)
        return None


def sms_report(receipt: SmsReceipt | Mapping[str, Any]) -> DeliveryReport:
    """The message center's :class:`DeliveryReport` of one ``SmsReport`` item (parsed by
    :func:`parse_receipts`, or the raw JSON object; a bad one raises :class:`InvalidReceipt`).

    ``provider_id`` is the ``out_id`` (see :class:`SmsNoticeChannel`), the ``biz_id`` for a
    message sent without one; ``reason`` is the carrier's error code of a failed delivery.
    """
    if not isinstance(receipt, SmsReceipt):
        [receipt] = parse_receipts(orjson.dumps([dict(receipt)]))
    return DeliveryReport(
        channel="sms",
        provider_id=receipt.out_id or receipt.biz_id,
        delivered=receipt.success,
        reason="" if receipt.success else (receipt.err_code or receipt.err_msg),
    )

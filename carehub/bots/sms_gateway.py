"""A simulator of Aliyun's SMS service (dysmsapi, version 2017-05-25) for tests and demos.

It is an outsider like every bot: it shares no code with CareHub's SMS adapter
(:mod:`carehub.channels.sms`) and implements the provider's side of the protocol on its own,
so a test that passes against it proves the adapter speaks the protocol, not that two halves
of one module agree. It holds its own test keys.

The provider's API (``POST /``, parameters in the query string or a form body):

- Authentication: V3 signatures (``Authorization: ACS3-HMAC-SHA256 ...`` with the ``x-acs-*``
  headers) and V2 signatures (``Signature`` parameter, HMAC-SHA1). A signature that does not
  verify, an ``x-acs-date``/``Timestamp`` more than 15 minutes away from the simulator's clock, and
  a nonce seen before are refused with Aliyun-like error JSON (HTTP 400/404).
- ``SendSms``: checks the numbers (mainland mobiles), ``SignName`` against the approved signs,
  ``TemplateCode`` against the registered templates and ``TemplateParam`` (a JSON object of
  strings carrying every variable of the template). Per-number flow control: verification-code
  templates 1/minute, 5/hour, 10/calendar day per sign and number, notices 50/day per template
  and number (configurable); a request over it gets ``isv.BUSINESS_LIMIT_CONTROL``. Each number
  of an accepted request is stored as one message with its rendered text; identical requests
  are never deduplicated (the real service does not either).
- Receipts: a while after acceptance (``receipt_delay``) each message is delivered, or fails
  when its number ends in one of the ``fail_suffixes`` (by default ``4444`` fails with
  ``MOBILE_NOT_ON_SERVICE``). If a receipt URL is set, receipts are pushed there as Aliyun's
  ``SmsReport`` HTTP batch push does (POST of a JSON array); a push that does not get a 2xx
  answer (and, when the answer is JSON with a ``code``, ``code == 0``) is retried after
  ``push_retry_seconds``, then given up.
- ``QuerySendDetails``: messages of one number on one day (Beijing time), optionally of one
  ``BizId``, paged.

The admin API under ``/_sim/`` (no authentication; bind it to localhost):

- ``GET /_sim/messages?phone=&template_code=&limit=`` messages newest first, with their params
  and rendered ``content`` (tests read sign-in codes here).
- ``GET /_sim/pushes`` the receipt push attempts, newest first.
- ``POST /_sim/faults`` ``{"kind": "error"|"unavailable"|"timeout", "count": N, "code":
  "isp.SYSTEM_ERROR", "action": "SendSms"|null, "accept": false}``: the next N API requests that
  pass authentication fail: ``error`` answers the given code (HTTP 200, as Aliyun does for
  business errors), ``unavailable`` answers HTTP 503, ``timeout`` never answers (with
  ``"accept": true`` the request is processed first, as when an answer is lost on the way back).
- ``POST /_sim/clock`` ``{"advance_seconds": S}`` or ``{"now": "2026-11-25T08:00:00Z"}``.
- ``GET``/``POST /_sim/config`` receipt URL, receipt delay, flow limits, failing suffixes, signs,
  ``fail_rate`` (0..1: that share of ``SendSms`` requests answered ``isp.SYSTEM_ERROR``, nothing sent).
- ``POST /_sim/templates`` ``{"code", "kind": "verification"|"notice", "content"}``.
- ``POST /_sim/reset`` back to the state at start.

Run it on its own with ``python -m carehub.bots.sms_gateway --port 8091``; tests start it
in-process with ``await nursery.start(functools.partial(serve_sms_gateway, port=0, ...))``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import itertools
import logging
import math
import random
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, quote

import httpx
import orjson
import trio

from ._asgi import Receive, Request, Send, SimulatorApp, admin_json, hang, respond, run_until_signalled, serve_app

log = logging.getLogger("carehub.bots.sms_gateway")

API_VERSION = "2017-05-25"
HOST_ID = "dysmsapi.aliyuncs.com"
BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")
#: The simulator's own test keys (``--access-key-id``/``--access-key-secret`` change them).
DEFAULT_ACCESS_KEY_ID = "LTAI5tCareHubSmsSimulator"
DEFAULT_ACCESS_KEY_SECRET = "carehub-sms-simulator-test-secret"
DEFAULT_SIGN_NAMES = ("智慧医院",)
#: How far ``x-acs-date``/``Timestamp`` may be from the simulator's clock.
MAX_CLOCK_SKEW = dt.timedelta(minutes=15)
MAX_BODY_BYTES = 256 * 1024
MAX_NUMBERS_PER_REQUEST = 1000
MAX_PENDING_RECEIPTS = 10_000

TemplateKind = Literal["verification", "notice"]
_VARIABLE = re.compile(r"\$\{(\w+)\}")
_MAINLAND_MOBILE = re.compile(r"^(?:\+86|0086|86)?(1[3-9]\d{9})$")


@dataclasses.dataclass(frozen=True)
class SimTemplate:
    """A template as approved in the provider's console."""

    code: str
    kind: TemplateKind
    content: str

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_VARIABLE.findall(self.content)))

    def render(self, params: Mapping[str, str]) -> str:
        return _VARIABLE.sub(lambda m: params[m.group(1)], self.content)


#: The templates approved for the hospital; a copy of CareHub's registry (bots may not import
#: it), kept equal to it by a test.
DEFAULT_TEMPLATES = (
    SimTemplate("SMS_CAREHUB_LOGIN", "verification", "您的验证码为${code}，5分钟内有效，请勿泄露。"),
    SimTemplate("SMS_CAREHUB_NOTICE", "notice", "${name}您好，${content}如有疑问请咨询医院服务台。"),
)

#: Texts of receipt error codes the simulator can be told to produce.
RECEIPT_ERRORS = {
    "DELIVERED": "用户接收成功",
    "MOBILE_NOT_ON_SERVICE": "停机或空号",
    "MOBILE_ACCOUNT_ABNORMAL": "用户账户异常",
    "MOBILE_IN_BLACK": "手机号在黑名单",
    "MOBILE_TERMINAL_ERROR": "手机终端问题",
}


@dataclasses.dataclass
class FlowLimits:
    """Per-number flow control (Aliyun's defaults from older docs; configurable there too)."""

    code_per_minute: int = 1
    code_per_hour: int = 5
    code_per_day: int = 10
    notice_per_day: int = 50


@dataclasses.dataclass
class GatewaySettings:
    """Everything the admin API can change, with the values ``/_sim/reset`` returns to."""

    receipt_url: str | None = None
    receipt_delay: float = 0.2
    sign_names: tuple[str, ...] = DEFAULT_SIGN_NAMES
    templates: tuple[SimTemplate, ...] = DEFAULT_TEMPLATES
    limits: FlowLimits = dataclasses.field(default_factory=FlowLimits)
    #: Number suffix -> receipt error code for numbers whose delivery fails.
    fail_suffixes: dict[str, str] = dataclasses.field(default_factory=lambda: {"4444": "MOBILE_NOT_ON_SERVICE"})
    #: Waits between attempts of one receipt push; its length + 1 is the number of attempts.
    push_retry_seconds: tuple[float, ...] = (0.2, 1.0, 5.0, 30.0, 120.0)
    #: Seconds a ``timeout`` fault keeps the request open (unless the client leaves first).
    hang_seconds: float = 120.0
    max_messages: int = 10_000
    #: share of SendSms requests (after authentication) refused with isp.SYSTEM_ERROR, nothing sent
    fail_rate: float = 0.0


@dataclasses.dataclass
class Message:
    """One SMS to one number."""

    biz_id: str
    request_id: str
    phone: str
    sign_name: str
    template: SimTemplate
    params: dict[str, str]
    content: str
    out_id: str | None
    sent_at: dt.datetime
    status: int = 1  # 1 waiting for a receipt, 2 failed, 3 delivered (QuerySendDetails' SendStatus)
    err_code: str = ""
    received_at: dt.datetime | None = None

    @property
    def national(self) -> str:
        return _national(self.phone)

    @property
    def segments(self) -> int:
        # billed like a Chinese SMS: 70 characters in one, 67 per part when split
        length = len(self.content)
        return 1 if length <= 70 else math.ceil(length / 67)

    def admin_view(self) -> dict[str, Any]:
        return {
            "biz_id": self.biz_id,
            "request_id": self.request_id,
            "phone": self.phone,
            "sign_name": self.sign_name,
            "template_code": self.template.code,
            "params": self.params,
            "content": self.content,
            "out_id": self.out_id,
            "sent_at": _iso(self.sent_at),
            "status": {1: "waiting", 2: "failed", 3: "delivered"}[self.status],
            "err_code": self.err_code,
            "received_at": _iso(self.received_at) if self.received_at else None,
        }

    def receipt(self) -> dict[str, Any]:
        """The ``SmsReport`` item of this message."""
        assert self.received_at is not None
        return {
            "phone_number": self.phone,
            "send_time": _beijing(self.sent_at),
            "report_time": _beijing(self.received_at),
            "success": self.status == 3,
            "err_code": self.err_code,
            "err_msg": RECEIPT_ERRORS.get(self.err_code, self.err_code),
            "sms_size": str(self.segments),
            "biz_id": self.biz_id,
            "out_id": self.out_id or "",
        }

    def detail(self) -> dict[str, Any]:
        """The ``SmsSendDetailDTO`` of this message."""
        return {
            "PhoneNum": self.phone,
            "SendStatus": self.status,
            "ErrCode": self.err_code,
            "TemplateCode": self.template.code,
            "Content": self.content,
            "SendDate": _beijing(self.sent_at),
            "ReceiveDate": _beijing(self.received_at) if self.received_at else "",
            "OutId": self.out_id or "",
        }


@dataclasses.dataclass
class Fault:
    kind: Literal["error", "unavailable", "timeout"]
    count: int
    code: str = "isp.SYSTEM_ERROR"
    action: str | None = None
    accept: bool = False


@dataclasses.dataclass
class Reply:
    """What the shell does with one request: answer, or hang (a ``timeout`` fault)."""

    status: int
    body: dict[str, Any]
    hang: bool = False
    accepted: list[Message] = dataclasses.field(default_factory=list)


class Refused(Exception):
    """A request the provider answers with an error code."""

    def __init__(self, code: str, message: str, status: int = 200) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _beijing(when: dt.datetime) -> str:
    return when.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _national(phone: str) -> str:
    match = _MAINLAND_MOBILE.match(phone.strip())
    return match.group(1) if match else phone.strip()


def _encode(text: str) -> str:
    """RFC 3986 percent-encoding as Aliyun canonicalizes (only ``A-Za-z0-9-_.~`` kept)."""
    return quote(text, safe="-_.~")


def _canonical_query(params: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params))


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


class SmsGateway:
    """The provider's state and rules (no I/O: the ASGI shell below serves it)."""

    def __init__(
        self,
        *,
        access_key_id: str,
        access_key_secret: str,
        settings: GatewaySettings,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self._initial = settings
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._ids = itertools.count(1)
        self.generation = 0
        self.random = random.Random()
        self.reset()

    def reset(self) -> None:
        self.settings = dataclasses.replace(
            self._initial,
            limits=dataclasses.replace(self._initial.limits),
            fail_suffixes=dict(self._initial.fail_suffixes),
        )
        self.templates = {t.code: t for t in self.settings.templates}
        self.offset = dt.timedelta(0)
        self.messages: collections.deque[Message] = collections.deque(maxlen=self.settings.max_messages)
        self.nonces: dict[str, dt.datetime] = {}
        self.sends: dict[tuple[str, str], collections.deque[dt.datetime]] = {}
        self.faults: collections.deque[Fault] = collections.deque()
        self.pushes: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self.pending_receipts: collections.deque[dict[str, Any]] = collections.deque()
        self.generation += 1

    def now(self) -> dt.datetime:
        return self._clock() + self.offset

    def _request_id(self) -> str:
        return str(uuid.uuid4()).upper()

    # -- the provider's API -------------------------------------------------------------------

    def handle_api(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Reply:
        request_id = self._request_id()
        try:
            params = dict(parse_qsl(query, keep_blank_values=True))
            if headers.get("content-type", "").startswith("application/x-www-form-urlencoded") and body:
                params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            if headers.get("authorization", "").startswith("ACS3-HMAC-SHA256"):
                action, version = self._verify_v3(method, path, query, headers, body)
            elif "Signature" in params:
                action, version = self._verify_v2(method, params)
                params = {k: v for k, v in params.items() if k not in _V2_COMMON}
            else:
                raise Refused("MissingAuthorization", "Authorization is mandatory for this action.", 400)
            if version != API_VERSION:
                raise Refused("InvalidVersion", f"Specified parameter Version is not valid: {version}.", 400)
            if action not in ("SendSms", "QuerySendDetails"):
                raise Refused("InvalidAction.NotFound", f"Specified api is not found: {action}.", 404)
            fault = self._take_fault(action)
            if fault is not None and fault.kind == "timeout":
                accepted = self._send(params, request_id) if fault.accept and action == "SendSms" else []
                return Reply(200, {}, hang=True, accepted=accepted)
            if fault is not None and fault.kind == "unavailable":
                raise Refused(
                    "ServiceUnavailable", "The request has failed due to a temporary failure of the server.", 503
                )
            if fault is not None:
                raise Refused(fault.code, "系统异常，请稍后重试" if fault.code == "isp.SYSTEM_ERROR" else fault.code)
            if action == "SendSms" and self.settings.fail_rate > 0 and self.random.random() < self.settings.fail_rate:
                raise Refused("isp.SYSTEM_ERROR", "系统异常，请稍后重试")
            if action == "SendSms":
                accepted = self._send(params, request_id)
                body_out = {"Code": "OK", "Message": "OK", "BizId": accepted[0].biz_id, "RequestId": request_id}
                return Reply(200, body_out, accepted=accepted)
            return Reply(200, self._query(params, request_id))
        except Refused as refused:
            answer: dict[str, Any] = {"RequestId": request_id, "Code": refused.code, "Message": refused.message}
            if refused.status != 200:
                answer["HostId"] = HOST_ID
                answer["Recommend"] = f"https://api.aliyun.com/troubleshoot?q={refused.code}&product=Dysmsapi"
            return Reply(refused.status, answer)

    def _check_fresh(self, stamp: dt.datetime) -> None:
        if abs(self.now() - stamp) > MAX_CLOCK_SKEW:
            raise Refused("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.", 400)

    def _use_nonce(self, nonce: str) -> None:
        now = self.now()
        # a nonce older than twice the allowed skew cannot come back with a fresh date; the dict
        # keeps insertion order, so the oldest are at the front
        while self.nonces:
            oldest = next(iter(self.nonces))
            if now - self.nonces[oldest] <= 2 * MAX_CLOCK_SKEW:
                break
            del self.nonces[oldest]
        if nonce in self.nonces:
            raise Refused("SignatureNonceUsed", "Specified signature nonce was used already.", 400)
        self.nonces[nonce] = now

    def _verify_v3(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[str, str]:
        fields: dict[str, str] = {}
        for part in headers["authorization"][len("ACS3-HMAC-SHA256") :].split(","):
            name, _, value = part.strip().partition("=")
            fields[name] = value
        credential, signed, signature = fields.get("Credential"), fields.get("SignedHeaders"), fields.get("Signature")
        if not credential or not signed or not signature:
            raise Refused("IncompleteSignature", "The request signature does not conform to Aliyun standards.", 400)
        if credential != self.access_key_id:
            raise Refused("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        signed_names = signed.split(";")
        required = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce"}
        required |= {"x-acs-content-sha256"} | {name for name in headers if name.startswith("x-acs-")}
        missing = sorted(required - set(signed_names))
        if missing or any(name not in headers for name in signed_names):
            what = ", ".join(missing) or "a signed header that is absent"
            raise Refused("IncompleteSignature", f"The request signature does not cover: {what}.", 400)
        try:
            stamp = _parse_time(headers["x-acs-date"])
        except ValueError:
            raise Refused(
                "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.", 400
            ) from None
        self._check_fresh(stamp)
        body_hash = hashlib.sha256(body).hexdigest()
        if headers["x-acs-content-sha256"] != body_hash:
            raise Refused("SignatureDoesNotMatch", "x-acs-content-sha256 is not the SHA-256 of the body.", 400)
        canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in sorted(signed_names))
        canonical = "\n".join(
            [
                method,
                path or "/",
                _canonical_query(parse_qsl(query, keep_blank_values=True)),
                canonical_headers,
                ";".join(sorted(signed_names)),
                body_hash,
            ]
        )
        to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
        expected = hmac.new(self.access_key_secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise Refused(
                "SignatureDoesNotMatch",
                f"Specified signature does not match our calculation. The server string to sign is:{to_sign}",
                400,
            )
        self._use_nonce(headers["x-acs-signature-nonce"])
        return headers["x-acs-action"], headers["x-acs-version"]

    def _verify_v2(self, method: str, params: Mapping[str, str]) -> tuple[str, str]:
        for name in ("AccessKeyId", "SignatureNonce", "Timestamp", "Action", "Version"):
            if not params.get(name):
                raise Refused(f"Missing{name}", f"{name} is mandatory for this action.", 400)
        if params.get("SignatureMethod") != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0":
            raise Refused("InvalidSignatureMethod", "Specified signature method is not supported.", 400)
        if params["AccessKeyId"] != self.access_key_id:
            raise Refused("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        try:
            stamp = _parse_time(params["Timestamp"])
        except ValueError:
            raise Refused(
                "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.", 400
            ) from None
        self._check_fresh(stamp)
        query = _canonical_query((k, v) for k, v in params.items() if k != "Signature")
        to_sign = f"{method}&{_encode('/')}&{_encode(query)}"
        digest = hmac.new((self.access_key_secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
        if not hmac.compare_digest(base64.b64encode(digest).decode(), params["Signature"]):
            raise Refused(
                "SignatureDoesNotMatch",
                f"Specified signature is not matched with our calculation. server string to sign is:{to_sign}",
                400,
            )
        self._use_nonce(params["SignatureNonce"])
        return params["Action"], params["Version"]

    def _take_fault(self, action: str) -> Fault | None:
        for fault in self.faults:
            if fault.action in (None, action):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _send(self, params: Mapping[str, str], request_id: str) -> list[Message]:
        for name in ("PhoneNumbers", "SignName", "TemplateCode"):
            if not params.get(name):
                raise Refused(f"Missing{name}", f"{name} is mandatory for this action.", 400)
        phones = [p.strip() for p in params["PhoneNumbers"].split(",")]
        if len(phones) > MAX_NUMBERS_PER_REQUEST:
            raise Refused("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制")
        for phone in phones:
            if not _MAINLAND_MOBILE.match(phone):
                raise Refused("isv.MOBILE_NUMBER_ILLEGAL", f"非法手机号: {phone}")
        sign_name = params["SignName"]
        if sign_name not in self.settings.sign_names:
            raise Refused("isv.SMS_SIGNATURE_ILLEGAL", f"该账号下找不到对应签名: {sign_name}")
        template = self.templates.get(params["TemplateCode"])
        if template is None:
            raise Refused("isv.SMS_TEMPLATE_ILLEGAL", f"该账号下找不到对应模板: {params['TemplateCode']}")
        template_params = self._template_params(template, params.get("TemplateParam", ""))
        out_id = params.get("OutId") or None
        now = self.now()
        self._check_flow(template, sign_name, phones, now)
        biz_id = f"{int(now.timestamp() * 1000)}{next(self._ids) % 100000:05d}^0"
        accepted = []
        for phone in phones:
            content = f"【{sign_name}】{template.render(template_params)}"
            message = Message(biz_id, request_id, phone, sign_name, template, template_params, content, out_id, now)
            self.messages.append(message)
            self.sends.setdefault(self._flow_key(template, sign_name, phone), collections.deque()).append(now)
            accepted.append(message)
        log.info("accepted %s to %d number(s), BizId %s", template.code, len(phones), biz_id)
        return accepted

    def _template_params(self, template: SimTemplate, raw: str) -> dict[str, str]:
        if not template.variables and not raw:
            return {}
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Refused("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值") from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise Refused("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        missing = [name for name in template.variables if name not in value]
        if missing:
            raise Refused("isv.TEMPLATE_MISSING_PARAMETERS", f"模板缺少变量: {', '.join(missing)}")
        return {name: value[name] for name in template.variables}

    @staticmethod
    def _flow_key(template: SimTemplate, sign_name: str, phone: str) -> tuple[str, str]:
        scope = "sign:" + sign_name if template.kind == "verification" else "template:" + template.code
        return scope, _national(phone)

    def _check_flow(self, template: SimTemplate, sign_name: str, phones: list[str], now: dt.datetime) -> None:
        limits = self.settings.limits
        today = now.astimezone(BEIJING).date()
        for phone in phones:
            history = self.sends.get(self._flow_key(template, sign_name, phone), collections.deque())
            while history and now - history[0] > dt.timedelta(days=1):
                history.popleft()
            day = sum(1 for t in history if t.astimezone(BEIJING).date() == today)
            if template.kind == "verification":
                minute = sum(1 for t in history if now - t < dt.timedelta(minutes=1))
                hour = sum(1 for t in history if now - t < dt.timedelta(hours=1))
                if minute >= limits.code_per_minute:
                    raise Refused("isv.BUSINESS_LIMIT_CONTROL", f"触发分钟级流控Permits:{limits.code_per_minute}")
                if hour >= limits.code_per_hour:
                    raise Refused("isv.BUSINESS_LIMIT_CONTROL", f"触发小时级流控Permits:{limits.code_per_hour}")
                if day >= limits.code_per_day:
                    raise Refused("isv.BUSINESS_LIMIT_CONTROL", f"触发天级流控Permits:{limits.code_per_day}")
            elif day >= limits.notice_per_day:
                raise Refused("isv.BUSINESS_LIMIT_CONTROL", f"触发天级流控Permits:{limits.notice_per_day}")

    def _query(self, params: Mapping[str, str], request_id: str) -> dict[str, Any]:
        for name in ("PhoneNumber", "SendDate", "PageSize", "CurrentPage"):
            if not params.get(name):
                raise Refused(f"Missing{name}", f"{name} is mandatory for this action.", 400)
        try:
            day = dt.datetime.strptime(params["SendDate"], "%Y%m%d").date()
            page_size, page = int(params["PageSize"]), int(params["CurrentPage"])
        except ValueError:
            raise Refused("isv.INVALID_PARAMETERS", "参数异常: SendDate, PageSize or CurrentPage") from None
        today = self.now().astimezone(BEIJING).date()
        if not 1 <= page_size <= 50 or page < 1 or not dt.timedelta(0) <= today - day <= dt.timedelta(days=30):
            raise Refused(
                "isv.INVALID_PARAMETERS", "参数异常: PageSize 1-50, CurrentPage >= 1, SendDate within 30 days"
            )
        phone, biz_id = _national(params["PhoneNumber"]), params.get("BizId") or None
        found = [
            m
            for m in reversed(self.messages)
            if m.national == phone
            and m.sent_at.astimezone(BEIJING).date() == day
            and (biz_id is None or m.biz_id == biz_id)
        ]
        chunk = found[(page - 1) * page_size : page * page_size]
        return {
            "Code": "OK",
            "Message": "OK",
            "RequestId": request_id,
            "TotalCount": len(found),
            "SmsSendDetailDTOs": {"SmsSendDetailDTO": [m.detail() for m in chunk]},
        }

    def deliver(self, message: Message) -> None:
        """The handset answered (or the carrier gave up): settle the message, queue its receipt."""
        failing = next(
            (code for suffix, code in self.settings.fail_suffixes.items() if message.phone.endswith(suffix)), None
        )
        message.status, message.err_code = (2, failing) if failing else (3, "DELIVERED")
        message.received_at = self.now()
        if self.settings.receipt_url:
            if len(self.pending_receipts) >= MAX_PENDING_RECEIPTS:
                log.warning("receipt queue full: dropped the receipt of BizId %s", message.biz_id)
                return
            self.pending_receipts.append(message.receipt())

    # -- the admin API ------------------------------------------------------------------------

    def handle_admin(self, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
        args = dict(parse_qsl(query))
        data, problem = admin_json(body)
        if data is None:
            return 400, {"error": problem}
        try:
            match method, path:
                case "GET", "/_sim/messages":
                    limit = int(args.get("limit", "100"))
                    found = [
                        m.admin_view()
                        for m in reversed(self.messages)
                        if ("phone" not in args or m.national == _national(args["phone"]))
                        and ("template_code" not in args or m.template.code == args["template_code"])
                    ]
                    return 200, {"messages": found[:limit]}
                case "GET", "/_sim/pushes":
                    return 200, {"pushes": list(reversed(self.pushes)), "pending": len(self.pending_receipts)}
                case "POST", "/_sim/faults":
                    fault = Fault(
                        kind=data.get("kind", "error"),
                        count=int(data.get("count", 1)),
                        code=str(data.get("code", "isp.SYSTEM_ERROR")),
                        action=data.get("action"),
                        accept=bool(data.get("accept", False)),
                    )
                    if fault.kind not in ("error", "unavailable", "timeout") or fault.count < 1:
                        return 400, {"error": "kind must be error, unavailable or timeout, and count >= 1"}
                    self.faults.append(fault)
                    return 200, {"faults": [dataclasses.asdict(f) for f in self.faults]}
                case "POST", "/_sim/clock":
                    if "now" in data:
                        self.offset = _parse_time(str(data["now"])) - self._clock()
                    self.offset += dt.timedelta(seconds=float(data.get("advance_seconds", 0)))
                    return 200, {"now": _iso(self.now())}
                case "GET", "/_sim/config":
                    return 200, self._config_view()
                case "POST", "/_sim/config":
                    return self._configure(data)
                case "POST", "/_sim/templates":
                    kind = data.get("kind", "notice")
                    if kind not in ("verification", "notice") or not data.get("code") or not data.get("content"):
                        return 400, {"error": "a template needs code, content and kind verification or notice"}
                    template = SimTemplate(str(data["code"]), kind, str(data["content"]))
                    self.templates[template.code] = template
                    return 200, {"code": template.code, "variables": list(template.variables)}
                case "POST", "/_sim/reset":
                    self.reset()
                    return 200, {"reset": True}
                case "GET", "/_sim/health":
                    return 200, {"ok": True, "now": _iso(self.now())}
        except (ValueError, TypeError) as err:
            return 400, {"error": str(err)}
        return 404, {"error": f"no admin route {method} {path}"}

    def _config_view(self) -> dict[str, Any]:
        s = self.settings
        return {
            "receipt_url": s.receipt_url,
            "receipt_delay": s.receipt_delay,
            "sign_names": list(s.sign_names),
            "limits": dataclasses.asdict(s.limits),
            "fail_suffixes": s.fail_suffixes,
            "push_retry_seconds": list(s.push_retry_seconds),
            "fail_rate": s.fail_rate,
            "templates": [dataclasses.asdict(t) for t in self.templates.values()],
        }

    def _configure(self, data: Mapping[str, Any]) -> tuple[int, Any]:
        s = self.settings
        if "receipt_url" in data:
            s.receipt_url = data["receipt_url"] or None
        if "receipt_delay" in data:
            s.receipt_delay = float(data["receipt_delay"])
        if "sign_names" in data:
            s.sign_names = tuple(str(n) for n in data["sign_names"])
        if "limits" in data:
            s.limits = dataclasses.replace(s.limits, **{k: int(v) for k, v in data["limits"].items()})
        if "fail_suffixes" in data:
            s.fail_suffixes = {str(k): str(v) for k, v in data["fail_suffixes"].items()}
        if "push_retry_seconds" in data:
            s.push_retry_seconds = tuple(float(x) for x in data["push_retry_seconds"])
        if "fail_rate" in data:
            rate = float(data["fail_rate"])
            if not 0 <= rate <= 1:
                return 400, {"error": "fail_rate must be between 0 and 1"}
            s.fail_rate = rate
        return 200, self._config_view()


_V2_COMMON = frozenset(
    {
        "AccessKeyId",
        "Action",
        "Format",
        "RegionId",
        "Signature",
        "SignatureMethod",
        "SignatureNonce",
        "SignatureVersion",
        "Timestamp",
        "Version",
    }
)

class GatewayServer(SimulatorApp):
    """The I/O shell: an ASGI app for hypercorn, delivery timers and the receipt pusher."""

    max_body = MAX_BODY_BYTES

    def __init__(self, gateway: SmsGateway, nursery: trio.Nursery, http: httpx.AsyncClient) -> None:
        self.gateway = gateway
        self.nursery = nursery
        self.http = http
        self._wakeup = trio.Event()

    async def too_large(self, send: Send) -> None:
        await self._answer(send, 413, {"Code": "RequestTooLarge", "Message": "request body too large"})

    async def handle(self, request: Request, receive: Receive, send: Send) -> None:
        if request.path.startswith("/_sim/"):
            status, answer = self.gateway.handle_admin(request.method, request.path, request.query, request.body)
            await self._answer(send, status, answer)
            return
        reply = self.gateway.handle_api(request.method, request.path, request.query, request.headers, request.body)
        for message in reply.accepted:
            self.nursery.start_soon(self._deliver_later, message, self.gateway.generation)
        if reply.hang:
            await hang(receive, self.gateway.settings.hang_seconds)
            return
        await self._answer(send, reply.status, reply.body)

    async def _answer(self, send: Send, status: int, body: Any) -> None:
        await respond(send, status, orjson.dumps(body), [(b"content-type", b"application/json;charset=utf-8")])

    async def _deliver_later(self, message: Message, generation: int) -> None:
        await trio.sleep(self.gateway.settings.receipt_delay)
        if generation != self.gateway.generation:
            return  # reset since: the message is gone
        self.gateway.deliver(message)
        self._wakeup.set()

    async def push_receipts(self) -> None:
        """Push queued receipts in batches of up to 100; retry a batch that was not accepted."""
        gateway = self.gateway
        attempt = 0
        while True:
            url = gateway.settings.receipt_url
            if not gateway.pending_receipts or not url:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
                continue
            batch = list(itertools.islice(gateway.pending_receipts, 100))
            generation = gateway.generation
            attempt += 1
            entry: dict[str, Any] = {"at": _iso(gateway.now()), "url": url, "count": len(batch), "attempt": attempt}
            accepted = False
            try:
                response = await self.http.post(
                    url, content=orjson.dumps(batch), headers={"content-type": "application/json"}
                )
                entry["status"] = response.status_code
                accepted = response.is_success and _answer_code(response.content) in (None, 0)
            except httpx.HTTPError as err:
                entry["error"] = f"{type(err).__name__}: {err}"
            delays = gateway.settings.push_retry_seconds
            if generation != gateway.generation:
                attempt = 0  # reset while pushing: the batch is gone
                continue
            if accepted or attempt > len(delays):
                entry["outcome"] = "accepted" if accepted else "abandoned"
                for _ in batch:
                    gateway.pending_receipts.popleft()
                attempt = 0
                if not accepted:
                    log.warning("gave up pushing %d receipt(s) to %s", len(batch), url)
            else:
                entry["outcome"] = "retry"
            gateway.pushes.append(entry)
            if entry["outcome"] == "retry":
                await trio.sleep(delays[attempt - 1])


def _answer_code(body: bytes) -> int | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value.get("code") if isinstance(value, dict) else None


async def serve_sms_gateway(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    access_key_id: str = DEFAULT_ACCESS_KEY_ID,
    access_key_secret: str = DEFAULT_ACCESS_KEY_SECRET,
    receipt_url: str | None = None,
    settings: GatewaySettings | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulator until cancelled; ``task_status.started`` gets its base URL.

    ``receipt_url`` overrides ``settings.receipt_url``; ``clock`` returns the simulator's "now"
    (an aware datetime; the admin API can move it further).
    """
    settings = dataclasses.replace(settings or GatewaySettings())
    if receipt_url is not None:
        settings.receipt_url = receipt_url
    gateway = SmsGateway(
        access_key_id=access_key_id, access_key_secret=access_key_secret, settings=settings, clock=clock
    )
    async with httpx.AsyncClient(timeout=10) as http, trio.open_nursery() as nursery:
        server = GatewayServer(gateway, nursery, http)
        nursery.start_soon(server.push_receipts)
        url = await serve_app(nursery, server, host, port, logging.getLogger("hypercorn.error"))
        log.info("SMS gateway simulator at %s (receipts to %s)", url, settings.receipt_url or "nowhere")
        task_status.started(url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m carehub.bots.sms_gateway", description="Aliyun SMS (dysmsapi) simulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--access-key-id", default=DEFAULT_ACCESS_KEY_ID)
    parser.add_argument("--access-key-secret", default=DEFAULT_ACCESS_KEY_SECRET)
    parser.add_argument("--receipt-url", default=None, help="where to push SmsReport receipts")
    parser.add_argument("--receipt-delay", type=float, default=1.0, help="seconds until a message is delivered")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def start(nursery: trio.Nursery) -> None:
        url = await nursery.start(
            functools.partial(
                serve_sms_gateway,
                host=args.host,
                port=args.port,
                access_key_id=args.access_key_id,
                access_key_secret=args.access_key_secret,
                receipt_url=args.receipt_url,
                settings=GatewaySettings(receipt_delay=args.receipt_delay),
            )
        )
        print(f"SMS gateway simulator listening on {url}", flush=True)

    run_until_signalled(start)


if __name__ == "__main__":
    main()

"""Notices through an Alipay life account (支付宝生活号) template message, a :class:`NoticeChannel`.

The open platform's gateway (``POST https://openapi.alipay.com/gateway.do``, form-encoded): every
request carries the common parameters ``app_id``, ``method``, ``format=JSON``, ``charset=utf-8``,
``sign_type=RSA2``, ``timestamp`` (Beijing time, ``yyyy-MM-dd HH:mm:ss``), ``version=1.0`` and the
method's own parameters as one JSON text, ``biz_content``; ``sign`` is the RSA2 signature of them
all (:func:`sign_content`, :func:`rsa2_sign`). The answer is
``{"<method with _ for .>_response": {"code": "10000", "msg": "Success", ...}, "sign": "..."}``,
``sign`` being the platform's RSA2 signature over the exact text of the inner object
(:func:`response_content` finds it byte for byte; :func:`rsa2_verify` checks it with the Alipay
public key).

What is sent: ``alipay.open.public.message.single.send`` (a template message to one follower of
the life account)::

    {"to_user_id": "2088...",                     # the Alipay user id (16 digits, 2088...)
     "out_biz_no": "<idempotency key, ≤ 64>",     # ours, see below [unverified: not documented]
     "template": {"template_id": "...",
                  "context": {"head_color": "#1677FF",
                              "url": "https://<public base>/h5/...",   # absolute deep link
                              "action_name": "查看详情",
                              "first": {"value": "张*三您好"},          # only with a name
                              "keyword1": {"value": <title>},
                              "keyword2": {"value": <body>}}}}

``to_user_id`` and ``template.template_id`` / ``template.context`` with ``head_color``, ``url``,
``action_name``, ``first``, ``keyword1..n``, ``remark`` are the field names of Alipay's SDK models
and of public examples of this method; the open platform's own page for it could not be read, so
the exact rules (lengths, which keys a template needs) are [unverified]. The success answer
carries ``code``/``msg``; ``msg_id`` in it is [unverified] (the simulator sends one; without it
the receipt's ``provider_id`` is our ``out_biz_no``).

**Idempotency.** The method has no idempotency key: a repeated request is a second message. So
the message center writes a receipt before the attempt and, after a crash between an attempt and
its outcome (or after :class:`ChannelError` ``NoAnswer``, a request whose answer was lost), asks
:meth:`AlipayChannel.find_sent` before sending again. To make that answerable the adapter puts the
idempotency key (cut to 64 characters) into the message as ``out_biz_no``, and ``find_sent``
asks ``alipay.open.public.message.query`` ``{"to_user_id", "out_biz_no"}`` -> ``{"messages":
[{"msg_id", "out_biz_no", ...}]}``. Both the field and the query method are [unverified]: they are
what the simulator (carehub/bots/alipay_sim.py) implements. A gateway that does not know the
method answers ``40002 isv.invalid-method``: ``find_sent`` then returns None (the provider cannot
say), as the :class:`NoticeChannel` contract allows.

**Errors** (all :class:`ChannelError`; ``code`` is the ``sub_code`` when there is one):

- ``10000`` success.
- ``20000`` service unavailable (``isp.unknow-error``): retryable.
- ``40004`` business failure: the user does not follow the life account or unfollowed it
  (:data:`NOT_FOLLOWING`): ``fallback``; rate limited (:data:`RATE_LIMITED`) or an ``isp.*``
  sub-code: retryable; any other (unknown template...): neither. The sub-code names are
  [unverified].
- ``40001`` missing / ``40002`` invalid parameters (bad signature, unknown app id), ``20001``,
  ``40006`` permissions: neither (an operator must fix the configuration).
- HTTP 5xx, unreachable, no answer in time: retryable (no answer: ``NoAnswer``, check
  ``find_sent`` first).
- An answer whose signature does not verify (or a success answer without one): not retryable,
  ``invalid-response-signature``: someone between us and Alipay, or the wrong Alipay public key.

User ids are personal data: logs show them masked (:func:`mask_user_id`).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urljoin

import httpx
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .notices import ChannelError, ChannelName, ChannelReceipt, OutgoingNotice

log = logging.getLogger("carehub.channels.alipay")

SEND_METHOD = "alipay.open.public.message.single.send"
#: [unverified]: the query the simulator answers for :meth:`AlipayChannel.find_sent`.
QUERY_METHOD = "alipay.open.public.message.query"
#: Alipay's timestamps are Beijing time.
BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")
HEAD_COLOR = "#1677FF"
ACTION_NAME = "查看详情"
#: The longest ``out_biz_no`` (the usual limit of Alipay's ``out_*_no`` fields).
MAX_OUT_BIZ_NO = 64

#: 40004 sub-codes of a user this life account cannot reach [unverified names].
NOT_FOLLOWING = frozenset({"USER_NOT_FOLLOW", "USER_UNFOLLOWED", "isv.user-not-follow", "isv.user-unfollowed"})
#: 40004 sub-codes of flow control (per second / minute) [unverified names].
RATE_LIMITED = frozenset({"isp.flow-limit", "aop.ACCESS_LIMITED", "MSG_SEND_FREQUENCY_LIMIT"})
#: 40002 sub-code of a method the gateway does not know.
INVALID_METHOD = "isv.invalid-method"


@dataclasses.dataclass(frozen=True)
class AlipayConfig:
    """As whom and where to send.

    ``gateway_url``: ``https://openapi.alipay.com/gateway.do``, or a base URL such as the
    simulator's (``/gateway.do`` is added when the URL does not end in it). The keys are PEM
    (or the bare base64 the open platform's console shows): the app's RSA private key, and the
    Alipay public key of the app (public-key mode; certificate mode is not supported).
    ``public_base_url`` makes notice links absolute; ``timeout`` bounds one request in seconds.
    """

    gateway_url: str
    app_id: str
    app_private_key_pem: str = dataclasses.field(repr=False)
    alipay_public_key_pem: str = dataclasses.field(repr=False)
    default_template_id: str
    public_base_url: str
    timeout: float = 10.0


# -- RSA2, pure functions ---------------------------------------------------------------------


def sign_content(params: Mapping[str, str]) -> str:
    """The string RSA2 signs for a request: ``sign`` and empty values dropped, keys sorted
    (ASCII), ``key=value`` joined with ``&``, values raw (not URL-encoded)."""
    return "&".join(f"{key}={value}" for key, value in sorted(params.items()) if key != "sign" and value)


def load_private_key(text: str) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM (PKCS#8 or PKCS#1) or the console's bare base64 (PKCS#8)."""
    pem = text if "-----BEGIN" in text else _wrap_pem(text, "PRIVATE KEY")
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the app private key must be an RSA key")
    return key


def load_public_key(text: str) -> rsa.RSAPublicKey:
    """An RSA public key from PEM or the console's bare base64 (X.509 SubjectPublicKeyInfo)."""
    pem = text if "-----BEGIN" in text else _wrap_pem(text, "PUBLIC KEY")
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the Alipay public key must be an RSA key")
    return key


def _wrap_pem(text: str, label: str) -> str:
    body = "".join(text.split())
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""])


def rsa2_sign(content: str, private_key: rsa.RSAPrivateKey) -> str:
    """Base64 of SHA256withRSA (PKCS#1 v1.5) over the UTF-8 bytes of ``content``."""
    signature = private_key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def rsa2_verify(content: str, signature: str, public_key: rsa.RSAPublicKey) -> bool:
    """Whether ``signature`` (base64) is the SHA256withRSA signature of ``content``."""
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def response_key(method: str) -> str:
    """``alipay.open.public.message.single.send`` -> ``alipay_open_public_message_single_send_response``."""
    return method.replace(".", "_") + "_response"


def response_content(body: str, key: str) -> str | None:
    """The exact text of the value of ``key`` in an answer (what the platform signed), or None.

    Found as Alipay's SDKs do: the first ``"key"`` followed by ``:``, then one JSON value read
    from there (a JSON decoder tells where it ends, so nothing is re-serialized).
    """
    needle = f'"{key}"'
    start = body.find(needle)
    while start != -1:
        colon = start + len(needle)
        while colon < len(body) and body[colon] in " \t\r\n":
            colon += 1
        if colon < len(body) and body[colon] == ":":
            begin = colon + 1
            while begin < len(body) and body[begin] in " \t\r\n":
                begin += 1
            try:
                _, end = json.JSONDecoder().raw_decode(body, begin)
            except json.JSONDecodeError:
                return None
            return body[begin:end]
        start = body.find(needle, start + 1)
    return None


def mask_user_id(user_id: str) -> str:
    """``2088****1234``: enough to tell users apart in logs."""
    return user_id[:4] + "****" + user_id[-4:] if len(user_id) >= 10 else "****"


# -- the adapter ------------------------------------------------------------------------------


def _beijing_now() -> dt.datetime:
    return dt.datetime.now(BEIJING)


class AlipayChannel:
    """Sends life-account template messages; use :func:`open_alipay_channel`, or pass an
    ``httpx.AsyncClient`` whose lifetime the caller owns. ``clock`` exists for tests."""

    name: ChannelName = "alipay"

    def __init__(
        self, config: AlipayConfig, http: httpx.AsyncClient, *, clock: Callable[[], dt.datetime] = _beijing_now
    ) -> None:
        self.config = config
        self._http = http
        self._clock = clock
        self._private_key = load_private_key(config.app_private_key_pem)
        self._alipay_key = load_public_key(config.alipay_public_key_pem)
        url = config.gateway_url
        self._url = url if url.endswith("gateway.do") else url.rstrip("/") + "/gateway.do"

    def biz_content(self, address: str, notice: OutgoingNotice, idempotency_key: str) -> dict[str, Any]:
        """The ``biz_content`` of the template message for ``notice`` (see the module docstring)."""
        context: dict[str, Any] = {
            "head_color": HEAD_COLOR,
            "url": urljoin(self.config.public_base_url, notice.link or "/"),
            "action_name": ACTION_NAME,
        }
        if notice.name:
            context["first"] = {"value": f"{notice.name}您好"}
        context["keyword1"] = {"value": notice.title}
        context["keyword2"] = {"value": notice.body}
        return {
            "to_user_id": address,
            "out_biz_no": idempotency_key[:MAX_OUT_BIZ_NO],
            "template": {"template_id": notice.template or self.config.default_template_id, "context": context},
        }

    async def send_notice(self, address: str, notice: OutgoingNotice, *, idempotency_key: str) -> ChannelReceipt:
        """Send ``notice`` to the Alipay user ``address``; raises :class:`ChannelError`.

        Not idempotent at the provider: on ``NoAnswer`` ask :meth:`find_sent` before again.
        """
        biz = self.biz_content(address, notice, idempotency_key)
        answer = await self._call(SEND_METHOD, biz)
        msg_id = str(answer.get("msg_id") or biz["out_biz_no"])
        log.info("sent %s to %s, msg_id %s", notice.kind, mask_user_id(address), msg_id)
        return ChannelReceipt(provider_id=msg_id)

    async def find_sent(self, address: str, idempotency_key: str) -> ChannelReceipt | None:
        """The message sent to ``address`` under ``idempotency_key``, if the platform has it.

        None when it has none, or when the gateway does not know the query method (cannot say).
        Raises :class:`ChannelError` when the query itself failed: not knowing is not "not sent".
        """
        out_biz_no = idempotency_key[:MAX_OUT_BIZ_NO]
        try:
            answer = await self._call(QUERY_METHOD, {"to_user_id": address, "out_biz_no": out_biz_no})
        except ChannelError as err:
            if err.code == INVALID_METHOD:
                log.warning("the gateway does not know %s: cannot tell whether %s was sent", QUERY_METHOD, out_biz_no)
                return None
            raise
        for message in answer.get("messages") or []:
            if isinstance(message, dict) and message.get("out_biz_no") == out_biz_no:
                return ChannelReceipt(provider_id=str(message.get("msg_id") or out_biz_no))
        return None

    def signed_params(self, method: str, biz: Mapping[str, Any]) -> dict[str, str]:
        """The form of one gateway request, ``sign`` included."""
        params = {
            "app_id": self.config.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": self._clock().astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
            "biz_content": orjson.dumps(dict(biz)).decode("utf-8"),
        }
        params["sign"] = rsa2_sign(sign_content(params), self._private_key)
        return params

    async def _call(self, method: str, biz: Mapping[str, Any]) -> dict[str, Any]:
        params = self.signed_params(method, biz)
        try:
            response = await self._http.post(self._url, data=params, timeout=self.config.timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as err:
            raise ChannelError("Unreachable", f"{method}: {type(err).__name__}: {err}", retryable=True) from err
        except httpx.TransportError as err:
            # the request may have arrived: the caller checks find_sent before sending again
            raise ChannelError("NoAnswer", f"{method}: {type(err).__name__}: {err}", retryable=True) from err
        if response.status_code >= 500:
            raise ChannelError(f"HTTP{response.status_code}", f"{method}: {response.text[:200]!r}", retryable=True)
        answer = self._verified(method, response)
        code = str(answer.get("code", ""))
        if code == "10000":
            return answer
        error = _error(
            code, str(answer.get("msg", "")), str(answer.get("sub_code") or ""), str(answer.get("sub_msg") or "")
        )
        log.warning("%s refused: %s", method, error)
        raise error

    def _verified(self, method: str, response: httpx.Response) -> dict[str, Any]:
        """The inner answer, its signature checked; raises :class:`ChannelError`."""
        text = response.content.decode("utf-8", "replace")
        try:
            whole = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            whole = None
        key = response_key(method)
        if isinstance(whole, dict) and key not in whole and "error_response" in whole:
            key = "error_response"  # the gateway's answer to a request it could not route
        inner = whole.get(key) if isinstance(whole, dict) else None
        content = response_content(text, key) if isinstance(inner, dict) else None
        if not isinstance(whole, dict) or not isinstance(inner, dict) or content is None:
            raise ChannelError(f"HTTP{response.status_code}", f"{method}: not a gateway answer: {text[:200]!r}")
        signature = whole.get("sign")
        if not signature:
            if str(inner.get("code")) == "10000":
                raise ChannelError("invalid-response-signature", f"{method}: a success answer without a signature")
            return inner  # some gateway errors (bad app id, bad request signature) come unsigned
        if not isinstance(signature, str) or not rsa2_verify(content, signature, self._alipay_key):
            raise ChannelError(
                "invalid-response-signature",
                f"{method}: the answer's signature does not verify with the Alipay public key",
            )
        return inner


def _error(code: str, msg: str, sub_code: str, sub_msg: str) -> ChannelError:
    """The :class:`ChannelError` for a gateway answer other than 10000."""
    words = f"{code} {msg}" + (f": {sub_msg}" if sub_msg else "")
    name = sub_code or code
    if code == "20000":
        return ChannelError(name, words, retryable=True)
    if code == "40004" and sub_code in NOT_FOLLOWING:
        return ChannelError(name, words, fallback=True)
    if code == "40004" and (sub_code in RATE_LIMITED or sub_code.startswith("isp.")):
        return ChannelError(name, words, retryable=True, retry_after=1.0 if sub_code in RATE_LIMITED else None)
    return ChannelError(name, words)


@asynccontextmanager
async def open_alipay_channel(
    config: AlipayConfig, *, clock: Callable[[], dt.datetime] = _beijing_now
) -> AsyncIterator[AlipayChannel]:
    """An :class:`AlipayChannel` with its own connection pool, closed on exit."""
    async with httpx.AsyncClient(timeout=config.timeout) as http:
        yield AlipayChannel(config, http, clock=clock)

"""Notices through WeChat: Official Account template messages and mini-program subscribe messages.

:class:`WeChatChannel` is the :class:`~carehub.channels.notices.NoticeChannel` named ``"wechat"``;
the address of a person is their openid under the configured app. It speaks WeChat's own API
(see /work/shared/reference/INTEGRATIONS.md, section 3):

- ``POST /cgi-bin/stable_token`` ``{grant_type: client_credential, appid, secret, force_refresh}``
  gives the access token every call carries (``?access_token=``). The stable token is kept until
  shortly before its ``expires_in`` (:data:`TOKEN_MARGIN`), then renewed with ``force_refresh:
  true`` (the normal mode would answer the same token until it expires), and renewed so too
  when a send is refused for its token (40001 not the latest, 40014 invalid, 42001 expired);
  that send is then tried once more. Concurrent sends share one refresh
  (a :class:`trio.Lock`): a send that waited for the lock finds the token another one fetched.
- ``POST /cgi-bin/message/template/send`` (:meth:`WeChatChannel.send_notice`): one template
  message ``{touser, template_id, url, miniprogram?, client_msg_id, data}``; WeChat answers
  ``msgid`` at once and pushes the outcome later as the XML event ``TEMPLATESENDJOBFINISH``
  (:func:`parse_event`). ``client_msg_id`` is the notifier's ``idempotency_key``: WeChat sends
  one message per (openid, client_msg_id) within 10 minutes, so a retry after a timeout does
  not reach the patient twice.
- ``POST /cgi-bin/message/subscribe/send`` (:meth:`WeChatChannel.send_subscribe`): a
  mini-program subscribe message, allowed once per grant the user gave (43101 when none left).

Since 2023-05 WeChat shows at most 20 characters of a template value (and subscribe messages
refuse longer ``thing`` values), so every value is cut to :data:`MAX_VALUE_CHARS` here: the
patient sees the start of the title and body, and the deep link opens the whole notice.

Provider errors become :class:`~carehub.channels.notices.ChannelError` (``code`` is the errcode
as text); :data:`ERRCODES` says which are ``retryable`` and which mean ``fallback`` (this channel
will not reach the person). Event pushes are signed with the token configured in the Official
Account's console: :func:`check_signature`. Only the plaintext mode of event pushes is read (not
the AES "safe mode").

openids are personal data: logs show only their first characters (:func:`mask_openid`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import trio

from .notices import ChannelError, ChannelName, ChannelReceipt, DeliveryReport, OutgoingNotice

log = logging.getLogger("carehub.channels.wechat")

#: WeChat's times are Beijing time (template ``time`` values are shown as written).
BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")
#: WeChat shows (template) or accepts (subscribe ``thing``) at most this many characters a value.
MAX_VALUE_CHARS = 20
#: A token is refreshed this long before WeChat says it expires (seconds; at most a tenth of its life).
TOKEN_MARGIN = 300.0
#: WeChat gives no wait with 45011 (per-minute limit): try again when the minute has passed.
PER_MINUTE_RETRY_AFTER = 60.0
#: The answer to an event push that tells WeChat not to push it again.
EVENT_ACCEPTED = b"success"
#: The largest event push :func:`parse_event` reads.
MAX_EVENT_BYTES = 64 * 1024
#: The template keywords a notice fills (the templates CareHub uses in the console have these).
TITLE_KEY, BODY_KEY, TIME_KEY = "thing1", "thing2", "time3"

#: errcodes that mean the access token must be fetched again (then the call is tried once more).
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
#: errcodes of the token endpoint that no retry heals: the appid, secret or IP whitelist is wrong.
CREDENTIAL_ERRCODES = frozenset({40001, 40002, 40013, 40125, 40164, 41002, 41004, 40243})


@dataclasses.dataclass(frozen=True)
class _ErrorKind:
    retryable: bool = False
    fallback: bool = False
    retry_after: float | None = None


#: How the notifier treats a send WeChat refused; any other errcode is neither (ops look at it).
ERRCODES: Mapping[int, _ErrorKind] = {
    -1: _ErrorKind(retryable=True),  # system busy
    45011: _ErrorKind(retryable=True, retry_after=PER_MINUTE_RETRY_AFTER),  # per-minute limit
    45009: _ErrorKind(fallback=True),  # daily quota used up: another channel today
    43004: _ErrorKind(fallback=True),  # the person does not follow the Official Account
    43101: _ErrorKind(fallback=True),  # refused / no subscription grant left
    40003: _ErrorKind(fallback=True),  # not an openid of this app
    # 47003 bad template data, 40037 bad template_id, 41030 bad page: configuration, neither
    # 40001/40014/42001 left after a fresh token: the token is not settling yet, retry later
    40001: _ErrorKind(retryable=True),
    40014: _ErrorKind(retryable=True),
    42001: _ErrorKind(retryable=True),
}


@dataclasses.dataclass(frozen=True)
class WeChatConfig:
    """Where and as which app to send.

    ``base_url`` is ``https://api.weixin.qq.com`` or the simulator's; ``default_template_id`` is
    the template of a notice that names none; ``public_base_url`` makes a notice's deep link
    (``/h5/bills?bill=B1``) absolute; with ``miniprogram_appid`` template messages open that
    mini program at the link's path instead (the ``url`` stays for clients without it).
    ``timeout`` bounds one request in seconds.
    """

    base_url: str
    appid: str
    secret: str = dataclasses.field(repr=False)  # kept out of logs and tracebacks
    default_template_id: str
    public_base_url: str
    miniprogram_appid: str | None = None
    timeout: float = 10.0


class InvalidEvent(ValueError):
    """An event push that is not WeChat's XML (answer it with 400)."""


def mask_openid(openid: str) -> str:
    """``oAbC12…``: enough to tell people apart in logs."""
    return openid[:6] + "…" if len(openid) > 6 else "…"


def cut(value: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``value`` as WeChat shows it: its first ``limit`` characters."""
    return value[:limit]


def sign_event(token: str, timestamp: str, nonce: str) -> str:
    """WeChat's signature of an event push: SHA-1 of the sorted token, timestamp and nonce."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def check_signature(token: str, timestamp: str, nonce: str, signature: str) -> bool:
    """Whether a push (or the server-URL check, ``GET ?signature=&timestamp=&nonce=&echostr=``)
    comes from WeChat: ``signature`` of the query matches the token set in the console."""
    return hmac.compare_digest(sign_event(token, timestamp, nonce), signature.lower())


def _text(root: ET.Element, name: str) -> str:
    return (root.findtext(name) or "").strip()


def parse_event(body: bytes) -> DeliveryReport | None:
    """The delivery report in an event push, None for events that are not one.

    Reads ``TEMPLATESENDJOBFINISH`` (``Status`` ``success``, ``failed:user block``, ``failed:
    system failed``) and the mini program's ``subscribe_msg_sent_event`` (first item of its
    list; ``ErrorCode`` 0 is delivered). Raises :class:`InvalidEvent` for a body that is not an
    ``<xml>`` document; a DOCTYPE is refused (no entity can expand). Answer a push you have
    stored with :data:`EVENT_ACCEPTED`; WeChat retries others, so storing reports must tolerate
    duplicates (key: ``provider_id``).
    """
    if len(body) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"an event push is at most {MAX_EVENT_BYTES} bytes")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise InvalidEvent("an event push carries no DOCTYPE or entity declarations")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as err:
        raise InvalidEvent(f"an event push must be XML: {err}") from err
    if root.tag != "xml":
        raise InvalidEvent(f"an event push is an <xml> document, not <{root.tag}>")
    if _text(root, "MsgType") != "event":
        return None
    event = _text(root, "Event")
    if event == "TEMPLATESENDJOBFINISH":
        msgid, status = _text(root, "MsgID"), _text(root, "Status")
        if not msgid or not status:
            raise InvalidEvent("TEMPLATESENDJOBFINISH without MsgID or Status")
        return DeliveryReport(channel="wechat", provider_id=msgid, delivered=status == "success", reason=status)
    if event == "subscribe_msg_sent_event":
        item = root.find("SubscribeMsgSentEvent/List")
        if item is None or not _text(item, "MsgID"):
            raise InvalidEvent("subscribe_msg_sent_event without a List item carrying MsgID")
        code, status = _text(item, "ErrorCode"), _text(item, "ErrorStatus")
        return DeliveryReport(
            channel="wechat", provider_id=_text(item, "MsgID"), delivered=code == "0", reason=status or code
        )
    return None


def _errcode(answer: Mapping[str, Any]) -> int:
    try:
        return int(answer.get("errcode") or 0)
    except (TypeError, ValueError):
        raise ChannelError("errcode", f"not an errcode: {answer.get('errcode')!r}", retryable=True) from None


def _msgid(answer: Mapping[str, Any]) -> str:
    msgid = answer.get("msgid")
    if msgid is None or msgid == "":
        raise ChannelError("msgid", f"an answer without msgid: {dict(answer)!r}"[:200])
    return str(msgid)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True)
class _Token:
    value: str
    #: trio.current_time() after which it is refreshed before use
    refresh_at: float


class _TokenRefused(Exception):
    """A call was refused for its access token (40001/40014/42001)."""

    def __init__(self, error: ChannelError) -> None:
        super().__init__(str(error))
        self.error = error


class WeChatChannel:
    """Sends notices as template messages of an Official Account (or subscribe messages of a
    mini program). Use :func:`open_wechat_channel`, or pass an ``httpx.AsyncClient`` whose
    lifetime the caller owns. ``clock`` (the time shown in the template) exists for tests.

    One channel per app: a mini program's subscribe messages need the mini program's own appid
    and secret (its own token), so open a second channel with those (and a subscribe template
    as its ``default_template_id``) for :meth:`send_subscribe`.
    """

    name: ChannelName = "wechat"

    def __init__(
        self, config: WeChatConfig, http: httpx.AsyncClient, *, clock: Callable[[], dt.datetime] = _utcnow
    ) -> None:
        self.config = config
        self._http = http
        self._clock = clock
        self._base = config.base_url.rstrip("/")
        self._token: _Token | None = None
        self._token_lock = trio.Lock()
        #: stable_token calls made (how often the token was fetched)
        self.token_fetches = 0

    # -- the notice channel ---------------------------------------------------------------------

    async def send_notice(self, address: str, notice: OutgoingNotice, *, idempotency_key: str) -> ChannelReceipt:
        """Send ``notice`` to the openid ``address`` as a template message; the receipt's
        ``provider_id`` is WeChat's msgid (the one :func:`parse_event` reports later)."""
        payload: dict[str, Any] = {
            "touser": address,
            "template_id": notice.template or self.config.default_template_id,
            "client_msg_id": idempotency_key,
            "data": self._data(notice),
        }
        if notice.link:
            payload["url"] = self.absolute_link(notice.link)
            if self.config.miniprogram_appid:
                payload["miniprogram"] = {"appid": self.config.miniprogram_appid, "pagepath": notice.link.lstrip("/")}
        answer = await self._send("/cgi-bin/message/template/send", payload)
        receipt = ChannelReceipt(provider_id=_msgid(answer))
        log.info("template message to %s, msgid %s, client_msg_id %s", mask_openid(address), receipt.provider_id,
                 idempotency_key)
        return receipt

    async def find_sent(self, address: str, idempotency_key: str) -> ChannelReceipt | None:
        """Always None: WeChat has no query by ``client_msg_id``.

        It needs none for a prompt resend: WeChat itself sends one message per (openid,
        ``client_msg_id``) within 10 minutes, so sending again with the same key is the way to
        find out (a repeat gets the first message's msgid and reaches nobody twice). Past those
        10 minutes a resend may reach the patient a second time.
        """
        return None

    async def send_subscribe(
        self,
        address: str,
        notice: OutgoingNotice,
        *,
        template_id: str | None = None,
        page: str | None = None,
        miniprogram_state: str = "formal",
        lang: str = "zh_CN",
    ) -> ChannelReceipt:
        """Send ``notice`` to ``address`` (an openid of the mini program) as a subscribe message.

        It uses up one of the grants the user gave for the template (43101, ``fallback``, when
        none is left). ``page`` defaults to the notice's link without its leading ``/``.
        ``miniprogram_state`` is ``formal``, ``trial`` or ``developer``.
        """
        payload: dict[str, Any] = {
            "touser": address,
            "template_id": template_id or notice.template or self.config.default_template_id,
            "data": self._data(notice),
            "miniprogram_state": miniprogram_state,
            "lang": lang,
        }
        if page or notice.link:
            payload["page"] = page or (notice.link or "").lstrip("/")
        answer = await self._send("/cgi-bin/message/subscribe/send", payload)
        receipt = ChannelReceipt(provider_id=_msgid(answer))
        log.info("subscribe message to %s, msgid %s", mask_openid(address), receipt.provider_id)
        return receipt

    # -- pieces ---------------------------------------------------------------------------------

    def absolute_link(self, link: str) -> str:
        """``link`` under :attr:`WeChatConfig.public_base_url` (an absolute URL is kept)."""
        if link.startswith(("https://", "http://")):
            return link
        return self.config.public_base_url.rstrip("/") + "/" + link.lstrip("/")

    def _data(self, notice: OutgoingNotice) -> dict[str, dict[str, str]]:
        when = self._clock().astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")
        values = {TITLE_KEY: notice.title, BODY_KEY: notice.body, TIME_KEY: when}
        return {key: {"value": cut(value)} for key, value in values.items()}

    async def _send(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One API call with the current token; once more with a fresh one if it was refused."""
        token = await self.access_token()
        try:
            return await self._call(path, payload, token)
        except _TokenRefused as refused:
            log.info("%s refused the token (%s): refreshing it", path, refused.error.code)
        token = await self.access_token(force_after=token)
        try:
            return await self._call(path, payload, token)
        except _TokenRefused as refused:
            raise refused.error from None

    async def access_token(self, *, force_after: str | None = None) -> str:
        """The access token: the cached one while it is fresh, else a new one.

        The first one is fetched in the normal mode (WeChat answers the token it holds, so
        several processes of one app share it); later ones with ``force_refresh``.
        ``force_after``: that token was refused, so fetch anew unless another task already
        replaced it (then that newer token is the answer).
        """
        current = self._token
        if force_after is None and current is not None and trio.current_time() < current.refresh_at:
            return current.value
        async with self._token_lock:
            current = self._token
            if current is not None and (
                (force_after is not None and current.value != force_after)
                or (force_after is None and trio.current_time() < current.refresh_at)
            ):
                return current.value
            # a token past its refresh time is renewed with force_refresh too: in the normal mode
            # WeChat answers the same token (with its few seconds left) until it has expired
            self._token = await self._fetch_token(force=current is not None)
            return self._token.value

    async def _fetch_token(self, *, force: bool) -> _Token:
        body = {
            "grant_type": "client_credential",
            "appid": self.config.appid,
            "secret": self.config.secret,
            "force_refresh": force,
        }
        self.token_fetches += 1
        answer = await self._post("/cgi-bin/stable_token", body)
        errcode = _errcode(answer)
        if errcode or not answer.get("access_token"):
            message = f"stable_token: {answer.get('errmsg', 'no access_token')}"
            retryable = errcode not in CREDENTIAL_ERRCODES
            log.warning("WeChat refused the access token (%s): %s", errcode, message)
            raise ChannelError(str(errcode), message, retryable=retryable)
        expires_in = float(answer.get("expires_in", 7200))
        margin = min(TOKEN_MARGIN, expires_in / 10)
        return _Token(str(answer["access_token"]), trio.current_time() + expires_in - margin)

    async def _call(self, path: str, payload: dict[str, Any], token: str) -> dict[str, Any]:
        answer = await self._post(path, payload, token=token)
        errcode = _errcode(answer)
        if errcode == 0:
            return answer
        kind = ERRCODES.get(errcode, _ErrorKind())
        error = ChannelError(
            str(errcode),
            str(answer.get("errmsg", "")),
            retryable=kind.retryable,
            fallback=kind.fallback,
            retry_after=kind.retry_after,
        )
        if errcode in TOKEN_ERRCODES:
            raise _TokenRefused(error)
        log.warning("%s to %s refused: %s", path, mask_openid(str(payload.get("touser", ""))), error)
        raise error

    async def _post(self, path: str, body: dict[str, Any], *, token: str | None = None) -> dict[str, Any]:
        """POST JSON; any failure to get a JSON answer is a retryable :class:`ChannelError`."""
        params = {"access_token": token} if token is not None else None
        try:
            response = await self._http.post(
                self._base + path,
                params=params,
                content=orjson.dumps(body),
                headers={"content-type": "application/json"},
                timeout=self.config.timeout,
            )
        except httpx.TimeoutException as err:
            # the message may have gone out: a resend with the same client_msg_id is deduplicated
            raise ChannelError("timeout", f"{path}: no answer: {type(err).__name__}", retryable=True) from err
        except httpx.HTTPError as err:
            raise ChannelError("unreachable", f"{path}: {type(err).__name__}: {err}", retryable=True) from err
        if response.status_code >= 500:
            raise ChannelError(f"HTTP{response.status_code}", f"{path}: {response.text[:200]!r}", retryable=True)
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            raise ChannelError(
                f"HTTP{response.status_code}", f"{path}: not an API answer: {response.text[:200]!r}",
                retryable=response.status_code == 429,
            )
        return answer


@asynccontextmanager
async def open_wechat_channel(
    config: WeChatConfig, *, clock: Callable[[], dt.datetime] = _utcnow
) -> AsyncIterator[WeChatChannel]:
    """A :class:`WeChatChannel` with its own connection pool, closed on exit."""
    async with httpx.AsyncClient(timeout=config.timeout) as http:
        yield WeChatChannel(config, http, clock=clock)

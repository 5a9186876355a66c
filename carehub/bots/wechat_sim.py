"""A simulator of WeChat's message APIs (Official Account template messages, mini-program
subscribe messages) for tests, demos and the benchmark.

It is an outsider like every bot: it shares no code with CareHub's WeChat adapter
(:mod:`carehub.channels.wechat`) and implements WeChat's side on its own, so a test that passes
against it shows the adapter speaks the protocol. It holds its own test app
(:data:`DEFAULT_APPID`, :data:`DEFAULT_SECRET`).

WeChat's API (JSON answers ``{"errcode": 0, "errmsg": "ok", ...}``, HTTP 200 even for errors):

- Tokens. ``GET /cgi-bin/token?grant_type=client_credential&appid=&secret=`` and ``POST
  /cgi-bin/stable_token`` ``{grant_type, appid, secret, force_refresh}`` answer
  ``{access_token, expires_in}`` (``token_ttl``, 7200 s by default). ``/token`` always issues a
  new token and invalidates every earlier one of the app; ``stable_token`` answers the same
  token while it is valid, a new one with ``force_refresh: true`` (invalidating the previous).
  Real WeChat keeps stable tokens apart from ``/token`` ones; here a ``/token`` call invalidates
  stable tokens too (unless ``stable_isolated``), so a test can play "another system fetched a
  token" against an adapter using stable tokens. A call with an invalidated token is refused
  40001, an expired one 42001, an unknown one 40014; a wrong appid 40013, a wrong secret 40125
  (``stable_token``) or 40001 (``/token``).
- ``POST /cgi-bin/message/template/send?access_token=``: checks the token, the template (40037),
  the openid (40003 when it cannot be one), that the user follows the account (43004; by default
  every openid starting with ``o`` follows), and that every keyword of the template has a value
  (47003); values are cut to 20 characters silently. A repeated (touser, client_msg_id) within
  ``dedupe_seconds`` (600) answers the first message's msgid and sends nothing. Quotas per
  account: ``per_minute_quota`` (45011) and ``daily_quota`` per Beijing calendar day (45009).
  Every message sent is recorded; ``callback_delay`` later it settles (``success``, or
  ``failed:user block`` for users marked ``blocks``) and the XML event ``TEMPLATESENDJOBFINISH``
  is POSTed to ``callback_url`` with ``?signature=&timestamp=&nonce=&openid=`` signed with
  ``callback_token`` (SHA-1 of the sorted token, timestamp and nonce). A push not answered 200
  is tried again after each of ``callback_retry_seconds``.
- ``POST /cgi-bin/message/subscribe/send?access_token=``: a subscribe message; following is not
  needed, a grant is (``/_sim/grants``; 43101 when none is left, each send uses one); a value
  over 20 characters is refused (47003), as WeChat does for subscribe messages. Its outcome is
  pushed as ``subscribe_msg_sent_event``.

The control API under ``/_sim/`` (JSON, no authentication; bind it to localhost):

- ``GET /_sim/messages?touser=&kind=&limit=`` messages sent, newest first: ``touser``,
  ``template_id``, ``client_msg_id``, ``msgid``, ``data`` (as cut), ``url``, ``time``, ``status``.
- ``GET /_sim/callbacks`` event push attempts, newest first.
- ``GET /_sim/tokens`` how many tokens each endpoint issued, and the tokens' states.
- ``GET``/``POST /_sim/config`` ``{fail_rate (0..1: that share of sends answered -1), slow_ms
  (delay of every API answer), drop_callbacks, callback_url, callback_token, callback_delay,
  token_ttl, per_minute_quota (null: none), daily_quota, stable_isolated}``.
- ``POST /_sim/followers`` ``{openid, following: bool, blocks: bool}``.
- ``POST /_sim/grants`` ``{openid, template_id, count}`` subscribe grants (count replaces).
- ``POST /_sim/templates`` ``{template_id, keywords: [...], kind: "template"|"subscribe"}``.
- ``POST /_sim/tokens/expire`` every token expires now.
- ``POST /_sim/faults`` ``{"api": "template"|"subscribe"|"token"|"stable_token"|null, "count": N,
  "errcode": E | "status": 503 | "hang": true, "accept": false}``: the next N calls of that API
  answer errcode E, HTTP ``status``, or never (with ``"accept": true`` the call is processed
  first, as when the answer is lost on the way back).
- ``POST /_sim/reset`` back to the state at start (tokens forgotten, messages gone).

Run it on its own with ``python -m carehub.bots.wechat_sim --port 8093``; tests start it in
process with ``await nursery.start(functools.partial(serve_wechat_sim, port=0))``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import functools
import hashlib
import itertools
import logging
import random
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import httpx
import orjson
import trio

from ._asgi import Receive, Request, Send, SimulatorApp, admin_json, hang, respond, run_until_signalled, serve_app

log = logging.getLogger("carehub.bots.wechat_sim")

BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")
#: The simulator's own test app (``--appid``/``--secret`` change them).
DEFAULT_APPID = "wx5ca1ab1ec0ffee00"
DEFAULT_SECRET = "carehub-wechat-simulator-test-secret"
#: The Official Account's original id (``ToUserName`` of events).
ORIGINAL_ID = "gh_carehub000001"
#: The token set in the console for signing event pushes.
DEFAULT_CALLBACK_TOKEN = "carehub-wechat-callback-token"
#: The templates approved for the hospital (template message; subscribe message) and their
#: keywords; CareHub's notices fill thing1 (title), thing2 (body), time3 (when).
DEFAULT_TEMPLATE_ID = "CareHubNoticeTpl-0001"
DEFAULT_SUBSCRIBE_TEMPLATE_ID = "CareHubSubscribeTpl-0001"
NOTICE_KEYWORDS = ("thing1", "thing2", "time3")
MAX_VALUE_CHARS = 20
MAX_BODY_BYTES = 64 * 1024
MAX_PENDING_TOKENS = 10_000
_OPENID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Api = Literal["template", "subscribe", "token", "stable_token"]
_APIS: dict[str, Api] = {
    "/cgi-bin/message/template/send": "template",
    "/cgi-bin/message/subscribe/send": "subscribe",
    "/cgi-bin/token": "token",
    "/cgi-bin/stable_token": "stable_token",
}


@dataclasses.dataclass
class SimSettings:
    """Everything the control API can change, with the values ``/_sim/reset`` returns to."""

    callback_url: str | None = None
    callback_token: str = DEFAULT_CALLBACK_TOKEN
    #: seconds from a send to its outcome (and the event push)
    callback_delay: float = 0.05
    #: waits between attempts of one event push; its length + 1 is the number of attempts
    callback_retry_seconds: tuple[float, ...] = (0.2, 1.0)
    drop_callbacks: bool = False
    token_ttl: float = 7200.0
    per_minute_quota: int | None = None
    daily_quota: int = 100_000
    fail_rate: float = 0.0
    slow_ms: float = 0.0
    stable_isolated: bool = False
    dedupe_seconds: float = 600.0
    #: openids starting with this follow (and do not block) unless ``/_sim/followers`` says otherwise
    follow_prefix: str = "o"
    templates: Mapping[str, tuple[str, ...]] = dataclasses.field(
        default_factory=lambda: {DEFAULT_TEMPLATE_ID: NOTICE_KEYWORDS}
    )
    subscribe_templates: Mapping[str, tuple[str, ...]] = dataclasses.field(
        default_factory=lambda: {DEFAULT_SUBSCRIBE_TEMPLATE_ID: NOTICE_KEYWORDS}
    )
    max_messages: int = 100_000


@dataclasses.dataclass
class Token:
    value: str
    kind: Literal["token", "stable_token"]
    issued_at: dt.datetime
    expires_at: dt.datetime
    invalidated: bool = False


@dataclasses.dataclass
class Follower:
    following: bool = True
    blocks: bool = False


@dataclasses.dataclass
class Message:
    """One message sent to one user."""

    msgid: int
    kind: Literal["template", "subscribe"]
    touser: str
    template_id: str
    client_msg_id: str | None
    data: dict[str, str]
    url: str | None
    page: str | None
    miniprogram: dict[str, Any] | None
    sent_at: dt.datetime
    status: str = "sending"

    def view(self) -> dict[str, Any]:
        return {
            "msgid": self.msgid,
            "kind": self.kind,
            "touser": self.touser,
            "template_id": self.template_id,
            "client_msg_id": self.client_msg_id,
            "data": self.data,
            "url": self.url,
            "page": self.page,
            "miniprogram": self.miniprogram,
            "time": _iso(self.sent_at),
            "status": self.status,
        }


@dataclasses.dataclass
class Fault:
    api: Api | None
    count: int
    errcode: int | None = None
    status: int | None = None
    hang: bool = False
    #: with ``hang``: the call is processed first (the answer is lost on the way back)
    accept: bool = False


@dataclasses.dataclass
class Reply:
    """What the shell does with one API request."""

    body: dict[str, Any]
    status: int = 200
    hang: bool = False
    sent: Message | None = None


class Refused(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rid() -> str:
    # WeChat appends "rid: <hex>" to error messages
    return f" rid: {secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"


def sign(token: str, timestamp: str, nonce: str) -> str:
    """WeChat's signature of an event push."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


class WeChatSim:
    """WeChat's state and rules (no I/O: :class:`SimServer` serves it)."""

    def __init__(
        self, *, appid: str, secret: str, settings: SimSettings, clock: Callable[[], dt.datetime] | None = None
    ) -> None:
        self.appid = appid
        self.secret = secret
        self._initial = settings
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        # msgids stay unique across resets (a long-running demo keeps old ones in its store)
        self._msgids = itertools.count(2_000_000_001)
        self.random = random.Random()
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        self.settings = dataclasses.replace(
            self._initial,
            templates=dict(self._initial.templates),
            subscribe_templates=dict(self._initial.subscribe_templates),
        )
        self.tokens: dict[str, Token] = {}
        self.token_calls: collections.Counter[str] = collections.Counter()
        self.followers: dict[str, Follower] = {}
        self.grants: dict[tuple[str, str], int] = {}
        self.messages: collections.deque[Message] = collections.deque(maxlen=self.settings.max_messages)
        self.by_client_msg_id: dict[tuple[str, str], Message] = {}
        self.recent: collections.deque[dt.datetime] = collections.deque()  # sends of the last minute
        self.day: tuple[dt.date, int] = (self.now().astimezone(BEIJING).date(), 0)
        self.faults: collections.deque[Fault] = collections.deque()
        self.callbacks: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self.generation += 1

    def now(self) -> dt.datetime:
        return self._clock()

    # -- the API --------------------------------------------------------------------------------

    def handle_api(self, method: str, path: str, query: str, body: bytes) -> Reply:
        api = _APIS.get(path)
        if api is None:
            return Reply({"errcode": 44004, "errmsg": f"invalid url {path}{_rid()}"}, status=404)
        args = dict(parse_qsl(query, keep_blank_values=True))
        try:
            fault = self._take_fault(api)
            lost = fault is not None and fault.hang and fault.accept  # processed, the answer lost
            if fault is not None and not lost:
                if fault.hang:
                    return Reply({}, hang=True)
                if fault.status is not None:
                    return Reply({"errcode": -1, "errmsg": "system error"}, status=fault.status)
                raise Refused(fault.errcode if fault.errcode is not None else -1, "injected fault")
            if api == "token":
                if method != "GET":
                    raise Refused(43001, "require GET method")
                return Reply(self._token(args))
            if method != "POST":
                raise Refused(43002, "require POST method")
            data = self._json(body)
            if api == "stable_token":
                return Reply(self._stable_token(data))
            self._check_token(args.get("access_token", ""))
            if self.settings.fail_rate > 0 and self.random.random() < self.settings.fail_rate:
                raise Refused(-1, "system error")
            if api == "template":
                message, repeated = self._template_send(data)
            else:
                message, repeated = self._subscribe_send(data), False
            answer = {"errcode": 0, "errmsg": "ok", "msgid": message.msgid}
            return Reply(answer, hang=lost, sent=None if repeated else message)
        except Refused as refused:
            errmsg = refused.errmsg if refused.errcode in (0, -1) else refused.errmsg + _rid()
            return Reply({"errcode": refused.errcode, "errmsg": errmsg})

    def _take_fault(self, api: Api) -> Fault | None:
        for fault in self.faults:
            if fault.api in (None, api):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _json(body: bytes) -> dict[str, Any]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Refused(47001, "data format error") from None
        if not isinstance(data, dict):
            raise Refused(47001, "data format error")
        return data

    # tokens

    def _check_app(self, grant_type: Any, appid: Any, secret: Any, wrong_secret: int) -> None:
        if not appid:
            raise Refused(41002, "appid missing")
        if not secret:
            raise Refused(41004, "appsecret missing")
        if grant_type != "client_credential":
            raise Refused(40002, "invalid grant_type")
        if appid != self.appid:
            raise Refused(40013, "invalid appid")
        if secret != self.secret:
            raise Refused(wrong_secret, "invalid appsecret" if wrong_secret == 40125 else "invalid credential")

    def _issue(self, kind: Literal["token", "stable_token"]) -> Token:
        now = self.now()
        if len(self.tokens) >= MAX_PENDING_TOKENS:  # forget the oldest (they answer 40014 then)
            for value in list(self.tokens)[: MAX_PENDING_TOKENS // 2]:
                del self.tokens[value]
        token = Token(
            secrets.token_urlsafe(96), kind, now, now + dt.timedelta(seconds=self.settings.token_ttl)
        )
        self.tokens[token.value] = token
        self.token_calls[kind + "_issued"] += 1
        return token

    def _answer(self, token: Token) -> dict[str, Any]:
        left = max(0, round((token.expires_at - self.now()).total_seconds()))
        return {"access_token": token.value, "expires_in": left}

    def _token(self, args: Mapping[str, str]) -> dict[str, Any]:
        self.token_calls["token"] += 1
        self._check_app(args.get("grant_type"), args.get("appid"), args.get("secret"), 40001)
        for token in self.tokens.values():
            if token.kind == "token" or not self.settings.stable_isolated:
                token.invalidated = True
        return self._answer(self._issue("token"))

    def _stable_token(self, data: Mapping[str, Any]) -> dict[str, Any]:
        self.token_calls["stable_token"] += 1
        self._check_app(data.get("grant_type"), data.get("appid"), data.get("secret"), 40125)
        now = self.now()
        current = next(
            (
                t
                for t in reversed(self.tokens.values())
                if t.kind == "stable_token" and not t.invalidated and t.expires_at > now
            ),
            None,
        )
        if current is not None and not data.get("force_refresh"):
            return self._answer(current)
        for token in self.tokens.values():
            if token.kind == "stable_token":
                token.invalidated = True
        return self._answer(self._issue("stable_token"))

    def _check_token(self, value: str) -> None:
        if not value:
            raise Refused(41001, "access_token missing")
        token = self.tokens.get(value)
        if token is None:
            raise Refused(40014, "invalid access_token")
        if token.invalidated:
            raise Refused(40001, "invalid credential, access_token is invalid or not latest")
        if token.expires_at <= self.now():
            raise Refused(42001, "access_token expired")

    # sends

    def _values(self, data: Any, keywords: tuple[str, ...], *, cut: bool) -> dict[str, str]:
        if not isinstance(data, dict):
            raise Refused(47003, "argument invalid! data is empty")
        values: dict[str, str] = {}
        for key in keywords:
            item = data.get(key)
            value = item.get("value") if isinstance(item, dict) else None
            if not isinstance(value, str) or not value:
                raise Refused(47003, f"argument invalid! data.{key}.value is empty")
            if len(value) > MAX_VALUE_CHARS and not cut:
                raise Refused(47003, f"argument invalid! data.{key}.value exceeds limit")
            values[key] = value[:MAX_VALUE_CHARS]
        return values

    @staticmethod
    def _template(data: Mapping[str, Any], registry: Mapping[str, tuple[str, ...]]) -> tuple[str, tuple[str, ...]]:
        template_id = data.get("template_id")
        keywords = registry.get(template_id) if isinstance(template_id, str) else None
        if not isinstance(template_id, str) or keywords is None:
            raise Refused(40037, "invalid template_id")
        return template_id, keywords

    def _check_openid(self, touser: Any) -> str:
        if not isinstance(touser, str) or not _OPENID.match(touser):
            raise Refused(40003, "invalid openid")
        return touser

    def follower(self, openid: str) -> Follower:
        known = self.followers.get(openid)
        if known is not None:
            return known
        return Follower(following=openid.startswith(self.settings.follow_prefix), blocks=False)

    def _take_quota(self) -> None:
        now = self.now()
        today = now.astimezone(BEIJING).date()
        day, count = self.day
        if day != today:
            day, count = today, 0
        if count >= self.settings.daily_quota:
            raise Refused(45009, "reach max api daily quota limit")
        while self.recent and now - self.recent[0] >= dt.timedelta(minutes=1):
            self.recent.popleft()
        limit = self.settings.per_minute_quota
        if limit is not None and len(self.recent) >= limit:
            raise Refused(45011, "api minute-quota reach limit  mustslower  retry next minute")
        self.recent.append(now)
        self.day = (day, count + 1)

    def _record(self, message: Message) -> Message:
        self.messages.append(message)
        return message

    def _template_send(self, data: Mapping[str, Any]) -> tuple[Message, bool]:
        touser = self._check_openid(data.get("touser"))
        template_id, keywords = self._template(data, self.settings.templates)
        client_msg_id = data.get("client_msg_id")
        client_msg_id = str(client_msg_id) if client_msg_id else None
        now = self.now()
        if client_msg_id:
            earlier = self.by_client_msg_id.get((touser, client_msg_id))
            if earlier is not None and now - earlier.sent_at < dt.timedelta(seconds=self.settings.dedupe_seconds):
                return earlier, True
        if not self.follower(touser).following:
            raise Refused(43004, "require subscribe")
        values = self._values(data.get("data"), keywords, cut=True)
        self._take_quota()
        miniprogram = data.get("miniprogram") if isinstance(data.get("miniprogram"), dict) else None
        message = self._record(
            Message(
                next(self._msgids), "template", touser, template_id, client_msg_id, values,
                str(data["url"]) if data.get("url") else None, None, miniprogram, now,
            )
        )
        if client_msg_id:
            self._forget_old_client_ids(now)
            self.by_client_msg_id[(touser, client_msg_id)] = message
        return message, False

    def _forget_old_client_ids(self, now: dt.datetime) -> None:
        window = dt.timedelta(seconds=self.settings.dedupe_seconds)
        while self.by_client_msg_id:
            key, oldest = next(iter(self.by_client_msg_id.items()))
            if now - oldest.sent_at < window:
                break
            del self.by_client_msg_id[key]

    def _subscribe_send(self, data: Mapping[str, Any]) -> Message:
        touser = self._check_openid(data.get("touser"))
        template_id, keywords = self._template(data, self.settings.subscribe_templates)
        if data.get("miniprogram_state", "formal") not in ("formal", "trial", "developer"):
            raise Refused(47003, "argument invalid! miniprogram_state")
        grants = self.grants.get((touser, template_id), 0)
        if grants <= 0:
            raise Refused(43101, "user refuse to accept the msg")
        values = self._values(data.get("data"), keywords, cut=False)
        self._take_quota()
        self.grants[(touser, template_id)] = grants - 1
        page = str(data["page"]) if data.get("page") else None
        return self._record(
            Message(next(self._msgids), "subscribe", touser, template_id, None, values, None, page, None, self.now())
        )

    def settle(self, message: Message) -> str:
        """The user's phone got the message (or refused it): its status, and the event XML."""
        if message.kind == "template":
            message.status = "failed:user block" if self.follower(message.touser).blocks else "success"
        else:
            message.status = "success"
        return self.event_xml(message)

    def event_xml(self, message: Message) -> str:
        created = str(int(self.now().timestamp()))
        head = (
            f"<ToUserName>{_cdata(ORIGINAL_ID)}</ToUserName><FromUserName>{_cdata(message.touser)}</FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType>{_cdata('event')}</MsgType>"
        )
        if message.kind == "template":
            return (
                f"<xml>{head}<Event>{_cdata('TEMPLATESENDJOBFINISH')}</Event>"
                f"<MsgID>{message.msgid}</MsgID><Status>{_cdata(message.status)}</Status></xml>"
            )
        return (
            f"<xml>{head}<Event>{_cdata('subscribe_msg_sent_event')}</Event><SubscribeMsgSentEvent><List>"
            f"<TemplateId>{_cdata(message.template_id)}</TemplateId><MsgID>{message.msgid}</MsgID>"
            f"<ErrorCode>0</ErrorCode><ErrorStatus>{_cdata(message.status)}</ErrorStatus>"
            "</List></SubscribeMsgSentEvent></xml>"
        )

    # -- the control API ------------------------------------------------------------------------

    def handle_admin(self, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
        args = dict(parse_qsl(query))
        data, problem = admin_json(body)
        if data is None:
            return 400, {"error": problem}
        try:
            match method, path:
                case "GET", "/_sim/messages":
                    limit = int(args.get("limit", "1000"))
                    found = [
                        m.view()
                        for m in reversed(self.messages)
                        if args.get("touser", m.touser) == m.touser and args.get("kind", m.kind) == m.kind
                    ]
                    return 200, {"messages": found[:limit], "total": len(found)}
                case "GET", "/_sim/callbacks":
                    return 200, {"callbacks": list(reversed(self.callbacks))}
                case "GET", "/_sim/tokens":
                    now = self.now()
                    states = [
                        {
                            "kind": t.kind,
                            "issued_at": _iso(t.issued_at),
                            "state": "invalidated" if t.invalidated else "expired" if t.expires_at <= now else "valid",
                        }
                        for t in self.tokens.values()
                    ]
                    return 200, {"calls": dict(self.token_calls), "tokens": states}
                case "POST", "/_sim/tokens/expire":
                    now = self.now()
                    for token in self.tokens.values():
                        token.expires_at = min(token.expires_at, now)
                    return 200, {"expired": len(self.tokens)}
                case "GET", "/_sim/config":
                    return 200, self._config_view()
                case "POST", "/_sim/config":
                    return self._configure(data)
                case "POST", "/_sim/followers":
                    openid = self._admin_openid(data)
                    was = self.follower(openid)
                    following, blocks = data.get("following", was.following), data.get("blocks", was.blocks)
                    follower = Follower(following=bool(following), blocks=bool(blocks))
                    self.followers[openid] = follower
                    return 200, {"openid": openid, **dataclasses.asdict(follower)}
                case "POST", "/_sim/grants":
                    openid = self._admin_openid(data)
                    template_id = str(data.get("template_id") or DEFAULT_SUBSCRIBE_TEMPLATE_ID)
                    count = int(data.get("count", 1))
                    if count < 0:
                        return 400, {"error": "count must be >= 0"}
                    self.grants[(openid, template_id)] = count
                    return 200, {"openid": openid, "template_id": template_id, "count": count}
                case "POST", "/_sim/templates":
                    new_id = data.get("template_id")
                    keywords = data.get("keywords", list(NOTICE_KEYWORDS))
                    kind = data.get("kind", "template")
                    if not new_id or kind not in ("template", "subscribe") or not isinstance(keywords, list):
                        problem = "a template needs template_id, keywords (a list) and kind template or subscribe"
                        return 400, {"error": problem}
                    registry = self.settings.templates if kind == "template" else self.settings.subscribe_templates
                    assert isinstance(registry, dict)
                    registry[str(new_id)] = tuple(str(k) for k in keywords)
                    return 200, {"template_id": new_id, "kind": kind, "keywords": keywords}
                case "POST", "/_sim/faults":
                    api = data.get("api")
                    fault = Fault(
                        api=api,
                        count=int(data.get("count", 1)),
                        errcode=int(data["errcode"]) if data.get("errcode") is not None else None,
                        status=int(data["status"]) if data.get("status") is not None else None,
                        hang=bool(data.get("hang", False)),
                        accept=bool(data.get("accept", False)),
                    )
                    if (api is not None and api not in _APIS.values()) or fault.count < 1:
                        return 400, {"error": f"api must be one of {sorted(_APIS.values())} or null, count >= 1"}
                    self.faults.append(fault)
                    return 200, {"faults": [dataclasses.asdict(f) for f in self.faults]}
                case "POST", "/_sim/reset":
                    self.reset()
                    return 200, {"reset": True}
                case "GET", "/_sim/health":
                    return 200, {"ok": True, "appid": self.appid}
        except (ValueError, TypeError, KeyError) as err:
            return 400, {"error": f"{type(err).__name__}: {err}"}
        return 404, {"error": f"no control route {method} {path}"}

    @staticmethod
    def _admin_openid(data: Mapping[str, Any]) -> str:
        openid = data.get("openid")
        if not isinstance(openid, str) or not openid:
            raise ValueError("openid is required")
        return openid

    def _config_view(self) -> dict[str, Any]:
        s = self.settings
        return {
            "callback_url": s.callback_url,
            "callback_token": s.callback_token,
            "callback_delay": s.callback_delay,
            "callback_retry_seconds": list(s.callback_retry_seconds),
            "drop_callbacks": s.drop_callbacks,
            "token_ttl": s.token_ttl,
            "per_minute_quota": s.per_minute_quota,
            "daily_quota": s.daily_quota,
            "fail_rate": s.fail_rate,
            "slow_ms": s.slow_ms,
            "stable_isolated": s.stable_isolated,
            "dedupe_seconds": s.dedupe_seconds,
            "follow_prefix": s.follow_prefix,
            "templates": {k: list(v) for k, v in s.templates.items()},
            "subscribe_templates": {k: list(v) for k, v in s.subscribe_templates.items()},
        }

    def _configure(self, data: Mapping[str, Any]) -> tuple[int, Any]:
        s = self.settings
        if "fail_rate" in data:
            rate = float(data["fail_rate"])
            if not 0 <= rate <= 1:
                return 400, {"error": "fail_rate must be between 0 and 1"}
            s.fail_rate = rate
        for name in ("slow_ms", "callback_delay", "token_ttl", "dedupe_seconds"):
            if name in data:
                value = float(data[name])
                if value < 0:
                    return 400, {"error": f"{name} must be >= 0"}
                setattr(s, name, value)
        for name in ("drop_callbacks", "stable_isolated"):
            if name in data:
                setattr(s, name, bool(data[name]))
        if "callback_url" in data:
            s.callback_url = str(data["callback_url"]) if data["callback_url"] else None
        if "callback_token" in data:
            s.callback_token = str(data["callback_token"])
        if "callback_retry_seconds" in data:
            s.callback_retry_seconds = tuple(float(x) for x in data["callback_retry_seconds"])
        if "per_minute_quota" in data:
            s.per_minute_quota = None if data["per_minute_quota"] is None else int(data["per_minute_quota"])
        if "daily_quota" in data:
            s.daily_quota = int(data["daily_quota"])
        if "follow_prefix" in data:
            s.follow_prefix = str(data["follow_prefix"])
        return 200, self._config_view()


class SimServer(SimulatorApp):
    """The I/O shell: an ASGI app for hypercorn, answer delays and the event pusher."""

    max_body = MAX_BODY_BYTES

    def __init__(self, sim: WeChatSim, nursery: trio.Nursery, http: httpx.AsyncClient) -> None:
        self.sim = sim
        self.nursery = nursery
        self.http = http

    async def too_large(self, send: Send) -> None:
        await self._answer(send, 413, {"errcode": 47001, "errmsg": "data format error: body too large"})

    async def handle(self, request: Request, receive: Receive, send: Send) -> None:
        if request.path.startswith("/_sim/"):
            status, answer = self.sim.handle_admin(request.method, request.path, request.query, request.body)
            await self._answer(send, status, answer)
            return
        reply = self.sim.handle_api(request.method, request.path, request.query, request.body)
        if reply.sent is not None:
            self.nursery.start_soon(self._settle_later, reply.sent, self.sim.generation)
        if self.sim.settings.slow_ms > 0:
            await trio.sleep(self.sim.settings.slow_ms / 1000)
        if reply.hang:
            await hang(receive, 120.0)
            return
        await self._answer(send, reply.status, reply.body)

    async def _answer(self, send: Send, status: int, body: Any) -> None:
        await respond(send, status, orjson.dumps(body), [(b"content-type", b"application/json; encoding=utf-8")])

    async def _settle_later(self, message: Message, generation: int) -> None:
        sim = self.sim
        await trio.sleep(sim.settings.callback_delay)
        if generation != sim.generation:
            return  # reset since: the message is gone
        xml = sim.settle(message)
        url = sim.settings.callback_url
        entry: dict[str, Any] = {"msgid": message.msgid, "url": url, "status": message.status, "attempts": []}
        if not url or sim.settings.drop_callbacks:
            entry["outcome"] = "dropped" if url else "no callback_url"
            sim.callbacks.append(entry)
            return
        sim.callbacks.append(entry)
        delays = sim.settings.callback_retry_seconds
        for attempt in range(len(delays) + 1):
            timestamp, nonce = str(int(sim.now().timestamp())), str(secrets.randbelow(10**10))
            query = urlencode(
                {
                    "signature": sign(sim.settings.callback_token, timestamp, nonce),
                    "timestamp": timestamp,
                    "nonce": nonce,
                    "openid": message.touser,
                }
            )
            target = url + ("&" if "?" in url else "?") + query
            try:
                response = await self.http.post(
                    target, content=xml.encode(), headers={"content-type": "text/xml"}, timeout=5.0
                )
                entry["attempts"].append({"status": response.status_code})
                if response.status_code == 200:
                    entry["outcome"] = "accepted"
                    return
            except httpx.HTTPError as err:
                entry["attempts"].append({"error": f"{type(err).__name__}: {err}"})
            if attempt < len(delays):
                await trio.sleep(delays[attempt])
        entry["outcome"] = "abandoned"
        log.warning("gave up pushing the event of msgid %s to %s", message.msgid, url)


async def serve_wechat_sim(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    appid: str = DEFAULT_APPID,
    secret: str = DEFAULT_SECRET,
    callback_url: str | None = None,
    settings: SimSettings | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulator until cancelled; ``task_status.started`` gets its base URL.

    ``callback_url`` (where event pushes go) overrides ``settings.callback_url``; ``clock``
    returns the simulator's "now" (an aware datetime).
    """
    settings = dataclasses.replace(settings or SimSettings())
    if callback_url is not None:
        settings.callback_url = callback_url
    sim = WeChatSim(appid=appid, secret=secret, settings=settings, clock=clock)
    async with httpx.AsyncClient(timeout=10) as http, trio.open_nursery() as nursery:
        server = SimServer(sim, nursery, http)
        url = await serve_app(nursery, server, host, port, logging.getLogger("hypercorn.error"))
        log.info("WeChat simulator at %s (events to %s)", url, settings.callback_url or "nowhere")
        task_status.started(url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m carehub.bots.wechat_sim", description="WeChat template/subscribe message simulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8093)
    parser.add_argument("--appid", default=DEFAULT_APPID)
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    parser.add_argument("--callback-url", default=None, help="where to push TEMPLATESENDJOBFINISH events")
    parser.add_argument("--callback-token", default=DEFAULT_CALLBACK_TOKEN, help="the token signing event pushes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def start(nursery: trio.Nursery) -> None:
        url = await nursery.start(
            functools.partial(
                serve_wechat_sim,
                host=args.host,
                port=args.port,
                appid=args.appid,
                secret=args.secret,
                callback_url=args.callback_url,
                settings=SimSettings(callback_token=args.callback_token),
            )
        )
        print(f"WeChat simulator listening on {url}", flush=True)

    run_until_signalled(start)


if __name__ == "__main__":
    main()

"""A simulator of the Alipay open platform's life-account (生活号) template messages.

It is an outsider like every bot: it shares no code with CareHub's adapter
(:mod:`carehub.channels.alipay`) and implements the platform's side on its own. It holds two
RSA-2048 key pairs: the app's (it keeps the public half to verify requests and hands the private
half to whoever plays the app, so one :func:`serve_alipay_sim` call gives a working
configuration) and the platform's (it signs every answer; the public half is the "Alipay public
key" of the app).

The gateway (``POST /gateway.do``, parameters form-encoded or in the query string):

- Common parameters ``app_id``, ``method``, ``charset`` (utf-8), ``sign_type`` (RSA2 only),
  ``sign``, ``timestamp`` (Beijing ``yyyy-MM-dd HH:mm:ss``, at most ``max_clock_skew_seconds``
  away), ``version`` (1.0), ``biz_content`` (a JSON object). ``sign`` must verify (SHA256withRSA,
  app public key) over every other non-empty parameter, sorted by name, ``k=v`` joined by ``&``.
  Failures answer ``40001``/``40002`` with an ``isv.*`` sub-code.
- Answers are ``{"<method, . as _>_response": {...}, "sign": "..."}`` (``error_response`` for an
  unknown method), signed over the exact inner JSON text with the platform key.
- ``alipay.open.public.message.single.send``: ``to_user_id``, ``template.template_id`` (one of the
  approved ``template_ids``, else ``40004 TEMPLATE_NOT_EXIST``), ``template.context`` (an object;
  ``url`` absolute http(s); ``first``/``keyword*``/``remark`` objects with a string ``value``).
  A user who does not follow the life account gets ``40004 USER_NOT_FOLLOW``. An accepted
  message is recorded with a ``msg_id`` (in the answer) and the ``out_biz_no`` the sender put
  in ``biz_content``. Never deduplicated (the platform has no idempotency key for it).
- ``alipay.open.public.message.query`` ``{"to_user_id", "out_biz_no"}`` -> ``{"messages": [...]}``:
  the messages sent to that user under that ``out_biz_no``.

``out_biz_no`` and the query method are [unverified]: the platform's documents for the method
could not be read; they exist so a sender can tell, after a crash, whether a send went out.

Followers: by default every user id starting with ``follow_prefix`` (``2088``) follows;
``/_sim/followers`` overrides it per user.

The admin API under ``/_sim/`` (no authentication; bind it to localhost):

- ``GET /_sim/messages?to_user_id=&limit=`` accepted messages, newest first.
- ``POST /_sim/reset`` back to the state at start.
- ``GET``/``POST /_sim/config`` ``{"fail_rate": 0..1 (random 20000 answers), "slow_ms": N
  (answer late), "seed": N, "template_ids": [...], "follow_prefix": "2088" | null,
  "max_clock_skew_seconds": S, "query_supported": true|false}``.
- ``GET``/``POST /_sim/followers`` ``{"user_id", "following": true|false}``.
- ``POST /_sim/faults`` ``{"kind": "error"|"unavailable"|"timeout"|"tamper", "count": N,
  "code": "40004", "sub_code": "...", "sub_msg": "...", "method": null, "accept": false}``: the
  next N requests that pass authentication fail: ``error`` answers (signed) with the code,
  ``unavailable`` answers HTTP 503, ``timeout`` never answers (``accept``: the request is
  processed first, its answer lost), ``tamper`` processes the request and changes the answer
  after signing it (its signature no longer verifies).
- ``GET /_sim/credentials`` the app's configuration: app id, template id, the app private key
  and the Alipay public key (test keys).
- ``GET /_sim/health``.

Run it with ``python -m carehub.bots.alipay_sim --port 8094``; tests start it in-process with
``await nursery.start(functools.partial(serve_alipay_sim, port=0))``.
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
import random
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl

import orjson
import trio
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ._asgi import Receive, Request, Send, SimulatorApp, admin_json, hang, respond, run_until_signalled, serve_app

log = logging.getLogger("carehub.bots.alipay_sim")

BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")
DEFAULT_APP_ID = "2021004100000001"
#: The life account's approved template (the id the template library hands out is 32 hex digits).
DEFAULT_TEMPLATE_ID = "6a1f0c9e3b7d4e52a8c4f1d2e3b4a5c6"
SEND_METHOD = "alipay.open.public.message.single.send"
QUERY_METHOD = "alipay.open.public.message.query"
MAX_BODY_BYTES = 64 * 1024
_URL = re.compile(r"^https?://[^\s/]+")

_MSG = {
    "10000": "Success",
    "20000": "Service Currently Unavailable",
    "20001": "Insufficient Token Permissions",
    "40001": "Missing Required Arguments",
    "40002": "Invalid Arguments",
    "40004": "Business Failed",
    "40006": "Insufficient Permissions",
}


@dataclasses.dataclass(frozen=True)
class SimKeys:
    """PEMs of the app's and the platform's RSA key pairs (test keys)."""

    app_private_key_pem: str = dataclasses.field(repr=False)
    app_public_key_pem: str
    alipay_private_key_pem: str = dataclasses.field(repr=False)
    alipay_public_key_pem: str


def _pem_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.decode("ascii"), public.decode("ascii")


def generate_keys() -> SimKeys:
    """Fresh RSA-2048 key pairs for the app and the platform."""
    app_private, app_public = _pem_pair()
    alipay_private, alipay_public = _pem_pair()
    return SimKeys(app_private, app_public, alipay_private, alipay_public)


@dataclasses.dataclass
class SimSettings:
    """Everything the admin API can change, with the values ``/_sim/reset`` returns to."""

    template_ids: tuple[str, ...] = (DEFAULT_TEMPLATE_ID,)
    #: user ids starting with it follow the life account unless /_sim/followers says otherwise
    follow_prefix: str | None = "2088"
    #: share of authenticated requests answered 20000 at random
    fail_rate: float = 0.0
    #: every answer this much later (milliseconds)
    slow_ms: int = 0
    seed: int | None = None
    max_clock_skew_seconds: float = 15 * 60
    #: False: the gateway does not know the query method (``40002 isv.invalid-method``), as the
    #: real platform may not [unverified]
    query_supported: bool = True
    #: seconds a ``timeout`` fault keeps the request open (unless the client leaves first)
    hang_seconds: float = 120.0
    max_messages: int = 10_000


@dataclasses.dataclass
class Message:
    """One accepted template message."""

    msg_id: str
    to_user_id: str
    template_id: str
    context: dict[str, Any]
    out_biz_no: str | None
    sent_at: dt.datetime

    def view(self) -> dict[str, Any]:
        return {
            "msg_id": self.msg_id,
            "to_user_id": self.to_user_id,
            "out_biz_no": self.out_biz_no,
            "template_id": self.template_id,
            "send_time": _beijing(self.sent_at),
        }

    def admin_view(self) -> dict[str, Any]:
        return self.view() | {"context": self.context, "sent_at": self.sent_at.astimezone(dt.UTC).isoformat()}


@dataclasses.dataclass
class Fault:
    kind: Literal["error", "unavailable", "timeout", "tamper"]
    count: int
    code: str = "20000"
    sub_code: str = "isp.unknow-error"
    sub_msg: str = "系统繁忙"
    method: str | None = None
    accept: bool = False


@dataclasses.dataclass
class Reply:
    """What the shell does with one request."""

    status: int
    body: bytes
    content_type: bytes = b"application/json;charset=utf-8"
    hang: bool = False


class Refused(Exception):
    """A request the gateway answers with an error code."""

    def __init__(self, code: str, sub_code: str, sub_msg: str) -> None:
        super().__init__(f"{code} {sub_code}: {sub_msg}")
        self.code = code
        self.sub_code = sub_code
        self.sub_msg = sub_msg


def _beijing(when: dt.datetime) -> str:
    return when.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _load_private(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _load_public(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


class AlipaySim:
    """The platform's state and rules (no I/O: the ASGI shell below serves it)."""

    def __init__(
        self,
        *,
        app_id: str,
        keys: SimKeys,
        settings: SimSettings,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.app_id = app_id
        self.keys = keys
        self._app_public = _load_public(keys.app_public_key_pem)
        self._alipay_private = _load_private(keys.alipay_private_key_pem)
        self._initial = settings
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.settings = dataclasses.replace(self._initial)
        self.random = random.Random(self.settings.seed)
        self.followers: dict[str, bool] = {}
        self.messages: collections.deque[Message] = collections.deque(maxlen=self.settings.max_messages)
        self.faults: collections.deque[Fault] = collections.deque()

    def now(self) -> dt.datetime:
        return self._clock()

    def follows(self, user_id: str) -> bool:
        if user_id in self.followers:
            return self.followers[user_id]
        prefix = self.settings.follow_prefix
        return prefix is not None and user_id.startswith(prefix)

    # -- the gateway ------------------------------------------------------------------------------

    def handle_api(self, method: str, query: str, headers: Mapping[str, str], body: bytes) -> Reply:
        params = dict(parse_qsl(query, keep_blank_values=True))
        if method == "POST" and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        api = params.get("method", "")
        key = api.replace(".", "_") + "_response" if api in self._methods() else "error_response"
        try:
            biz = self._authenticate(params)
            fault = self._take_fault(api)
            if fault is not None and fault.kind == "unavailable":
                return Reply(503, b"<html><body>503 Service Temporarily Unavailable</body></html>", b"text/html")
            if fault is not None and fault.kind == "timeout":
                if fault.accept:
                    try:
                        self._dispatch(api, biz)
                    except Refused:
                        pass  # refused, and the refusal lost on the way back
                return Reply(200, b"", hang=True)
            if fault is not None and fault.kind == "error":
                raise Refused(fault.code, fault.sub_code, fault.sub_msg)
            if self.settings.fail_rate > 0 and self.random.random() < self.settings.fail_rate:
                raise Refused("20000", "isp.unknow-error", "系统繁忙")
            answer = self._dispatch(api, biz)
            inner = {"code": "10000", "msg": "Success"} | answer
            return Reply(200, self._signed(key, inner, tamper=fault is not None and fault.kind == "tamper"))
        except Refused as refused:
            inner = {
                "code": refused.code,
                "msg": _MSG.get(refused.code, "Business Failed"),
                "sub_code": refused.sub_code,
                "sub_msg": refused.sub_msg,
            }
            return Reply(200, self._signed(key, inner))

    def _signed(self, key: str, inner: Mapping[str, Any], *, tamper: bool = False) -> bytes:
        """The answer ``{key: inner, "sign": ...}``, signed over the exact inner text."""
        text = orjson.dumps(dict(inner))
        signature = self._alipay_private.sign(text, padding.PKCS1v15(), hashes.SHA256())
        if tamper:
            text = orjson.dumps(dict(inner) | {"msg": "Tampered"})
        return b'{"' + key.encode() + b'":' + text + b',"sign":"' + base64.b64encode(signature) + b'"}'

    def _authenticate(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Checks the common parameters and the signature; the parsed ``biz_content``."""
        for name in ("app_id", "method", "sign_type", "sign", "timestamp", "version"):
            if not params.get(name):
                raise Refused("40001", f"isv.missing-{name.replace('_', '-')}", f"缺少{name}参数")
        if params["app_id"] != self.app_id:
            raise Refused("40002", "isv.invalid-app-id", "无效的AppID参数")
        if params["method"] not in self._methods():
            raise Refused("40002", "isv.invalid-method", "不存在的方法名")
        if params["sign_type"] != "RSA2":
            raise Refused("40002", "isv.invalid-signature-type", "无效的签名类型")
        if params.get("charset", "utf-8").lower() != "utf-8":
            raise Refused("40002", "isv.invalid-charset", "字符集错误")
        if params["version"] != "1.0":
            raise Refused("40002", "isv.invalid-version", "无效的版本号")
        try:
            stamp = dt.datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
        except ValueError:
            raise Refused("40002", "isv.invalid-timestamp", "非法的时间戳参数") from None
        if abs((self.now() - stamp).total_seconds()) > self.settings.max_clock_skew_seconds:
            raise Refused("40002", "isv.invalid-timestamp", "时间戳与服务器时间相差过大")
        content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v)
        try:
            signature = base64.b64decode(params["sign"], validate=True)
            self._app_public.verify(signature, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            raise Refused("40002", "isv.invalid-signature", f"验签出错，验签字符串为: {content}") from None
        try:
            biz = orjson.loads(params.get("biz_content") or "{}")
        except orjson.JSONDecodeError:
            raise Refused("40002", "isv.invalid-parameter", "biz_content不是合法的JSON") from None
        if not isinstance(biz, dict):
            raise Refused("40002", "isv.invalid-parameter", "biz_content必须是JSON对象")
        return biz

    def _methods(self) -> tuple[str, ...]:
        return (SEND_METHOD, QUERY_METHOD) if self.settings.query_supported else (SEND_METHOD,)

    def _take_fault(self, api: str) -> Fault | None:
        for fault in self.faults:
            if fault.method in (None, api):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _dispatch(self, api: str, biz: Mapping[str, Any]) -> dict[str, Any]:
        return self._send(biz) if api == SEND_METHOD else self._query(biz)

    def _send(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        user_id = biz.get("to_user_id")
        if not isinstance(user_id, str) or not user_id:
            raise Refused("40001", "isv.missing-to-user-id", "缺少to_user_id参数")
        template = biz.get("template")
        if not isinstance(template, dict) or not isinstance(template.get("template_id"), str):
            raise Refused("40001", "isv.missing-template", "缺少template或template_id参数")
        context = template.get("context")
        if not isinstance(context, dict):
            raise Refused("40002", "isv.invalid-parameter", "template.context必须是JSON对象")
        url = context.get("url")
        if url is not None and not (isinstance(url, str) and _URL.match(url)):
            raise Refused("40002", "isv.invalid-parameter", "context.url必须是http(s)绝对地址")
        for name, value in context.items():
            if name in ("first", "remark") or name.startswith("keyword"):
                if not isinstance(value, dict) or not isinstance(value.get("value"), str):
                    raise Refused("40002", "isv.invalid-parameter", f"context.{name}必须是含value字符串的对象")
        if template["template_id"] not in self.settings.template_ids:
            raise Refused("40004", "TEMPLATE_NOT_EXIST", "模板不存在或未领取")
        if not self.follows(user_id):
            raise Refused("40004", "USER_NOT_FOLLOW", "用户未关注生活号")
        out_biz_no = biz.get("out_biz_no")
        now = self.now()
        message = Message(
            msg_id=f"{now.astimezone(BEIJING):%Y%m%d%H%M%S}{next(self._ids):08d}",
            to_user_id=user_id,
            template_id=template["template_id"],
            context=dict(context),
            out_biz_no=str(out_biz_no) if out_biz_no else None,
            sent_at=now,
        )
        self.messages.append(message)
        log.info("accepted message %s (template %s)", message.msg_id, message.template_id)
        return {"msg_id": message.msg_id}

    def _query(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        user_id, out_biz_no = biz.get("to_user_id"), biz.get("out_biz_no")
        if not user_id or not out_biz_no:
            raise Refused("40001", "isv.missing-parameter", "缺少to_user_id或out_biz_no参数")
        found = [m.view() for m in self.messages if m.to_user_id == user_id and m.out_biz_no == out_biz_no]
        return {"messages": found}

    # -- the admin API ------------------------------------------------------------------------------

    def handle_admin(self, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
        args = dict(parse_qsl(query))
        data, problem = admin_json(body)
        if data is None:
            return 400, {"error": problem}
        try:
            match method, path:
                case "GET", "/_sim/messages":
                    limit = int(args.get("limit", "100"))
                    user = args.get("to_user_id")
                    found = [m.admin_view() for m in reversed(self.messages) if user is None or m.to_user_id == user]
                    return 200, {"messages": found[:limit]}
                case "POST", "/_sim/reset":
                    self.reset()
                    return 200, {"reset": True}
                case "GET", "/_sim/config":
                    return 200, self._config_view()
                case "POST", "/_sim/config":
                    return self._configure(data)
                case "GET", "/_sim/followers":
                    return 200, {"followers": self.followers, "follow_prefix": self.settings.follow_prefix}
                case "POST", "/_sim/followers":
                    user_id, following = data.get("user_id"), data.get("following", True)
                    if not isinstance(user_id, str) or not user_id or not isinstance(following, bool):
                        return 400, {"error": "give user_id (a string) and following (true or false)"}
                    self.followers[user_id] = following
                    return 200, {"user_id": user_id, "following": following}
                case "POST", "/_sim/faults":
                    fault = Fault(
                        kind=data.get("kind", "error"),
                        count=int(data.get("count", 1)),
                        code=str(data.get("code", "20000")),
                        sub_code=str(data.get("sub_code", "isp.unknow-error")),
                        sub_msg=str(data.get("sub_msg", "系统繁忙")),
                        method=data.get("method"),
                        accept=bool(data.get("accept", False)),
                    )
                    if fault.kind not in ("error", "unavailable", "timeout", "tamper") or fault.count < 1:
                        return 400, {"error": "kind must be error, unavailable, timeout or tamper, and count >= 1"}
                    self.faults.append(fault)
                    return 200, {"faults": [dataclasses.asdict(f) for f in self.faults]}
                case "GET", "/_sim/credentials":
                    return 200, {
                        "app_id": self.app_id,
                        "template_id": self.settings.template_ids[0] if self.settings.template_ids else None,
                        "app_private_key_pem": self.keys.app_private_key_pem,
                        "alipay_public_key_pem": self.keys.alipay_public_key_pem,
                    }
                case "GET", "/_sim/health":
                    return 200, {"ok": True, "app_id": self.app_id}
        except (ValueError, TypeError) as err:
            return 400, {"error": str(err)}
        return 404, {"error": f"no admin route {method} {path}"}

    def _config_view(self) -> dict[str, Any]:
        s = self.settings
        return {
            "template_ids": list(s.template_ids),
            "follow_prefix": s.follow_prefix,
            "fail_rate": s.fail_rate,
            "slow_ms": s.slow_ms,
            "seed": s.seed,
            "max_clock_skew_seconds": s.max_clock_skew_seconds,
            "query_supported": s.query_supported,
        }

    def _configure(self, data: Mapping[str, Any]) -> tuple[int, Any]:
        s = self.settings
        if "fail_rate" in data:
            rate = float(data["fail_rate"])
            if not 0 <= rate <= 1:
                return 400, {"error": "fail_rate must be between 0 and 1"}
            s.fail_rate = rate
        if "slow_ms" in data:
            slow = int(data["slow_ms"])
            if slow < 0:
                return 400, {"error": "slow_ms must be >= 0"}
            s.slow_ms = slow
        if "seed" in data:
            s.seed = None if data["seed"] is None else int(data["seed"])
            self.random = random.Random(s.seed)
        if "template_ids" in data:
            s.template_ids = tuple(str(t) for t in data["template_ids"])
        if "follow_prefix" in data:
            s.follow_prefix = None if data["follow_prefix"] is None else str(data["follow_prefix"])
        if "max_clock_skew_seconds" in data:
            s.max_clock_skew_seconds = float(data["max_clock_skew_seconds"])
        if "query_supported" in data:
            s.query_supported = bool(data["query_supported"])
        return 200, self._config_view()


class SimServer(SimulatorApp):
    """The I/O shell: an ASGI app for hypercorn."""

    max_body = MAX_BODY_BYTES

    def __init__(self, sim: AlipaySim) -> None:
        self.sim = sim

    async def too_large(self, send: Send) -> None:
        await respond(send, 413, b"request body too large", [(b"content-type", b"text/plain")])

    async def handle(self, request: Request, receive: Receive, send: Send) -> None:
        if request.path.startswith("/_sim/"):
            status, answer = self.sim.handle_admin(request.method, request.path, request.query, request.body)
            await respond(send, status, orjson.dumps(answer), [(b"content-type", b"application/json")])
            return
        if request.path != "/gateway.do":
            await respond(send, 404, b"not found", [(b"content-type", b"text/plain")])
            return
        reply = self.sim.handle_api(request.method, request.query, request.headers, request.body)
        if self.sim.settings.slow_ms:
            await trio.sleep(self.sim.settings.slow_ms / 1000)
        if reply.hang:
            await hang(receive, self.sim.settings.hang_seconds)
            return
        await respond(send, reply.status, reply.body, [(b"content-type", reply.content_type)])


@dataclasses.dataclass(frozen=True)
class SimHandle:
    """Where the simulator listens, and the configuration the app side needs."""

    base_url: str
    gateway_url: str
    app_id: str
    template_id: str
    app_private_key_pem: str = dataclasses.field(repr=False)
    alipay_public_key_pem: str = dataclasses.field(repr=False)


async def serve_alipay_sim(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    app_id: str = DEFAULT_APP_ID,
    keys: SimKeys | None = None,
    settings: SimSettings | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    task_status: trio.TaskStatus[SimHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulator until cancelled; ``task_status.started`` gets a :class:`SimHandle`.

    ``keys`` not given are generated (two RSA-2048 pairs, which takes a moment; tests pass one
    :func:`generate_keys` result to many simulators).
    """
    keys = keys or generate_keys()
    settings = dataclasses.replace(settings or SimSettings())
    sim = AlipaySim(app_id=app_id, keys=keys, settings=settings, clock=clock)
    async with trio.open_nursery() as nursery:
        url = await serve_app(nursery, SimServer(sim), host, port, logging.getLogger("hypercorn.error"))
        log.info("Alipay life-account simulator at %s (app_id %s)", url, app_id)
        task_status.started(
            SimHandle(
                base_url=url,
                gateway_url=f"{url}/gateway.do",
                app_id=app_id,
                template_id=settings.template_ids[0] if settings.template_ids else "",
                app_private_key_pem=keys.app_private_key_pem,
                alipay_public_key_pem=keys.alipay_public_key_pem,
            )
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m carehub.bots.alipay_sim", description="Alipay life-account template message simulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8094)
    parser.add_argument("--app-id", default=DEFAULT_APP_ID)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def start(nursery: trio.Nursery) -> None:
        handle: SimHandle = await nursery.start(
            functools.partial(serve_alipay_sim, host=args.host, port=args.port, app_id=args.app_id)
        )
        print(f"Alipay simulator listening on {handle.gateway_url} (app_id {handle.app_id})", flush=True)
        print(f"app configuration (test keys): GET {handle.base_url}/_sim/credentials", flush=True)

    run_until_signalled(start)


if __name__ == "__main__":
    main()

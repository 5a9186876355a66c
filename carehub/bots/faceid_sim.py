"""A simulator of Tencent Cloud FaceID (慧眼人脸核身) for tests, demos and local runs.

It plays the provider's side of real-name face verification, over HTTP, with its own copy of
the TC3-HMAC-SHA256 signature check (bots may not import CareHub, so nothing is shared with
``carehub.channels.faceid``: if the two disagree about the wire, the tests see it).

The provider's API (``POST /``, JSON, ``X-TC-Version: 2018-03-01``, TC3-signed):

- ``DetectAuth {RuleId, IdCard, Name, RedirectUrl, Extra}`` -> ``{Url, BizToken, RequestId}``.
  ``Url`` is this simulator's H5 page, ``/h5/verify?token=<BizToken>``.
- ``GetDetectInfoEnhanced {BizToken, RuleId, InfoType}`` -> ``{Text: {ErrCode, ErrMsg, IdCard,
  Name, LiveStatus, LiveMsg, Comparestatus, Comparemsg, Sim, Extra, ...}, RequestId}``. Before the
  person finishes the H5 step ``ErrCode`` is 17 (本次流程未完成); afterwards it is the scripted outcome.
- Errors come back as HTTP 200 ``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}``:
  ``AuthFailure.InvalidAuthorization`` (no or malformed Authorization), ``AuthFailure.SecretIdNotFound``,
  ``AuthFailure.SignatureExpire`` (``X-TC-Timestamp`` more than 5 minutes from the simulator's
  clock), ``AuthFailure.SignatureFailure``, ``NoSuchVersion``, ``InvalidAction``,
  ``MissingParameter``, ``InvalidParameterValue`` (e.g. an ID number whose GB 11643 check digit is
  wrong), ``InvalidParameterValue.RuleIdNotExist``, ``InvalidParameterValue.BizTokenIllegal``
  (never issued), ``InvalidParameterValue.BizTokenExpired`` (older than ``token_ttl_seconds``,
  3 days by default, as at Tencent) and ``InternalError`` (fault injection).

The person's side: ``GET /h5/verify?token=...`` stands for the person doing the face check. It
fixes the outcome and answers 302 to ``RedirectUrl`` with ``token=<BizToken>`` added to its
query. An unknown token gets 404, an expired one 410.

Outcomes (``Text`` fields; ``Sim`` is a string 0-100, as the provider sends it):

================  =======  ========== ============= ======  ==========================================
outcome           ErrCode  LiveStatus Comparestatus Sim     ErrMsg
================  =======  ========== ============= ======  ==========================================
pass (default)    0        0          0             92.57   成功
liveness_fail     1002     1002       null          null    疑似非真人录制
low_similarity    2016     0          2016          43.18   无法判断为同一人…(相似度未达到通过阈值)
mismatch          2006     0          2006          null    姓名和身份证号不匹配,请核实身份后重试
================  =======  ========== ============= ======  ==========================================

Administration (simulator only, unsigned: bind it to localhost):

- ``POST /_sim/script {"id_number" | "biz_token": ..., "outcome": ..., "sim": 75.0?}``: the outcome for
  one identity or one token (a token's script wins); ``sim`` overrides the table's ``Sim``.
  The outcome is fixed when the person finishes the H5 step.
- ``POST /_sim/clock {"advance_seconds": N}``: move the simulator's clock for token lifetimes
  (signature timestamps are still checked against the unshifted clock, so callers keep working).
- ``POST /_sim/fault {"code": "InternalError", "message"?, "count": 1}`` or ``{"http_status": 503}``:
  the next ``count`` API requests fail that way.
- ``POST /_sim/reset``: forget tokens, scripts, faults and the clock shift.
- ``GET /_sim/sessions``: the tokens issued so far and where each stands.

Synthetic identities only: the simulator holds no identity data, asks no authority and keeps
nothing beyond memory; "mismatch" is whatever the script says, never a lookup. Use made-up names
and ID numbers that merely carry a valid GB 11643 check digit (:func:`check_digit`).

Run it alone with ``python -m carehub.bots.faceid_sim --port 8790``, or in process with
:func:`serve_faceid_sim` on port 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import trio

from ._asgi import Receive, Request, Send, SimulatorApp, respond, run_until_signalled, serve_app

log = logging.getLogger("carehub.bots.faceid_sim")

API_VERSION = "2018-03-01"
SERVICE = "faceid"
ALGORITHM = "TC3-HMAC-SHA256"
#: the test credentials the stand-alone simulator accepts unless told otherwise
DEFAULT_SECRET_ID = "AKIDcarehubFaceIdSimulator0000000001"
DEFAULT_SECRET_KEY = "carehub-faceid-simulator-test-key"
DEFAULT_RULE_ID = "1"
DEFAULT_TOKEN_TTL_SECONDS = 3 * 24 * 3600
SIGNATURE_WINDOW_SECONDS = 300
DEFAULT_REDIRECT_URL = "https://cloud.tencent.com/product/faceid"
MAX_BODY = 4 * 1024 * 1024

_OK = "成功"
OUTCOMES: dict[str, dict[str, Any]] = {
    "pass": {
        "ErrCode": 0,
        "ErrMsg": _OK,
        "LiveStatus": 0,
        "LiveMsg": _OK,
        "Comparestatus": 0,
        "Comparemsg": _OK,
        "Sim": "92.57",
    },
    "liveness_fail": {
        "ErrCode": 1002,
        "ErrMsg": "疑似非真人录制",
        "LiveStatus": 1002,
        "LiveMsg": "疑似非真人录制",
        "Comparestatus": None,
        "Comparemsg": None,
        "Sim": None,
    },
    "low_similarity": {
        "ErrCode": 2016,
        "ErrMsg": "无法判断为同一人,请确认身份后重试(相似度未达到通过阈值)",
        "LiveStatus": 0,
        "LiveMsg": _OK,
        "Comparestatus": 2016,
        "Comparemsg": "相似度未达到通过阈值",
        "Sim": "43.18",
    },
    "mismatch": {
        "ErrCode": 2006,
        "ErrMsg": "姓名和身份证号不匹配,请核实身份后重试",
        "LiveStatus": 0,
        "LiveMsg": _OK,
        "Comparestatus": 2006,
        "Comparemsg": "姓名和身份证号不匹配",
        "Sim": None,
    },
}
_NOT_FINISHED = {
    "ErrCode": 17,
    "ErrMsg": "本次流程未完成",
    "LiveStatus": None,
    "LiveMsg": None,
    "Comparestatus": None,
    "Comparemsg": None,
    "Sim": None,
}

_GB11643_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_GB11643_DIGITS = "10X98765432"
_AUTH_RE = re.compile(
    r"^TC3-HMAC-SHA256\s+Credential=(?P<id>[^/\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/\s]+)/tc3_request,\s*"
    r"SignedHeaders=(?P<headers>[a-z0-9;\-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


def check_digit(first17: str) -> str:
    """The GB 11643 check character (``0-9`` or ``X``) for the first 17 digits of an ID number."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, _GB11643_WEIGHTS, strict=True))
    return _GB11643_DIGITS[total % 11]


def valid_id_number(value: str) -> bool:
    return bool(re.fullmatch(r"\d{17}[\dX]", value)) and check_digit(value[:17]) == value[17]


class ApiError(Exception):
    """A provider error: becomes ``Response.Error`` with HTTP 200, as Tencent Cloud answers."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    location: str | None = None


@dataclasses.dataclass(frozen=True)
class Script:
    outcome: str
    sim: float | None = None


@dataclasses.dataclass
class Session:
    """One BizToken: who it is for, where to send the person back, and (once finished) the outcome."""

    biz_token: str
    rule_id: str
    name: str
    id_number: str
    redirect_url: str
    extra: str | None
    created_at: float
    outcome: Script | None = None
    finished_at: float | None = None


@dataclasses.dataclass
class Fault:
    remaining: int
    code: str = "InternalError"
    message: str = "内部错误 (simulated fault)"
    http_status: int | None = None


def _json(status: int, value: Any) -> Reply:
    return Reply(status, orjson.dumps(value))


def _html(status: int, title: str, text: str) -> Reply:
    page = (
        f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body><h1>{title}</h1><p>{text}</p></body></html>"
    )
    return Reply(status, page.encode(), "text/html; charset=utf-8")


def _hmac_sha256(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


class FaceIdSimulator:
    """The provider's state and rules, without I/O: :meth:`handle` maps one HTTP request to a reply."""

    def __init__(
        self,
        *,
        secrets: Mapping[str, str],
        rule_ids: Iterable[str] = (DEFAULT_RULE_ID,),
        token_ttl_seconds: float = DEFAULT_TOKEN_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secrets = dict(secrets)
        self.rule_ids = frozenset(rule_ids)
        self.token_ttl_seconds = token_ttl_seconds
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.scripts_by_id: dict[str, Script] = {}
        self.scripts_by_token: dict[str, Script] = {}
        self.fault: Fault | None = None
        self.clock_offset = 0.0

    def now(self) -> float:
        """The simulator's time for token lifetimes (the wall clock plus what the admin advanced)."""
        return self.clock() + self.clock_offset

    # -- routing ---------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes, scheme: str) -> Reply:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        if path == "/" and method == "POST":
            return self._api(headers, body, scheme)
        if path == "/h5/verify" and method == "GET":
            return self._h5(query.get("token", [""])[0])
        if path.startswith("/_sim/"):
            return self._admin(method, path, body)
        return _json(404, {"error": f"no route {method} {path}"})

    # -- the provider's API --------------------------------------------------------------------

    def _api(self, headers: Mapping[str, str], body: bytes, scheme: str) -> Reply:
        request_id = str(uuid.uuid4())
        try:
            if self.fault is not None:
                fault = self.fault
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.fault = None
                if fault.http_status is not None:
                    return Reply(fault.http_status, b"<html><body>502 Bad Gateway</body></html>", "text/html")
                raise ApiError(fault.code, fault.message)
            self._verify_signature(headers, body)
            if headers.get("x-tc-version") != API_VERSION:
                raise ApiError("NoSuchVersion", f"接口版本不存在: {headers.get('x-tc-version')!r}")
            try:
                params = orjson.loads(body)
            except orjson.JSONDecodeError as err:
                raise ApiError("InvalidParameter", f"请求体不是合法的 JSON: {err}") from err
            if not isinstance(params, dict):
                raise ApiError("InvalidParameter", "请求体必须是 JSON 对象")
            action = headers.get("x-tc-action", "")
            if action == "DetectAuth":
                result = self._detect_auth(params, scheme, headers["host"])
            elif action == "GetDetectInfoEnhanced":
                result = self._get_detect_info(params)
            else:
                raise ApiError("InvalidAction", f"接口不存在: {action!r}")
        except ApiError as err:
            log.info("faceid sim refused %s request_id=%s", err.code, request_id)
            return _json(
                200, {"Response": {"Error": {"Code": err.code, "Message": err.message}, "RequestId": request_id}}
            )
        return _json(200, {"Response": {**result, "RequestId": request_id}})

    def _verify_signature(self, headers: Mapping[str, str], body: bytes) -> None:
        match = _AUTH_RE.match(headers.get("authorization", "").strip())
        if match is None:
            raise ApiError("AuthFailure.InvalidAuthorization", "请求头部的 Authorization 不符合腾讯云标准")
        secret_key = self.secrets.get(match["id"])
        if secret_key is None:
            raise ApiError(
                "AuthFailure.SecretIdNotFound", "密钥不存在，请到控制台查看密钥是否被禁用或者是否复制了少字符或者多字符"
            )
        try:
            timestamp = int(headers.get("x-tc-timestamp", ""))
        except ValueError as err:
            raise ApiError("MissingParameter", "缺少或无法解析 X-TC-Timestamp") from err
        if abs(self.clock() - timestamp) > SIGNATURE_WINDOW_SECONDS:
            raise ApiError("AuthFailure.SignatureExpire", "签名过期。Timestamp 和服务器时间相差不得超过五分钟")
        signed = match["headers"].split(";")
        date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
        if match["service"] != SERVICE or match["date"] != date or not {"content-type", "host"} <= set(signed):
            raise ApiError("AuthFailure.SignatureFailure", "请求签名验证失败，请检查您的签名计算是否正确")
        if signed != sorted(signed) or any(name not in headers for name in signed):
            raise ApiError("AuthFailure.SignatureFailure", "请求签名验证失败，请检查您的签名计算是否正确")
        canonical_headers = "".join(f"{name}:{headers[name].strip().lower()}\n" for name in signed)
        canonical_request = "\n".join(
            ["POST", "/", "", canonical_headers, ";".join(signed), hashlib.sha256(body).hexdigest()]
        )
        string_to_sign = "\n".join(
            [
                ALGORITHM,
                str(timestamp),
                f"{date}/{SERVICE}/tc3_request",
                hashlib.sha256(canonical_request.encode()).hexdigest(),
            ]
        )
        key = _hmac_sha256(("TC3" + secret_key).encode(), date)
        key = _hmac_sha256(key, SERVICE)
        key = _hmac_sha256(key, "tc3_request")
        expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match["signature"]):
            raise ApiError("AuthFailure.SignatureFailure", "请求签名验证失败，请检查您的签名计算是否正确")

    def _rule(self, params: Mapping[str, Any]) -> str:
        rule_id = params.get("RuleId")
        if not isinstance(rule_id, str) or not rule_id:
            raise ApiError("MissingParameter", "缺少参数 RuleId")
        if rule_id not in self.rule_ids:
            raise ApiError("InvalidParameterValue.RuleIdNotExist", f"RuleId 不存在: {rule_id}")
        return rule_id

    def _detect_auth(self, params: Mapping[str, Any], scheme: str, host: str) -> dict[str, Any]:
        rule_id = self._rule(params)
        name, id_number = params.get("Name"), params.get("IdCard")
        if not isinstance(name, str) or not name.strip():
            raise ApiError("MissingParameter", "缺少参数 Name")
        if len(name) > 32:
            raise ApiError("InvalidParameterValue", "Name 最长 32 位")
        if not isinstance(id_number, str) or not id_number:
            raise ApiError("MissingParameter", "缺少参数 IdCard")
        if not valid_id_number(id_number):
            raise ApiError("InvalidParameterValue", "IdCard 格式错误（18 位，GB 11643 校验位不符）")
        redirect_url = params.get("RedirectUrl") or DEFAULT_REDIRECT_URL
        if not isinstance(redirect_url, str) or urlsplit(redirect_url).scheme not in ("http", "https"):
            raise ApiError("InvalidParameterValue", "RedirectUrl 必须是 http(s) 地址")
        if len(redirect_url) > 1024:
            raise ApiError("InvalidParameterValue", "RedirectUrl 最长 1024 位")
        extra = params.get("Extra")
        if extra is not None and (not isinstance(extra, str) or len(extra) > 1024):
            raise ApiError("InvalidParameterValue", "Extra 必须是不超过 1024 位的字符串")
        token = str(uuid.uuid4()).upper()
        self.sessions[token] = Session(token, rule_id, name, id_number, redirect_url, extra, self.now())
        return {"Url": f"{scheme}://{host}/h5/verify?token={token}", "BizToken": token}

    def _session(self, token: str) -> Session:
        session = self.sessions.get(token)
        if session is None:
            raise ApiError("InvalidParameterValue.BizTokenIllegal", "BizToken 不合法")
        if self.now() - session.created_at > self.token_ttl_seconds:
            raise ApiError("InvalidParameterValue.BizTokenExpired", "BizToken 过期")
        return session

    def _get_detect_info(self, params: Mapping[str, Any]) -> dict[str, Any]:
        token = params.get("BizToken")
        if not isinstance(token, str) or not token:
            raise ApiError("MissingParameter", "缺少参数 BizToken")
        rule_id = self._rule(params)
        session = self._session(token)
        if session.rule_id != rule_id:
            raise ApiError("InvalidParameterValue.BizTokenIllegal", "BizToken 与 RuleId 不匹配")
        info_type = params.get("InfoType", "0")
        if not isinstance(info_type, str) or not re.fullmatch(r"[0-4]+", info_type):
            raise ApiError("InvalidParameterValue", f"InfoType 取值错误: {info_type!r}")
        if session.outcome is None:
            verdict = dict(_NOT_FINISHED)
        else:
            verdict = dict(OUTCOMES[session.outcome.outcome])
            if session.outcome.sim is not None:
                verdict["Sim"] = f"{session.outcome.sim:.2f}"
        text = {
            **verdict,
            "IdCard": session.id_number,
            "Name": session.name,
            "UseIDType": 0,
            "OcrNation": None,
            "OcrAddress": None,
            "OcrBirth": None,
            "OcrAuthority": None,
            "OcrValidDate": None,
            "OcrName": None,
            "OcrIdCard": None,
            "OcrGender": None,
            "Location": None,
            "Extra": session.extra,
            "LivenessDetail": [],
            "Mobile": "",
            "CompareLibType": "权威库",
            "LivenessMode": 5,
        }
        return {"Text": text, "IdCardData": None, "BestFrame": None, "VideoData": None, "Encryption": None}

    # -- the person's side -----------------------------------------------------------------

    def _h5(self, token: str) -> Reply:
        session = self.sessions.get(token)
        if session is None:
            return _html(404, "链接无效", "该人脸核身链接不存在，请返回重新发起。")
        if self.now() - session.created_at > self.token_ttl_seconds:
            return _html(410, "链接已过期", "Token 过期，请返回重新发起人脸核身。")
        if session.outcome is None:
            session.outcome = (
                self.scripts_by_token.get(token) or self.scripts_by_id.get(session.id_number) or Script("pass")
            )
            session.finished_at = self.now()
        separator = "&" if urlsplit(session.redirect_url).query else "?"
        location = f"{session.redirect_url}{separator}token={token}"
        return Reply(302, b"", "text/plain; charset=utf-8", location)

    # -- administration --------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: bytes) -> Reply:
        if method == "GET" and path == "/_sim/sessions":
            return _json(200, {"sessions": [self._describe(session) for session in self.sessions.values()]})
        if method != "POST":
            return _json(405, {"error": f"{method} {path} is not allowed"})
        try:
            data = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError as err:
            return _json(400, {"error": f"body is not JSON: {err}"})
        if not isinstance(data, dict):
            return _json(400, {"error": "body must be a JSON object"})
        try:
            if path == "/_sim/script":
                return self._admin_script(data)
            if path == "/_sim/clock":
                self.clock_offset += float(data["advance_seconds"])
                return _json(200, {"ok": True, "offset_seconds": self.clock_offset})
            if path == "/_sim/fault":
                self.fault = Fault(
                    remaining=int(data.get("count", 1)),
                    code=str(data.get("code", "InternalError")),
                    message=str(data.get("message", "内部错误 (simulated fault)")),
                    http_status=int(data["http_status"]) if data.get("http_status") is not None else None,
                )
                return _json(200, {"ok": True})
            if path == "/_sim/reset":
                self.reset()
                return _json(200, {"ok": True})
        except (KeyError, TypeError, ValueError) as err:
            return _json(400, {"error": f"bad {path} request: {type(err).__name__}: {err}"})
        return _json(404, {"error": f"no route {method} {path}"})

    def _admin_script(self, data: Mapping[str, Any]) -> Reply:
        outcome = data.get("outcome", "pass")
        if outcome not in OUTCOMES:
            return _json(400, {"error": f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}"})
        sim = data.get("sim")
        if sim is not None and not (isinstance(sim, int | float) and 0 <= sim <= 100):
            return _json(400, {"error": "sim must be a number from 0 to 100"})
        script = Script(outcome, float(sim) if sim is not None else None)
        if isinstance(data.get("biz_token"), str):
            self.scripts_by_token[data["biz_token"]] = script
        elif isinstance(data.get("id_number"), str):
            self.scripts_by_id[data["id_number"]] = script
        else:
            return _json(400, {"error": "give id_number or biz_token"})
        return _json(200, {"ok": True})

    def _describe(self, session: Session) -> dict[str, Any]:
        expired = self.now() - session.created_at > self.token_ttl_seconds
        state = "expired" if expired else "pending" if session.outcome is None else "finished"
        return {
            "biz_token": session.biz_token,
            "rule_id": session.rule_id,
            "name": session.name,
            "id_number": session.id_number,
            "state": state,
            "outcome": session.outcome.outcome if session.outcome else None,
        }


# -- the HTTP shell ----------------------------------------------------------------------------


class FaceIdSimApp(SimulatorApp):
    """The ASGI application around a :class:`FaceIdSimulator`."""

    max_body = MAX_BODY

    def __init__(self, sim: FaceIdSimulator) -> None:
        self.sim = sim

    async def too_large(self, send: Send) -> None:
        await self._answer(send, _json(413, {"error": f"body larger than {MAX_BODY} bytes"}))

    async def handle(self, request: Request, receive: Receive, send: Send) -> None:
        target = request.path + ("?" + request.query if request.query else "")
        await self._answer(send, self.sim.handle(request.method, target, request.headers, request.body, request.scheme))

    @staticmethod
    async def _answer(send: Send, reply: Reply) -> None:
        headers = [(b"content-type", reply.content_type.encode())]
        if reply.location is not None:
            headers.append((b"location", reply.location.encode()))
        await respond(send, reply.status, reply.body, headers)


async def serve_faceid_sim(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    secret_id: str,
    secret_key: str,
    rule_ids: Iterable[str] = (DEFAULT_RULE_ID,),
    token_ttl_seconds: float = DEFAULT_TOKEN_TTL_SECONDS,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulator until cancelled; ``task_status.started`` gets the base URL (``http://host:port``)."""
    sim = FaceIdSimulator(
        secrets={secret_id: secret_key}, rule_ids=rule_ids, token_ttl_seconds=token_ttl_seconds, clock=clock
    )
    async with trio.open_nursery() as nursery:
        base_url = await serve_app(nursery, FaceIdSimApp(sim), host, port, log)
        log.info("FaceID simulator on %s", base_url)
        task_status.started(base_url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m carehub.bots.faceid_sim", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--secret-id", default=DEFAULT_SECRET_ID)
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    parser.add_argument(
        "--rule-id", action="append", dest="rule_ids", help=f"accepted RuleId (default {DEFAULT_RULE_ID})"
    )
    parser.add_argument("--token-ttl", type=float, default=DEFAULT_TOKEN_TTL_SECONDS, help="BizToken lifetime, seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def start(nursery: trio.Nursery) -> None:
        await nursery.start(
            functools.partial(
                serve_faceid_sim,
                host=args.host,
                port=args.port,
                secret_id=args.secret_id,
                secret_key=args.secret_key,
                rule_ids=args.rule_ids or (DEFAULT_RULE_ID,),
                token_ttl_seconds=args.token_ttl,
            )
        )

    run_until_signalled(start)


if __name__ == "__main__":
    main()

"""Real-name face verification through Tencent Cloud FaceID (慧眼人脸核身), API 3.0, ``Version=2018-03-01``.

The flow (ME-1, "face check through a third-party verification adapter"):

1. :meth:`FaceIdChannel.start` calls ``DetectAuth`` with the patient's name and resident ID number
   and gets a ``BizToken`` and an H5 ``Url``. CareHub sends the patient to that URL.
2. The patient does the liveness check and the comparison with the authority photo on the
   provider's page, which then redirects the browser to ``RedirectUrl`` with ``token=<BizToken>``.
3. :meth:`FaceIdChannel.result` calls ``GetDetectInfoEnhanced`` (``InfoType "0"``) and returns a
   :class:`FaceResult`: passed, failed (with the provider's Chinese reason) or still pending.
   A BizToken can be read for three days after ``DetectAuth``.

Every request is a POST of JSON to ``/`` signed with TC3-HMAC-SHA256 (:func:`tc3_headers`):
the canonical request signs ``content-type`` and ``host``, the credential scope is
``<UTC date>/faceid/tc3_request``, and the key is derived ``"TC3" + SecretKey`` -> date ->
service -> ``tc3_request``. The provider refuses a timestamp more than five minutes off its clock.

When a face check passes (:data:`FaceOutcome.PASSED`), all of these hold:

- ``Text.ErrCode == 0`` (the provider's own verdict), ``LiveStatus == 0`` and ``Comparestatus == 0``;
- ``Sim`` (0-100) is at least ``FaceIdConfig.min_similarity``, **80** by default.

Why 80: Tencent's guidance is that a threshold of 70 falsely accepts about 1 in 1,000 strangers
and 80 about 1 in 10,000. A verified patient can consult online, receive prescriptions and pay
with medical insurance, so a false acceptance costs more than a false rejection, and a rejected
patient still has the manual path (an uploaded ID photo reviewed by an admin). A provider pass
below our threshold is reported as failed with code 2016 and a reason that says so.

``ErrCode`` missing or 17 (本次流程未完成) means the patient has not finished: the result is
:data:`FaceOutcome.PENDING`, which is neither a pass nor an error; poll again later.

The caller must still check that ``FaceResult.id_number`` and ``FaceResult.name`` are the ones it
started the check for (a result is about whoever held the token).

Errors (all carry the provider's ``code``, ``message`` and ``request_id``)::

    FaceIdError(retryable)
    ├── FaceIdAuthFailed       AuthFailure.*: wrong SecretKey, unknown SecretId, clock off by > 5 min
    ├── FaceIdTokenError       the BizToken cannot be read
    │   ├── FaceIdTokenExpired     InvalidParameterValue.BizTokenExpired (older than 3 days)
    │   └── FaceIdTokenNotFound    InvalidParameterValue.BizTokenIllegal (never issued to us)
    ├── FaceIdUnavailable      retryable: InternalError, RequestLimitExceeded, ResourceUnavailable,
    │                          network failures, HTTP 5xx, a reply that is not the provider's JSON
    └── FaceIdRejected         any other provider error (bad parameter, service not activated ...)

Only :class:`FaceIdUnavailable` is retryable; a retry of ``DetectAuth`` merely issues another
token (the unused one expires on its own).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, NewType

import httpx
import orjson

log = logging.getLogger("carehub.channels.faceid")

BizToken = NewType("BizToken", str)

API_VERSION = "2018-03-01"
SERVICE = "faceid"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"
#: ``Text.ErrCode`` values with a meaning of their own.
ERR_PASSED = 0
ERR_NOT_FINISHED = 17
ERR_LOW_SIMILARITY = 2016

_RETRYABLE_PREFIXES = ("InternalError", "RequestLimitExceeded", "ResourceUnavailable")
_TOKEN_EXPIRED = "InvalidParameterValue.BizTokenExpired"
_TOKEN_ILLEGAL = "InvalidParameterValue.BizTokenIllegal"


# -- errors ----------------------------------------------------------------------------------


class FaceIdError(Exception):
    """The face check could not be started or read. ``retryable`` says whether trying again may help."""

    retryable = False

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (RequestId {request_id})" if request_id else ""))
        self.code = code
        self.message = message
        self.request_id = request_id


class FaceIdAuthFailed(FaceIdError):
    """The provider refused our signature: wrong key, unknown SecretId or a clock more than 5 minutes off."""


class FaceIdTokenError(FaceIdError):
    """The BizToken cannot be read."""


class FaceIdTokenExpired(FaceIdTokenError):
    """The BizToken is older than the provider keeps results (3 days): start a new face check."""


class FaceIdTokenNotFound(FaceIdTokenError):
    """The provider never issued this BizToken (to this account)."""


class FaceIdUnavailable(FaceIdError):
    """The provider is down, overloaded or unreachable: try again later."""

    retryable = True


class FaceIdRejected(FaceIdError):
    """The provider refused the request for a reason retrying will not fix."""


def error_for(code: str, message: str, request_id: str | None) -> FaceIdError:
    """The exception for one of the provider's ``Response.Error`` codes."""
    if code.startswith("AuthFailure"):
        return FaceIdAuthFailed(code, message, request_id)
    if code == _TOKEN_EXPIRED:
        return FaceIdTokenExpired(code, message, request_id)
    if code == _TOKEN_ILLEGAL:
        return FaceIdTokenNotFound(code, message, request_id)
    if code.startswith(_RETRYABLE_PREFIXES):
        return FaceIdUnavailable(code, message, request_id)
    return FaceIdRejected(code, message, request_id)


# -- signing ----------------------------------------------------------------------------------


def _hmac_sha256(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def tc3_signature(
    *, secret_key: str, service: str, host: str, payload: bytes, timestamp: int, content_type: str = CONTENT_TYPE
) -> str:
    """The hex TC3-HMAC-SHA256 signature of a POST to ``/`` signing ``content-type;host``."""
    date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    canonical_request = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:{content_type.strip().lower()}\nhost:{host.strip().lower()}\n",
            "content-type;host",
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    string_to_sign = "\n".join(
        [
            ALGORITHM,
            str(timestamp),
            f"{date}/{service}/tc3_request",
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac_sha256(("TC3" + secret_key).encode(), date)
    key = _hmac_sha256(key, service)
    key = _hmac_sha256(key, "tc3_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def tc3_headers(
    *,
    secret_id: str,
    secret_key: str,
    host: str,
    action: str,
    payload: bytes,
    timestamp: int,
    service: str = SERVICE,
    version: str = API_VERSION,
    region: str | None = None,
) -> dict[str, str]:
    """All headers of a signed API 3.0 request (``Host`` included, so what is signed is what is sent)."""
    signature = tc3_signature(secret_key=secret_key, service=service, host=host, payload=payload, timestamp=timestamp)
    date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    headers = {
        "Authorization": (
            f"{ALGORITHM} Credential={secret_id}/{date}/{service}/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signature}"
        ),
        "Content-Type": CONTENT_TYPE,
        "Host": host,
        "X-TC-Action": action,
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Version": version,
    }
    if region:
        headers["X-TC-Region"] = region
    return headers


# -- configuration and results ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FaceIdConfig:
    """How CareHub reaches FaceID. ``endpoint`` is ``https://faceid.tencentcloudapi.com`` in production."""

    endpoint: str
    secret_id: str
    secret_key: str = dataclasses.field(repr=False)
    rule_id: str
    #: where the provider's page sends the patient back (CareHub's page that polls the result)
    redirect_url: str
    region: str | None = None
    min_similarity: float = 80.0
    timeout_seconds: float = 10.0


@dataclasses.dataclass(frozen=True)
class FaceSession:
    """A started face check: send the patient to ``url``; keep ``biz_token`` to read the result."""

    url: str
    biz_token: BizToken
    request_id: str


class FaceOutcome(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    PENDING = "pending"


@dataclasses.dataclass(frozen=True)
class FaceResult:
    """What the provider says about one face check, judged by the pass rule in the module docstring."""

    outcome: FaceOutcome
    #: the provider's ``Text.ErrCode`` (0 passed, 17 not finished, 1xxx liveness, 2xxx comparison)
    reason_code: int | None
    #: the reason in Chinese, fit to show the patient
    reason: str
    similarity: float | None
    live_status: int | None
    compare_status: int | None
    #: name and ID number as the provider returns them
    name: str | None
    id_number: str | None
    extra: str | None
    request_id: str

    @property
    def passed(self) -> bool:
        return self.outcome is FaceOutcome.PASSED

    @property
    def pending(self) -> bool:
        return self.outcome is FaceOutcome.PENDING


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def judge(text: Mapping[str, Any], *, min_similarity: float, request_id: str) -> FaceResult:
    """Turn ``GetDetectInfoEnhanced``'s ``Text`` into a :class:`FaceResult` (pure, no I/O)."""
    err_code = _int_or_none(text.get("ErrCode"))
    live_status = _int_or_none(text.get("LiveStatus"))
    compare_status = _int_or_none(text.get("Comparestatus"))
    similarity = _float_or_none(text.get("Sim"))
    reason = str(text.get("ErrMsg") or "")
    outcome = FaceOutcome.FAILED
    if err_code is None or err_code == ERR_NOT_FINISHED:
        outcome = FaceOutcome.PENDING
        reason = reason or "尚未完成人脸核身"
    elif err_code == ERR_PASSED:
        if live_status != 0 or compare_status != 0:
            # the overall verdict contradicts a stage's: trust the stage that did not pass
            err_code = next((s for s in (live_status, compare_status) if s not in (0, None)), err_code)
            reason = "人脸核身结果不完整（活体或比对未通过），请重试"
        elif similarity is None or similarity < min_similarity:
            err_code = ERR_LOW_SIMILARITY
            shown = "无" if similarity is None else f"{similarity:.2f}"
            reason = f"人脸比对相似度 {shown} 低于本院要求的 {min_similarity:.0f}，请重试或上传身份证照片人工审核"
        else:
            outcome = FaceOutcome.PASSED
            reason = reason or "成功"
    else:
        reason = reason or f"人脸核身未通过（错误码 {err_code}）"
    return FaceResult(
        outcome=outcome,
        reason_code=err_code,
        reason=reason,
        similarity=similarity,
        live_status=live_status,
        compare_status=compare_status,
        name=text.get("Name") or None,
        id_number=text.get("IdCard") or None,
        extra=text.get("Extra") or None,
        request_id=request_id,
    )


# -- the channel ------------------------------------------------------------------------------------


class FaceIdChannel:
    """Signed calls to FaceID over an ``httpx.AsyncClient`` (works under Trio)."""

    def __init__(
        self, config: FaceIdConfig, http: httpx.AsyncClient, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self._http = http
        self._clock = clock
        self._url = httpx.URL(config.endpoint.rstrip("/") + "/")

    async def start(
        self, name: str, id_number: str, *, extra: str | None = None, redirect_url: str | None = None
    ) -> FaceSession:
        """Start a face check (``DetectAuth``) for one person; ``extra`` comes back in the result."""
        params: dict[str, Any] = {
            "RuleId": self.config.rule_id,
            "IdCard": id_number,
            "Name": name,
            "RedirectUrl": redirect_url or self.config.redirect_url,
        }
        if extra is not None:
            params["Extra"] = extra
        response = await self._call("DetectAuth", params)
        url, token = response.get("Url"), response.get("BizToken")
        request_id = str(response.get("RequestId", ""))
        if not isinstance(url, str) or not isinstance(token, str) or not token:
            raise FaceIdUnavailable("MalformedResponse", "DetectAuth answered without Url or BizToken", request_id)
        log.info("face check started biz_token=%s request_id=%s", token, request_id)
        return FaceSession(url=url, biz_token=BizToken(token), request_id=request_id)

    async def result(self, biz_token: str) -> FaceResult:
        """Read the outcome of a face check (``GetDetectInfoEnhanced``, ``InfoType "0"``)."""
        response = await self._call(
            "GetDetectInfoEnhanced", {"BizToken": biz_token, "RuleId": self.config.rule_id, "InfoType": "0"}
        )
        request_id = str(response.get("RequestId", ""))
        text = response.get("Text")
        if not isinstance(text, dict):
            raise FaceIdUnavailable("MalformedResponse", "GetDetectInfoEnhanced answered without Text", request_id)
        result = judge(text, min_similarity=self.config.min_similarity, request_id=request_id)
        log.info(
            "face check biz_token=%s outcome=%s code=%s request_id=%s",
            biz_token,
            result.outcome.value,
            result.reason_code,
            request_id,
        )
        return result

    async def _call(self, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        payload = orjson.dumps(params)
        request = self._http.build_request("POST", self._url, content=payload)
        request.headers.update(
            tc3_headers(
                secret_id=self.config.secret_id,
                secret_key=self.config.secret_key,
                host=request.headers["Host"],
                action=action,
                payload=payload,
                timestamp=int(self._clock()),
                region=self.config.region,
            )
        )
        try:
            reply = await self._http.send(request)
        except httpx.TimeoutException as err:
            raise FaceIdUnavailable("Timeout", f"{action}: no answer within {self.config.timeout_seconds}s") from err
        except httpx.TransportError as err:
            raise FaceIdUnavailable("NetworkError", f"{action}: {type(err).__name__}: {err}") from err
        try:
            body = orjson.loads(reply.content)
            response = body["Response"]
            if not isinstance(response, dict):
                raise TypeError("Response is not an object")
        except (orjson.JSONDecodeError, KeyError, TypeError) as err:
            message = f"{action}: HTTP {reply.status_code} without the provider's JSON envelope"
            if reply.status_code >= 500 or reply.status_code in (200, 429):
                raise FaceIdUnavailable("MalformedResponse", message) from err
            raise FaceIdRejected(f"HTTP{reply.status_code}", message) from err
        error = response.get("Error")
        if isinstance(error, dict):
            request_id = response.get("RequestId")
            raise error_for(
                str(error.get("Code", "UnknownError")),
                str(error.get("Message", "")),
                str(request_id) if request_id is not None else None,
            )
        if reply.status_code >= 500:
            raise FaceIdUnavailable(f"HTTP{reply.status_code}", f"{action}: HTTP {reply.status_code}")
        return response


@asynccontextmanager
async def open_faceid_channel(
    config: FaceIdConfig, *, clock: Callable[[], float] = time.time
) -> AsyncIterator[FaceIdChannel]:
    """A :class:`FaceIdChannel` with its own HTTP client, closed on exit."""
    async with httpx.AsyncClient(timeout=config.timeout_seconds, follow_redirects=False) as http:
        yield FaceIdChannel(config, http, clock=clock)

"""What the REST route modules share: request bodies, argument parsing, error mapping."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
from quart import request

from carehub.identity import (
    AccountLocked,
    AuthFailed,
    Principal,
    RateLimited,
    SmsUnavailable,
)
from carehub.identity.patients import PatientRefused
from carehub.storage.keyring import DecryptionFailed, IntegrityError, KeyRingError

from ..context import Services
from ..errors import ApiError
from ..ws import CLOSE_REVOKED

log = logging.getLogger("carehub.http")


class Login(msgspec.Struct, forbid_unknown_fields=True):
    login: str
    password: str
    #: staff: the 6-digit code of their authenticator app (TOTP)
    totp: str | None = None


class SmsCodeRequest(msgspec.Struct, forbid_unknown_fields=True):
    phone: str


class SmsLogin(msgspec.Struct, forbid_unknown_fields=True):
    phone: str
    code: str


class Call(msgspec.Struct, forbid_unknown_fields=True):
    to: str
    type: str
    body: dict[str, Any] = msgspec.field(default_factory=dict)


class PublishBody(msgspec.Struct, forbid_unknown_fields=True):
    topic: str
    type: str
    body: dict[str, Any] = msgspec.field(default_factory=dict)


class NewAccountBody(msgspec.Struct, forbid_unknown_fields=True):
    login: str
    display_name: str
    roles: list[str]
    password: str | None = None
    phone: str | None = None
    #: patients the hospital already verified at its counter (imported from the HIS)
    real_name: str | None = None
    id_number: str | None = None


class AddPatient(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    id_number: str
    relation: str
    guardian_consent: bool = False


class PatientUpdate(msgspec.Struct, forbid_unknown_fields=True):
    relation: str


class ConsentAnswer(msgspec.Struct, forbid_unknown_fields=True):
    patient_id: str
    requester: str
    grant: bool


class ReviewDecision(msgspec.Struct, forbid_unknown_fields=True):
    approve: bool
    reason: str | None = None


class BreakGlass(msgspec.Struct, forbid_unknown_fields=True):
    reason: str


class RoleBody(msgspec.Struct, forbid_unknown_fields=True):
    permissions: list[str]
    menus: list[str] = msgspec.field(default_factory=list)
    description: str = ""


class AccountRoles(msgspec.Struct, forbid_unknown_fields=True):
    roles: list[str]


class NewPartnerKey(msgspec.Struct, forbid_unknown_fields=True):
    operations: list[str]


class NewAccounts(msgspec.Struct, forbid_unknown_fields=True):
    accounts: list[NewAccountBody]


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"query parameter {name!r} must be a whole number") from None
    if not low <= value <= high:
        raise ApiError(400, "bad_request", f"query parameter {name!r} must be between {low} and {high}")
    return value


AUDIT_QUERY = ("actor", "action", "target", "since", "until", "outcome", "limit", "offset")


def _time_arg(name: str) -> dt.datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"query parameter {name!r} must be an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def audit_filters() -> dict[str, Any]:
    outcome = request.args.get("outcome") or None
    if outcome is not None and outcome not in ("ok", "denied", "error"):
        raise ApiError(400, "bad_request", "outcome must be ok, denied or error")
    return {
        "actor": request.args.get("actor") or None,
        "action": request.args.get("action") or None,
        "target_prefix": request.args.get("target") or None,
        "since": _time_arg("since"),
        "until": _time_arg("until"),
        "outcome": outcome,
    }


def client_ip() -> str | None:
    return request.remote_addr


def session_body(token: str, principal: Principal) -> dict[str, Any]:
    return {
        "token": token,
        "account": {"id": principal.account_id, "name": principal.display_name, "roles": sorted(principal.roles)},
    }


@contextmanager
def sign_in_errors() -> Iterator[None]:
    """Sign-in failures as HTTP: 401 wrong, 423 locked, 429 too often, 422 bad phone, 503 no SMS."""
    try:
        yield
    except AuthFailed as err:
        raise ApiError(401, "auth_failed", str(err)) from None
    except AccountLocked as err:
        seconds = max(1, int((err.until - dt.datetime.now(dt.UTC)).total_seconds()))
        raise ApiError(423, "account_locked", str(err), headers={"Retry-After": str(seconds)}) from None
    except RateLimited as err:
        raise ApiError(429, "rate_limited", err.message, headers={"Retry-After": str(err.retry_after)}) from None
    except SmsUnavailable as err:
        raise ApiError(503, "sms_unavailable", str(err)) from None
    except (DecryptionFailed, KeyRingError) as err:
        raise key_ring_error(err) from None
    except ValueError as err:
        raise ApiError(422, "invalid", str(err)) from None


def key_ring_error(err: Exception) -> ApiError:
    """Stored values that do not open: the key file is not the one they were written with."""
    log.error("ALARM key ring: %s (is CAREHUB_KEY_FILE the key file this database was written with?)", err)
    message = "加密密钥与数据库不匹配，已通知运维 (the encryption keys do not fit the data)"
    return ApiError(503, "key_ring_mismatch", message)


@contextmanager
def patient_errors() -> Iterator[None]:
    try:
        yield
    except PatientRefused as err:
        raise ApiError(err.status, err.code, err.message) from None
    except (DecryptionFailed, KeyRingError) as err:
        raise key_ring_error(err) from None
    except IntegrityError as err:
        log.error("ALARM integrity: %s", err)
        message = "数据完整性校验失败，已通知运维 (a stored record failed its check)"
        raise ApiError(500, "integrity_error", message) from None


def close_sessions(services: Services, token_hashes: set[str], reason: str) -> None:
    """Close every WebSocket opened with one of these (now revoked) tokens, with 4003."""
    for conn in list(services.connections.values()):
        if conn.principal is not None and conn.principal.token_hash in token_hashes:
            conn.kick(CLOSE_REVOKED, reason)


def ops_figures(services: Services) -> dict[str, Any]:
    snap = services.hub.snapshot()
    snap["connections"] = len(services.push.sessions)
    snap["accounts_online"] = len(services.push.by_account)
    snap["topics"] = services.hub.topics.topic_count()
    snap["reminders_due"] = services.extra.get("reminders_due", 0)
    snap["ws_bad_frames"] = services.stats.bad_frames
    snap["ws_kicked_slow"] = services.stats.kicked_slow
    snap["ws_sockets_full"] = services.flusher.full
    snap["pushed_total"] = services.push.pushed
    return snap



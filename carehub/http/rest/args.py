"""Query-string arguments of REST routes, checked: a bad value is a 400 that says what is wrong."""

from __future__ import annotations

import datetime as dt
from typing import Any

from quart import request

from ..errors import ApiError


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"参数 {name} 必须是整数 ({name} must be a whole number)") from None
    if not low <= value <= high:
        raise ApiError(400, "bad_request", f"参数 {name} 必须在 {low} 到 {high} 之间 ({name}: {low}..{high})")
    return value


AUDIT_QUERY = ("actor", "action", "target", "since", "until", "outcome", "limit", "offset")


def time_arg(name: str) -> dt.datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"参数 {name} 必须是 ISO 8601 时间 ({name}: ISO 8601)") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def audit_filters() -> dict[str, Any]:
    outcome = request.args.get("outcome") or None
    if outcome is not None and outcome not in ("ok", "denied", "error"):
        raise ApiError(400, "bad_request", "结果只能是 ok、denied 或 error (outcome must be ok, denied or error)")
    return {
        "actor": request.args.get("actor") or None,
        "action": request.args.get("action") or None,
        "target_prefix": request.args.get("target") or None,
        "since": time_arg("since"),
        "until": time_arg("until"),
        "outcome": outcome,
    }


def client_ip() -> str | None:
    return request.remote_addr

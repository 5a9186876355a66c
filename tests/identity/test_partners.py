"""Third-party systems: HMAC-SM3 signed requests, replay and staleness refused, per-key operations (SCH-9)."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import orjson
import pytest

from carehub.identity import RateLimiter
from carehub.identity.partners import Partners, sign

from ..servers import Server


async def issue_key(server: Server, operations: list[str]) -> tuple[str, str]:
    partner = await server.account_id("partner1")
    async with server.http(await server.token("admin")) as http:
        response = await http.post(f"/api/v1/admin/partners/{partner}/keys", json={"operations": operations})
    assert response.status_code == 201
    return response.json()["key_id"], response.json()["secret"]


def signed_headers(
    key_id: str, secret: str, method: str, path: str, body: bytes, *, timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(12)
    return {
        "X-CareHub-Key": key_id,
        "X-CareHub-Timestamp": ts,
        "X-CareHub-Nonce": nonce,
        "X-CareHub-Signature": sign(secret, method, path, ts, nonce, body),
        "Content-Type": "application/json",
    }


PUBLISH = "/api/v1/open/topics/publish"
BODY = orjson.dumps({"topic": "broadcast/hall-1", "type": "notice", "body": {"text": "门诊楼电梯检修"}})


async def send(server: Server, method: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with server.http() as http:
        return await http.request(method, path, content=body, headers=headers)


async def test_a_correctly_signed_partner_request_is_served(server: Server) -> None:
    key_id, secret = await issue_key(server, ["topics.publish"])
    response = await send(server, "POST", PUBLISH, BODY, signed_headers(key_id, secret, "POST", PUBLISH, BODY))
    assert response.status_code == 200 and response.json() == {"subscribers": 0}


async def test_a_replayed_partner_request_is_refused(server: Server) -> None:
    key_id, secret = await issue_key(server, ["topics.publish"])
    headers = signed_headers(key_id, secret, "POST", PUBLISH, BODY)
    first = await send(server, "POST", PUBLISH, BODY, headers)
    replay = await send(server, "POST", PUBLISH, BODY, headers)
    assert first.status_code == 200
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "replayed"


async def test_a_stale_timestamp_is_refused(server: Server) -> None:
    key_id, secret = await issue_key(server, ["topics.publish"])
    old = signed_headers(key_id, secret, "POST", PUBLISH, BODY, timestamp=int(time.time()) - 600)
    response = await send(server, "POST", PUBLISH, BODY, old)
    assert response.status_code == 401 and response.json()["error"]["code"] == "stale_timestamp"


async def test_a_body_changed_after_signing_is_refused(server: Server) -> None:
    key_id, secret = await issue_key(server, ["topics.publish"])
    headers = signed_headers(key_id, secret, "POST", PUBLISH, BODY)
    tampered = BODY.replace("检修".encode(), "关闭".encode())
    response = await send(server, "POST", PUBLISH, tampered, headers)
    assert response.status_code == 401 and response.json()["error"]["code"] == "bad_signature"


async def test_a_key_may_only_use_its_operations(server: Server) -> None:
    key_id, secret = await issue_key(server, ["directory.read"])
    refused = await send(server, "POST", PUBLISH, BODY, signed_headers(key_id, secret, "POST", PUBLISH, BODY))
    allowed = await send(
        server, "GET", "/api/v1/open/departments", b"",
        signed_headers(key_id, secret, "GET", "/api/v1/open/departments", b""),
    )
    assert refused.status_code == 403
    assert allowed.status_code == 200 and allowed.json()["departments"]


async def test_an_unsigned_request_to_a_partner_route_is_refused(server: Server) -> None:
    response = await send(server, "POST", PUBLISH, BODY, {"Content-Type": "application/json"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "unsigned"


async def test_partner_keys_are_stored_sealed(server: Server) -> None:
    _, secret = await issue_key(server, ["topics.publish"])
    stored: Any = await server.app.services.db.fetchval("SELECT secret_enc FROM partner_keys")
    assert secret not in stored and stored.startswith("sm4gcm:")


async def test_a_partner_sending_too_fast_gets_429_with_retry_after(server: Server) -> None:
    key_id, secret = await issue_key(server, ["directory.read"])
    path = "/api/v1/open/departments"
    statuses = []
    async with server.http() as http:
        for _ in range(60):
            response = await http.get(path, headers=signed_headers(key_id, secret, "GET", path, b""))
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.headers["Retry-After"] == "1"
                break
    assert statuses[-1] == 429 and statuses.count(200) >= 1


async def test_a_fault_of_the_rate_limiter_is_not_answered_as_rate_limited(server: Server) -> None:
    """Only the limit itself is a 429: a limiter that fails is a fault of its own (here: its clock)."""
    key_id, secret = await issue_key(server, ["topics.publish"])

    def broken_clock() -> float:
        raise RuntimeError("clock unavailable")

    live = server.app.services.partners
    partners = Partners(live.keys, live.keyring, limits=RateLimiter(clock=broken_clock))
    headers = signed_headers(key_id, secret, "POST", PUBLISH, BODY)
    with pytest.raises(RuntimeError, match="clock unavailable"):
        await partners.verify("POST", PUBLISH, headers, BODY, "topics.publish")

"""Sign-in, sign-out and the signed-in account (all audiences)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from carehub.identity import Identity, Principal
from carehub.storage.hub_store import PostgresHubStore

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator
from .args import client_ip, int_arg

#: closes every WebSocket opened with one of these (now revoked) token hashes, giving a reason
CloseSessions = Callable[[set[str], str], None]


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


def session_body(token: str, principal: Principal) -> dict[str, Any]:
    return {
        "token": token,
        "account": {"id": principal.account_id, "name": principal.display_name, "roles": sorted(principal.roles)},
    }


class StreamBounds(msgspec.Struct):
    #: the oldest seq still kept, and the newest written (resume after any seq in between)
    first_seq: int
    last_seq: int


class MeView(msgspec.Struct):
    """The signed-in account (``GET /api/v1/me``)."""

    id: str
    login: str
    name: str | None
    roles: list[str]
    permissions: list[str]
    stream: StreamBounds


class StreamItem(msgspec.Struct):
    """One message of my delivery stream: its place, id, type (docs/protocol.md "delivery types") and body."""

    seq: int
    id: str
    type: str
    at: str
    body: Any


class StreamView(msgspec.Struct):
    items: list[StreamItem]


def register(
    r: RouteDecorator, *, identity: Identity, store: PostgresHubStore, close_sessions: CloseSessions
) -> None:
    @r("POST", "/api/v1/auth/login", summary="Sign in with login and password", permission=None, body=Login,
       tag="auth")
    async def login(ctx: RequestContext, body: Login) -> Any:
        if not body.login or not body.password or len(body.login) > 100 or len(body.password) > 200:
            raise ApiError(422, "invalid", "login and password are required (login <= 100, password <= 200 chars)")
        if body.totp is not None and len(body.totp) > 10:
            raise ApiError(422, "invalid", "totp is the 6-digit code of an authenticator app")
        token, principal = await identity.login(body.login, body.password, totp=body.totp, ip=client_ip())
        return session_body(token, principal)

    @r("POST", "/api/v1/auth/sms-code", summary="Send a sign-in code by SMS (patients)", permission=None,
       body=SmsCodeRequest, tag="auth")
    async def sms_code(ctx: RequestContext, body: SmsCodeRequest) -> Any:
        seconds = await identity.request_sms_code(body.phone, ip=client_ip())
        return {"sent": True, "expires_in": seconds}

    @r("POST", "/api/v1/auth/sms-login", summary="Sign in with phone and SMS code (patients)", permission=None,
       body=SmsLogin, tag="auth")
    async def sms_login(ctx: RequestContext, body: SmsLogin) -> Any:
        if not body.code.strip().isdigit() or len(body.code.strip()) != 6:
            raise ApiError(422, "invalid", "验证码为 6 位数字 (the code has 6 digits)")
        token, principal = await identity.login_sms(body.phone, body.code, ip=client_ip())
        return session_body(token, principal)

    @r("POST", "/api/v1/auth/logout", summary="End this session (closes its WebSockets)",
       permission="account.self", tag="auth")
    async def logout(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        await identity.logout(ctx.principal, ip=client_ip())
        close_sessions({ctx.principal.token_hash or ""}, "已退出登录 (session ended)")
        return {"status": "signed_out"}

    @r("GET", "/api/v1/me", summary="The signed-in account", permission="account.self", tag="auth",
       response=MeView)
    async def me(ctx: RequestContext) -> Any:
        p = ctx.principal
        assert p is not None
        first, last = await store.stream_bounds(p.account_id)
        return {
            "id": p.account_id,
            "login": p.login,
            "name": p.display_name,
            "roles": sorted(p.roles),
            "permissions": sorted(p.permissions),
            "stream": {"first_seq": first, "last_seq": last},
        }

    @r("GET", "/api/v1/me/menus", summary="The menus my roles see", permission="account.self", tag="auth")
    async def my_menus(ctx: RequestContext) -> Any:
        assert ctx.principal is not None and identity.roles is not None
        return {"menus": identity.roles.menus_for(ctx.principal.roles)}

    @r("GET", "/api/v1/me/stream", summary="Read my delivery stream after a sequence number",
       permission="account.self", tag="auth", query=("after", "limit"), response=StreamView)
    async def my_stream(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        after = int_arg("after", 0, 0, 2**62)
        limit = int_arg("limit", 100, 1, 500)
        items = await store.read_stream(ctx.principal.account_id, after, limit)
        return {
            "items": [
                {"seq": i.seq, "id": i.msg_id, "type": i.type, "at": i.created_at.isoformat(),
                 "body": msgspec.json.decode(i.body)}
                for i in items
            ]
        }

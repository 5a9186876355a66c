"""Where an account is reached outside the app (MSG-1): its WeChat openid and Alipay user id.

The phone (SMS) is the account's own; WeChat and Alipay need a binding (table
``channel_bindings``). In production a binding comes from the person's own sign-in through the
WeChat or Alipay app; these admin routes set bindings directly, for an import from the hospital's
old system, the demo and the benchmark (``./scripts/bench notify`` binds 10,000 recipients, up to
1,000 per call).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import msgspec

from carehub.messaging import MessageCenter

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator

#: one call of the bulk form binds at most this many accounts
BULK_MAX = 1000
_ADDRESS = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class BindingsBody(msgspec.Struct, forbid_unknown_fields=True):
    """An account's addresses: a WeChat openid and/or an Alipay user id (omitted: left as it is)."""

    wechat: str | None = None
    alipay: str | None = None


class BindingsView(msgspec.Struct):
    account_id: str
    wechat: str | None
    alipay: str | None


class BulkItem(msgspec.Struct, forbid_unknown_fields=True):
    account_id: str
    wechat: str | None = None
    alipay: str | None = None


class BulkBody(msgspec.Struct, forbid_unknown_fields=True):
    """Bindings for many accounts; an account's existing binding on a channel is kept."""

    items: list[BulkItem]


class BulkView(msgspec.Struct):
    #: (account, channel) pairs asked for
    asked: int


def _addresses(wechat: str | None, alipay: str | None, who: str) -> list[tuple[str, str]]:
    pairs = [(channel, value) for channel, value in (("wechat", wechat), ("alipay", alipay)) if value is not None]
    for channel, value in pairs:
        if not _ADDRESS.match(value):
            raise ApiError(422, "invalid", f"{who}：{channel} 地址格式不对（1 到 128 个字母、数字、_ 或 -）")
    return pairs


def register(r: RouteDecorator, *, messaging: MessageCenter) -> None:
    accounts = messaging.addresses.accounts
    store = messaging.notices

    async def view(account_id: str) -> dict[str, Any]:
        return {"account_id": account_id, "wechat": await store.binding(account_id, "wechat"),
                "alipay": await store.binding(account_id, "alipay")}

    @r("GET", "/api/v1/admin/accounts/<account_id>/channel-bindings",
       summary="An account's WeChat openid and Alipay user id (MSG-1)",
       permission="admin.accounts", tag="messages", response=BindingsView)
    async def get_bindings(ctx: RequestContext, account_id: str) -> Any:
        if await accounts.by_id(account_id) is None:
            raise ApiError(404, "not_found", "没有这个账号")
        return await view(account_id)

    @r("PUT", "/api/v1/admin/accounts/<account_id>/channel-bindings",
       summary="Bind an account's WeChat openid and/or Alipay user id (MSG-1)",
       permission="admin.accounts", tag="messages", body=BindingsBody, response=BindingsView)
    async def put_bindings(ctx: RequestContext, body: BindingsBody, account_id: str) -> Any:
        if await accounts.by_id(account_id) is None:
            raise ApiError(404, "not_found", "没有这个账号")
        pairs = _addresses(body.wechat, body.alipay, account_id[:64])
        if not pairs:
            raise ApiError(422, "invalid", "请至少给出 wechat 或 alipay 其中一个地址")
        now = dt.datetime.now(dt.UTC)
        for channel, address in pairs:
            await store.bind(account_id, channel, address, now)
        messaging.addresses.forget(account_id)
        return await view(account_id)

    @r("POST", "/api/v1/admin/channel-bindings",
       summary="Bind many accounts at once (up to 1,000; existing bindings kept)",
       permission="admin.accounts", tag="messages", body=BulkBody, response=BulkView)
    async def bulk_bindings(ctx: RequestContext, body: BulkBody) -> Any:
        if not 1 <= len(body.items) <= BULK_MAX:
            raise ApiError(422, "invalid", f"一次可绑定 1 到 {BULK_MAX} 个账号")
        rows: list[tuple[str, str, str]] = []
        for item in body.items:
            rows += [(item.account_id, c, a) for c, a in _addresses(item.wechat, item.alipay, item.account_id[:64])]
        ids = sorted({a for a, _, _ in rows})
        missing = [a for a in ids if await accounts.by_id(a) is None]
        if missing:
            raise ApiError(404, "not_found", f"没有这些账号：{'、'.join(m[:64] for m in missing[:5])}")
        if rows:
            await store.bind_many(rows, dt.datetime.now(dt.UTC))
        for account_id in ids:
            messaging.addresses.forget(account_id)
        return {"asked": len(rows)}

"""The message center's routes: my inbox and preferences (OUT-15, ME-10), templates and channels for
admins, dead letters and resends for ops (MSG-1). The publish API for partners is ``open_messages.py``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from quart import request

from carehub.actors.notifier import OUTSIDE_CHANNELS, Preferences
from carehub.messaging import CATEGORIES, KINDS, MessageCenter
from carehub.messaging import templates as tpl

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator
from .args import int_arg


class NoticeView(msgspec.Struct):
    id: str
    kind: str
    label: str
    category: str
    category_label: str
    title: str
    body: str
    link: str | None
    #: NAV-2: indoor navigation to the department the notice names
    nav: str | None
    critical: bool
    created_at: str
    read: bool
    status: str
    channel: str | None
    #: a scheduled reminder posted after its time (the hub was down when it fell due)
    late: bool


class InboxView(msgspec.Struct):
    items: list[NoticeView]
    #: the cursor of the next (older) page: pass it as ``before``; None on the last page
    next: str | None
    total: int
    unread: int


class CountsView(msgspec.Struct):
    total: int
    unread: int


class MarkRead(msgspec.Struct, forbid_unknown_fields=True):
    """Mark these notices read, or every notice (``all``)."""

    ids: list[str] = []
    all: bool = False


class MarkedView(msgspec.Struct):
    marked: int
    total: int
    unread: int


class CategoryView(msgspec.Struct):
    category: str
    label: str


class PreferencesView(msgspec.Struct):
    channels: list[str]
    off: dict[str, list[str]]
    quiet_start: int | None
    quiet_end: int | None
    #: what the page offers: the categories and the outside channels
    categories: list[CategoryView]
    available_channels: list[str]


class TemplateView(msgspec.Struct):
    kind: str
    label: str
    feature: str
    category: str
    audience: str
    critical: bool
    variables: list[str]
    title: str
    body: str
    customised: bool
    sms_template: str | None
    wechat_template: str | None
    alipay_template: str | None
    default_title: str
    default_body: str


class TemplatesView(msgspec.Struct):
    templates: list[TemplateView]


class TemplateBody(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    body: str
    sms_template: str | None = None
    wechat_template: str | None = None
    alipay_template: str | None = None


class PreviewBody(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    body: str
    values: dict[str, str] = {}


class PreviewView(msgspec.Struct):
    title: str
    body: str


class ChannelView(msgspec.Struct):
    channel: str
    state: str
    failures_in_a_row: int
    sent: int
    failed: int
    last_error: str
    configured: bool
    enabled: bool


class ChannelsView(msgspec.Struct):
    channels: list[ChannelView]
    #: notices by status (sending, sent, dead ...)
    notices: dict[str, int]


class ChannelBody(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool
    default_template: str | None = None


class DeadLetterView(msgspec.Struct):
    id: str
    account_id: str
    kind: str
    label: str
    title: str
    body: str
    critical: bool
    created_at: str
    dead_at: str | None
    reason: str
    plan: str


class DeadLettersView(msgspec.Struct):
    items: list[DeadLetterView]


class ResentView(msgspec.Struct):
    notice_id: str
    plan: list[str]


def _prefs_view(prefs: dict[str, Any]) -> dict[str, Any]:
    return {**prefs, "categories": [{"category": c, "label": label} for c, label in CATEGORIES.items()],
            "available_channels": list(OUTSIDE_CHANNELS)}


def register(r: RouteDecorator, *, messaging: MessageCenter) -> None:
    notifier = messaging.notifier

    # ---- my inbox and preferences ----------------------------------------------------------------

    @r("GET", "/api/v1/me/notices", summary="My notice inbox, newest first (paged by cursor)",
       permission="account.self", tag="messages", query=("before", "limit", "unread", "category"), response=InboxView)
    async def my_notices(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        category = request.args.get("category") or None
        if category is not None and category not in CATEGORIES:
            raise ApiError(400, "bad_request", f"没有这个消息分类: {category}")
        return await notifier.inbox(ctx.principal.account_id, before=request.args.get("before") or None,
                                    limit=int_arg("limit", 20, 1, 100),
                                    unread_only=request.args.get("unread") in ("1", "true"), category=category)

    @r("GET", "/api/v1/me/notices/counts", summary="How many notices I have, and how many unread",
       permission="account.self", tag="messages", command="notices.counts", response=CountsView)
    async def my_counts(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        return await messaging.notices.counts(ctx.principal.account_id)

    @r("POST", "/api/v1/me/notices/read", summary="Mark my notices read (some, or all)",
       permission="account.self", tag="messages", body=MarkRead, command="notices.read", response=MarkedView)
    async def mark_read(ctx: RequestContext, body: MarkRead) -> Any:
        assert ctx.principal is not None
        if not body.all and not body.ids:
            raise ApiError(422, "invalid", "请指定要标记的消息（ids），或 all: true")
        if len(body.ids) > 500:
            raise ApiError(422, "invalid", "一次最多标记 500 条")
        return await notifier.mark_read(ctx.principal.account_id, None if body.all else body.ids)

    @r("GET", "/api/v1/me/notice-preferences", summary="My notice channels, switched-off categories, quiet hours",
       permission="account.self", tag="messages", response=PreferencesView)
    async def my_preferences(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        return _prefs_view(await notifier.preferences(ctx.principal.account_id))

    @r("PUT", "/api/v1/me/notice-preferences", summary="Set my notice preferences (OUT-15)",
       permission="account.self", tag="messages", body=Preferences, response=PreferencesView)
    async def set_preferences(ctx: RequestContext, body: Preferences) -> Any:
        assert ctx.principal is not None
        unknown = sorted(set(body.off) - set(CATEGORIES))
        if unknown:
            raise ApiError(422, "invalid", f"没有这些消息分类: {'、'.join(unknown)}")
        return _prefs_view(await notifier.set_preferences(ctx.principal.account_id, body))

    # ---- templates and channels (admin) ----------------------------------------------------------

    @r("GET", "/api/v1/admin/notice-templates", summary="Every kind of notice and its template",
       permission="admin.messaging", tag="messages", response=TemplatesView)
    async def list_templates(ctx: RequestContext) -> Any:
        return {"templates": notifier.templates()}

    @r("PUT", "/api/v1/admin/notice-templates/<kind>", summary="Edit a notice template (checked when saved)",
       permission="admin.messaging", tag="messages", body=TemplateBody, response=TemplateView)
    async def save_template(ctx: RequestContext, body: TemplateBody, kind: str) -> Any:
        assert ctx.principal is not None
        return await notifier.save_template(kind, body.title, body.body, by=ctx.principal.login,
                                            sms_template=body.sms_template or None,
                                            wechat_template=body.wechat_template or None,
                                            alipay_template=body.alipay_template or None)

    @r("DELETE", "/api/v1/admin/notice-templates/<kind>", summary="Back to the built-in template",
       permission="admin.messaging", tag="messages", response=TemplateView)
    async def reset_template(ctx: RequestContext, kind: str) -> Any:
        return await notifier.reset_template(kind)

    @r("POST", "/api/v1/admin/notice-templates/<kind>/preview", summary="Check and render a template with values",
       permission="admin.messaging", tag="messages", body=PreviewBody, response=PreviewView)
    async def preview_template(ctx: RequestContext, body: PreviewBody, kind: str) -> Any:
        k = KINDS.get(kind)
        if k is None:
            raise ApiError(404, "unknown_notice_kind", f"没有这种消息类型: {kind}")
        checked = tpl.check(k, body.title, body.body)
        values = {v: body.values.get(v, f"【{v}】") for v in k.variables}
        return {"title": tpl.render(checked.title, values), "body": tpl.render(checked.body, values)}

    @r("GET", "/api/v1/admin/notice-channels", summary="Outside channels: switched on, configured, circuit state",
       permission="admin.messaging", tag="messages", response=ChannelsView)
    async def list_channels(ctx: RequestContext) -> Any:
        return {"channels": messaging.channels.view(), "notices": await messaging.notices.status_counts()}

    @r("PUT", "/api/v1/admin/notice-channels/<channel>", summary="Switch an outside channel on or off",
       permission="admin.messaging", tag="messages", body=ChannelBody, response=ChannelsView)
    async def save_channel(ctx: RequestContext, body: ChannelBody, channel: str) -> Any:
        assert ctx.principal is not None
        if channel not in OUTSIDE_CHANNELS:
            raise ApiError(404, "not_found", f"没有这个渠道: {channel}（wechat、sms、alipay）")
        await messaging.channels.save(messaging.notices, channel, body.enabled, body.default_template,
                                      by=ctx.principal.login)
        return {"channels": messaging.channels.view(), "notices": await messaging.notices.status_counts()}

    # ---- dead letters and circuits (ops) ---------------------------------------------------------

    @r("GET", "/api/v1/ops/notices/channels", summary="Outside channels' circuit states, for the ops dashboard",
       permission="ops.view", tag="messages", response=ChannelsView)
    async def ops_channels(ctx: RequestContext) -> Any:
        # the admin route's answer, read-only: ops watch the circuits but do not switch channels
        return {"channels": messaging.channels.view(), "notices": await messaging.notices.status_counts()}

    @r("GET", "/api/v1/ops/notices/dead-letters", summary="Notices no outside channel took, with the reason",
       permission="ops.view", tag="messages", query=("limit",), response=DeadLettersView)
    async def dead_letters(ctx: RequestContext) -> Any:
        return {"items": await notifier.dead_letters(int_arg("limit", 100, 1, 500))}

    @r("POST", "/api/v1/ops/notices/<notice_id>/resend", summary="Send a dead-lettered notice again",
       permission="ops.manage", tag="messages", response=ResentView)
    async def resend(ctx: RequestContext, notice_id: str) -> Any:
        return await notifier.resend(notice_id)

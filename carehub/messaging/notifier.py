"""The notifier service: events become notices, and the inbox, templates and dead letters around them.

:meth:`Notifier.notify` is the one way in. It renders the kind's template (an admin's edited
one, else the default of :mod:`carehub.messaging.kinds`) with the event's values, adds the NAV-2
navigation link when the notice names a department, and asks the recipient's notifier actor
(``notifier/<account_id>``, :mod:`carehub.actors.notifier`) to post it. The answer comes after
the actor's commit: the notice is then in the inbox and on the delivery stream, and its outside
channels are under way.

Actors ask for notices with a durable tell to ``notify/<notice_id>`` (:func:`carehub.actors.notifier.notify`);
:class:`NotifyEffect` performs it through :meth:`Notifier.notify`, so a crash anywhere between the
event and the post only delays the notice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import msgspec

from carehub.actors.notifier import (
    CancelScheduled,
    GetPreferences,
    NoticeEvent,
    Post,
    Preferences,
    Resend,
    Schedule,
    SetPreferences,
)
from carehub.hub import SYSTEM, Caller, Context, Effect, Hub, make_address
from carehub.storage.messaging import NoticeStore

from . import templates as tpl
from .errors import NoticeNotFound, UnknownKind
from .kinds import CATEGORIES, KINDS, NoticeKind
from .sending import Channels

log = logging.getLogger("carehub.messaging")


@dataclasses.dataclass(frozen=True)
class MessagingSettings:
    #: NAV-2: the indoor-navigation page a notice naming a department links to ({department} is
    #: the department's id, URL-quoted); empty: no navigation link
    nav_url: str = ""


def new_notice_id(prefix: str = "n") -> str:
    return f"{prefix}-{dt.datetime.now(dt.UTC):%Y%m%d}-{secrets.token_hex(8)}"


class Notifier:
    def __init__(self, hub: Hub, store: NoticeStore, channels: Channels,
                 settings: MessagingSettings | None = None) -> None:
        self.hub = hub
        self.store = store
        self.channels = channels
        self.settings = settings or MessagingSettings()
        self._templates: dict[str, tpl.Template] = {}

    async def load(self) -> None:
        """Read the admins' templates (call at start-up; saving one updates the cache)."""
        saved = await self.store.templates()
        self._templates = {kind: tpl.Template(kind, r["title"], r["body"], r["sms_template"], r["wechat_template"],
                                              r["alipay_template"]) for kind, r in saved.items() if kind in KINDS}

    # ---- sending -------------------------------------------------------------------------------

    def template(self, kind: NoticeKind) -> tpl.Template:
        return self._templates.get(kind.name) or tpl.default(kind)

    def render(self, kind_name: str, values: Mapping[str, Any]) -> tuple[NoticeKind, str, str, str | None]:
        """(kind, title, body, link) of a notice of ``kind_name`` with ``values``."""
        kind = KINDS.get(kind_name)
        if kind is None:
            raise UnknownKind(f"没有这种消息类型: {kind_name}（可用的类型见 GET /api/v1/admin/notice-templates）")
        template = self.template(kind)
        title = tpl.render(template.title, values)[: tpl.TITLE_MAX]
        body = tpl.render(template.body, values)[: tpl.BODY_MAX * 2]
        link = tpl.render(kind.link, {k: quote(str(v), safe="") for k, v in values.items()}) if kind.link else None
        return kind, title, body, link

    async def notify(self, account_id: str, kind_name: str, values: Mapping[str, Any], *,
                     notice_id: str | None = None, source: str = "", channels: list[str] | None = None,
                     data: Mapping[str, Any] | None = None, at: dt.datetime | None = None) -> dict[str, Any]:
        """Post a notice to ``account_id``; returns ``{notice_id, status, plan}`` once it is committed.

        ``notice_id`` makes the call idempotent (a repeat posts nothing and answers ``duplicate``).
        ``at`` in the future schedules it instead (MSG-4/5/7/8 reminders: revisit, pickup, follow-up):
        a durable reminder of the recipient's notifier, posted when due (late and flagged so if the hub
        was down then), cancelled by :meth:`cancel_scheduled` when its reason goes away.
        """
        post = self._post(account_id, kind_name, values, notice_id=notice_id, source=source, channels=channels,
                          data=data)
        message: msgspec.Struct = post if at is None else Schedule(at, post)
        reply: dict[str, Any] = await self.hub.ask(make_address("notifier", account_id), message)
        return reply

    async def cancel_scheduled(self, account_id: str, notice_id: str, reason: str = "") -> dict[str, Any]:
        reply: dict[str, Any] = await self.hub.ask(make_address("notifier", account_id),
                                                   CancelScheduled(notice_id, reason))
        return reply

    def _post(self, account_id: str, kind_name: str, values: Mapping[str, Any], *, notice_id: str | None,
              source: str, channels: list[str] | None, data: Mapping[str, Any] | None) -> Post:
        kind, title, body, link = self.render(kind_name, values)
        extra = dict(data or {})
        department = values.get("department_id") or values.get("department")
        if self.settings.nav_url and department:
            extra["nav"] = self.settings.nav_url.replace("{department}", quote(str(department), safe=""))
        # only the channels configured and switched on here: the others could never take it
        usable = self.channels.usable()
        narrowed = usable if channels is None else [c for c in channels if c in usable]
        return Post(notice_id or new_notice_id(), kind.name, kind.category, title, body, link=link,
                    critical=kind.critical, needs_ack=kind.needs_ack, source=source, channels=narrowed, data=extra)

    # ---- the recipient's side ------------------------------------------------------------------

    async def preferences(self, account_id: str) -> dict[str, Any]:
        reply: dict[str, Any] = await self.hub.ask(make_address("notifier", account_id), GetPreferences(),
                                                   caller=Caller(account_id))
        return reply

    async def set_preferences(self, account_id: str, prefs: Preferences) -> dict[str, Any]:
        reply: dict[str, Any] = await self.hub.ask(make_address("notifier", account_id), SetPreferences(prefs),
                                                   caller=Caller(account_id))
        return reply

    async def inbox(self, account_id: str, *, before: str | None = None, limit: int = 20,
                    unread_only: bool = False, category: str | None = None) -> dict[str, Any]:
        """A page of the inbox, newest first; ``before`` is the previous page's ``next`` cursor."""
        cursor = None
        if before:
            notice = await self.store.get(before)
            if notice is None or notice["account_id"] != account_id:
                raise NoticeNotFound("翻页位置无效，请从第一页重新加载")
            cursor = (notice["created_at"], notice["id"])
        rows = await self.store.inbox(account_id, before=cursor, limit=limit + 1, unread_only=unread_only,
                                      category=category)
        more = len(rows) > limit
        rows = rows[:limit]
        counts = await self.store.counts(account_id)
        return {"items": [self.view(r) for r in rows], "next": rows[-1]["id"] if more else None, **counts}

    async def mark_read(self, account_id: str, ids: list[str] | None) -> dict[str, Any]:
        changed = await self.store.mark_read(account_id, ids, dt.datetime.now(dt.UTC))
        return {"marked": changed, **await self.store.counts(account_id)}

    @staticmethod
    def view(row: Mapping[str, Any]) -> dict[str, Any]:
        kind = KINDS.get(row["kind"])
        return {
            "id": row["id"], "kind": row["kind"], "label": kind.label if kind else row["kind"],
            "category": row["category"], "category_label": CATEGORIES.get(row["category"], row["category"]),
            "title": row["title"], "body": row["body"], "link": row["link"], "nav": row["nav"],
            "critical": row["critical"],
            "created_at": row["created_at"].isoformat(), "read": row["read_at"] is not None,
            "status": row["status"], "channel": row["channel"], "late": row["late"],
        }

    # ---- templates (admin) ---------------------------------------------------------------------

    def templates(self) -> list[dict[str, Any]]:
        out = []
        for kind in KINDS.values():
            t = self.template(kind)
            out.append({"kind": kind.name, "label": kind.label, "feature": kind.feature, "category": kind.category,
                        "audience": kind.audience, "critical": kind.critical, "variables": list(kind.variables),
                        "title": t.title, "body": t.body, "customised": kind.name in self._templates,
                        "sms_template": t.sms_template, "wechat_template": t.wechat_template,
                        "alipay_template": t.alipay_template,
                        "default_title": kind.title, "default_body": kind.body})
        return out

    async def save_template(self, kind_name: str, title: str, body: str, *, by: str, sms_template: str | None = None,
                            wechat_template: str | None = None, alipay_template: str | None = None) -> dict[str, Any]:
        kind = KINDS.get(kind_name)
        if kind is None:
            raise UnknownKind(f"没有这种消息类型: {kind_name}")
        checked = tpl.check(kind, title, body)
        await self.store.save_template(kind.name, checked.title, checked.body, sms_template, wechat_template,
                                       alipay_template, by, dt.datetime.now(dt.UTC))
        self._templates[kind.name] = dataclasses.replace(checked, sms_template=sms_template,
                                                         wechat_template=wechat_template,
                                                         alipay_template=alipay_template)
        return next(t for t in self.templates() if t["kind"] == kind.name)

    async def reset_template(self, kind_name: str) -> dict[str, Any]:
        if kind_name not in KINDS:
            raise UnknownKind(f"没有这种消息类型: {kind_name}")
        await self.store.reset_template(kind_name)
        self._templates.pop(kind_name, None)
        return next(t for t in self.templates() if t["kind"] == kind_name)

    def provider_template(self, kind_name: str, channel: str) -> str | None:
        t = self._templates.get(kind_name)
        return None if t is None else getattr(t, f"{channel}_template", None)

    # ---- ops -----------------------------------------------------------------------------------

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self.store.dead_letters(limit)
        return [{**self.view(r), "account_id": r["account_id"], "reason": r["last_error"], "plan": r["plan"],
                 "dead_at": r["dead_at"].isoformat() if r["dead_at"] else None} for r in rows]

    async def resend(self, notice_id: str) -> dict[str, Any]:
        row = await self.store.get(notice_id)
        if row is None:
            raise NoticeNotFound("没有这条消息")
        reply: dict[str, Any] = await self.hub.ask(
            make_address("notifier", row["account_id"]),
            Resend(row["id"], row["kind"], row["title"], row["body"], row["link"], row["critical"]))
        return reply

    async def status(self, notice_id: str) -> dict[str, Any] | None:
        """Where one notice is, per channel (the publish API's GET)."""
        row = await self.store.get(notice_id)
        if row is None:
            return None
        plan = [c for c in row["plan"].split(",") if c]
        channels = [{"channel": "app", "status": "delivered", "at": row["created_at"].isoformat(),
                     "read": row["read_at"] is not None}]
        sent_at = plan.index(row["channel"]) if row["channel"] in plan else None
        for n, c in enumerate(plan):
            if n == sent_at:
                report = row["report"] or ""
                state = "delivered" if report == "delivered" else "failed" if report.startswith("failed") else "sent"
                channels.append({"channel": c, "status": state, "report": row["report"],
                                 "at": row["sent_at"].isoformat() if row["sent_at"] else None})
            elif row["status"] == "dead" or (sent_at is not None and n < sent_at):
                channels.append({"channel": c, "status": "failed", "report": None, "at": None})
            else:
                channels.append({"channel": c, "status": "skipped" if sent_at is not None else "pending",
                                 "report": None, "at": None})
        return {"message_id": row["id"], "account_id": row["account_id"], "kind": row["kind"],
                "status": row["status"], "reason": row["last_error"] or None, "channels": channels,
                "created_at": row["created_at"].isoformat(), "source": row["source"]}


class NotifyEffect(Effect):
    """``notify/<notice_id>``: turn an actor's :class:`NoticeEvent` into a notice (see the module docstring)."""

    kind = "notify"
    messages: ClassVar[dict[str, type[msgspec.Struct]]] = {"NoticeEvent": NoticeEvent}

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    async def perform(self, message: msgspec.Struct, ctx: Context) -> None:
        assert isinstance(message, NoticeEvent)
        try:
            await self.notifier.notify(message.account_id, message.kind, message.values, notice_id=ctx.key,
                                       source=message.source, channels=message.channels, data=message.data)
        except UnknownKind:
            # a programming error, not a passing fault: say so loudly once instead of retrying for ever
            self.notifier.hub.alarm("error", f"notice {ctx.key} of unknown kind {message.kind!r} dropped")


__all__ = ["SYSTEM", "MessagingSettings", "Notifier", "NotifyEffect", "new_notice_id"]

"""The notifier of one recipient: every notice to an account goes through ``notifier/<account_id>``.

One actor per recipient keeps that person's notices in order, owns their preferences (OUT-15)
and walks each notice through its channels. A notice arrives rendered (:class:`Post`, from
:class:`carehub.messaging.Notifier`); in one commit the actor

1. writes it to the inbox (the ``notices`` table) and appends it to the account's delivery
   stream (type ``notice``): it is then on every open WebSocket and in the inbox, and it is
   *delivered in-app*;
2. plans the outside channels: the recipient's channels in their order of preference, minus
   those switched off for the notice's category; a critical notice (a critical value) uses all
   of them, SMS included, whatever the preferences say, and ignores quiet hours;
3. tells the send effect ``send/<notice_id>:<channel>`` for the first planned channel, or, in
   quiet hours, reminds itself to do so when they end.

The send effect (:class:`carehub.messaging.sending.SendEffect`) answers with :class:`SendResult`:
accepted -> ``sent``; a retryable failure -> the same channel again after an exponential
back-off with jitter (up to :data:`MAX_ATTEMPTS`); a channel that cannot reach the person
(unsubscribed, bad number) or has used its attempts -> the next channel; no channel left ->
``dead`` with the last reason: the dead-letter list ops see, with a resend button
(:class:`Resend`). Each step is committed before the next is asked for, so a restart only
delays a notice; nothing is dropped and a repeat of a :class:`Post` (same notice id) changes
nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import msgspec

from carehub.hub import (
    Behaviour,
    Caller,
    Context,
    Decision,
    Deliver,
    Event,
    Lifecycle,
    Record,
    Refusal,
    Remind,
    Tell,
    make_address,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
OUTSIDE_CHANNELS = ("wechat", "sms", "alipay")
#: tries of one channel before the next one is tried
MAX_ATTEMPTS = 4
#: back-off after the n-th failure: 2^n seconds, jittered to 50..150 %, at most this long
MAX_BACKOFF_SECONDS = 300.0
#: notice ids remembered to recognise a repeated Post
RECENT = 32


class NoticeStatus(enum.StrEnum):
    """Where a notice is on its outside channels (the in-app copy is delivered at once)."""

    IN_APP = "in_app"  # no outside channel planned: delivered in-app only
    DEFERRED = "deferred"  # waiting for the recipient's quiet hours to end
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"  # an outside channel accepted it
    DEAD = "dead"  # every planned channel failed: in the dead-letter list


NOTICE: Lifecycle[NoticeStatus] = Lifecycle("notice", {
    NoticeStatus.DEFERRED: {"send": NoticeStatus.SENDING},
    NoticeStatus.SENDING: {"accepted": NoticeStatus.SENT, "retry": NoticeStatus.RETRYING,
                           "fallback": NoticeStatus.SENDING, "exhausted": NoticeStatus.DEAD},
    NoticeStatus.RETRYING: {"send": NoticeStatus.SENDING},
    NoticeStatus.DEAD: {"resend": NoticeStatus.SENDING},
    NoticeStatus.SENT: {"resend": NoticeStatus.SENDING},
    NoticeStatus.IN_APP: {"resend": NoticeStatus.SENDING},
})


class Preferences(msgspec.Struct, forbid_unknown_fields=True):
    """What a recipient allows (OUT-15); doctors choose their alert channels the same way."""

    #: outside channels in order of preference
    channels: list[str] = msgspec.field(default_factory=lambda: ["wechat", "sms"])
    #: category -> outside channels switched off for it (carehub.messaging.kinds.CATEGORIES)
    off: dict[str, list[str]] = {}
    #: quiet hours, minutes after midnight in Asia/Shanghai (start > end wraps past midnight)
    quiet_start: int | None = None
    quiet_end: int | None = None


class Pending(msgspec.Struct):
    notice_id: str
    kind: str
    title: str
    body: str
    link: str | None
    critical: bool
    plan: list[str]
    index: int = 0
    attempt: int = 0
    status: NoticeStatus = NoticeStatus.SENDING
    last_error: str = ""


class NotifierState(msgspec.Struct):
    account_id: str
    prefs: Preferences = msgspec.field(default_factory=Preferences)
    pending: dict[str, Pending] = {}
    recent: list[str] = []
    #: notices to post later (revisit, pickup, follow-up reminders ...): notice id -> when
    scheduled: dict[str, dt.datetime] = {}
    posted: int = 0
    dead: int = 0


# ---- messages ----------------------------------------------------------------------------------


class Post(msgspec.Struct, forbid_unknown_fields=True):
    """Notifier service: a rendered notice for this recipient. A repeat (same id) changes nothing."""

    notice_id: str
    kind: str
    category: str
    title: str
    body: str
    link: str | None = None
    critical: bool = False
    needs_ack: bool = False
    source: str = ""
    #: the publisher narrows the outside channels to these (None: the recipient's own choice)
    channels: list[str] | None = None
    #: extra fields for the in-app copy (an alert id, a booking id ...), not stored in the inbox
    data: dict[str, Any] = {}


class Send(msgspec.Struct, forbid_unknown_fields=True):
    """Effect ``send/<notice_id>:<channel>``: send one notice on one outside channel."""

    account_id: str
    notice_id: str
    channel: str
    attempt: int
    kind: str
    title: str
    body: str
    link: str | None = None


class SendResult(msgspec.Struct, forbid_unknown_fields=True):
    """Send effect: how a send went. Stale results (an older attempt or channel) are ignored."""

    notice_id: str
    channel: str
    attempt: int
    ok: bool
    retryable: bool = False
    fallback: bool = False
    reason: str = ""
    provider_id: str = ""
    retry_after: float | None = None


class SendNow(msgspec.Struct, forbid_unknown_fields=True):
    """Reminder: quiet hours are over, or a back-off has passed: send the pending notice."""

    notice_id: str


class Resend(msgspec.Struct, forbid_unknown_fields=True):
    """Ops: send a dead-lettered (or any finished) notice again on every planned channel."""

    notice_id: str
    kind: str
    title: str
    body: str
    link: str | None = None
    critical: bool = False


class Schedule(msgspec.Struct, forbid_unknown_fields=True):
    """Notifier service: post ``post`` at ``at`` (a durable reminder: it survives restarts, and one that
    fires late is posted late and flagged so). A repeat (same notice id) moves the time."""

    at: dt.datetime
    post: Post


class Fire(msgspec.Struct, forbid_unknown_fields=True):
    """Reminder: a scheduled notice is due."""

    post: Post


class CancelScheduled(msgspec.Struct, forbid_unknown_fields=True):
    """Notifier service: the reason went away (the medicine was picked up): do not post it."""

    notice_id: str
    reason: str = ""


class SetPreferences(msgspec.Struct, forbid_unknown_fields=True):
    """The recipient: their channels, switched-off categories and quiet hours."""

    prefs: Preferences


class GetPreferences(msgspec.Struct, forbid_unknown_fields=True):
    """The recipient: their preferences (read-only)."""


class NoticeEvent(msgspec.Struct, forbid_unknown_fields=True):
    """Effect ``notify/<notice_id>``: an event that becomes a notice (rendered by the notifier service).

    Any actor (a slot pool, a waiting queue, an alert) asks for a notice with a durable tell of
    this; the key of the address is the notice's id, so the tell and every retry of it make one
    notice.
    """

    account_id: str
    kind: str
    values: dict[str, str] = {}
    source: str = ""
    channels: list[str] | None = None
    data: dict[str, Any] = {}


def notify(notice_id: str, account_id: str, kind: str, values: dict[str, str], **extra: Any) -> Tell:
    """The durable tell that makes notice ``notice_id`` of ``kind`` for ``account_id``."""
    return Tell(make_address("notify", notice_id), NoticeEvent(account_id, kind, values, **extra))


# ---- the behaviour ------------------------------------------------------------------------------


class Notifier(Behaviour[NotifierState]):
    kind = "notifier"
    state_type = NotifierState
    messages: ClassVar[dict[str, type[msgspec.Struct]]] = {
        m.__name__: m for m in (Post, SendResult, SendNow, Resend, Schedule, Fire, CancelScheduled, SetPreferences,
                                GetPreferences)}
    projections = frozenset({"notices"})
    batch_limit = 16

    def initial(self, key: str) -> NotifierState:
        return NotifierState(account_id=key)

    def may_call(self, caller: Caller, key: str, message: msgspec.Struct) -> bool:
        if caller.is_system:
            return True
        return isinstance(message, (SetPreferences, GetPreferences)) and caller.account_id == key

    def summary(self, state: NotifierState) -> str:
        return (f"{state.posted} notices, {len(state.pending)} sending, {len(state.scheduled)} scheduled, "
                f"{state.dead} dead-lettered")

    def handle(self, state: NotifierState, message: msgspec.Struct, ctx: Context) -> Decision[NotifierState]:
        match message:
            case Post():
                return self._post(state, message, ctx)
            case SendResult():
                return self._result(state, message, ctx)
            case SendNow():
                p = state.pending.get(message.notice_id)
                if p is None or p.status not in (NoticeStatus.DEFERRED, NoticeStatus.RETRYING):
                    return Decision.answer(state, None)  # already sent, or resent meanwhile
                return self._send(state, p, ctx, NOTICE.step(p.status, "send"))
            case Resend():
                return self._resend(state, message, ctx)
            case Schedule():
                return self._schedule(state, message, ctx)
            case Fire():
                if message.post.notice_id not in state.scheduled:
                    return Decision.answer(state, None)  # cancelled meanwhile
                rest = {k: v for k, v in state.scheduled.items() if k != message.post.notice_id}
                return self._post(msgspec.structs.replace(state, scheduled=rest), message.post, ctx,
                                  late=ctx.is_late)
            case CancelScheduled():
                if message.notice_id not in state.scheduled:
                    raise Refusal("该消息不在待发送计划中（已发送或已取消）", code="notice_not_scheduled")
                rest = {k: v for k, v in state.scheduled.items() if k != message.notice_id}
                return Decision(msgspec.structs.replace(state, scheduled=rest),
                                reply={"notice_id": message.notice_id, "status": "cancelled"},
                                cancel_reminders=(f"at:{message.notice_id}",),
                                events=(Event("NoticeCancelled", {"notice": message.notice_id,
                                                                  "reason": message.reason[:100]}),),
                                records=(Record("notices", {"id": message.notice_id}, {
                                    "status": "cancelled", "last_error": message.reason[:300]}),))
            case SetPreferences():
                return Decision(msgspec.structs.replace(state, prefs=_checked(message.prefs)),
                                reply=msgspec.to_builtins(message.prefs))
            case GetPreferences():
                return Decision.answer(state, msgspec.to_builtins(state.prefs))
        raise Refusal(f"notifier does not handle {type(message).__name__}")

    # ---- steps ---------------------------------------------------------------------------------

    def _schedule(self, state: NotifierState, m: Schedule, ctx: Context) -> Decision[NotifierState]:
        p = m.post
        if p.notice_id in state.recent:
            return Decision.answer(state, {"notice_id": p.notice_id, "duplicate": True})
        if m.at <= ctx.now:
            return self._post(state, p, ctx)
        row = {"account_id": state.account_id, "kind": p.kind, "category": p.category, "title": p.title,
               "body": p.body, "link": p.link, "critical": p.critical, "needs_ack": p.needs_ack,
               "source": p.source[:64], "status": "scheduled", "plan": "", "created_at": m.at, "channel": None,
               "last_error": ""}
        return Decision(msgspec.structs.replace(state, scheduled={**state.scheduled, p.notice_id: m.at}),
                        reply={"notice_id": p.notice_id, "status": "scheduled", "at": m.at.isoformat()},
                        reminders=(Remind(m.at, Fire(p), key=f"at:{p.notice_id}"),),
                        records=(Record("notices", {"id": p.notice_id}, row),))

    def _post(self, state: NotifierState, m: Post, ctx: Context, *, late: bool = False) -> Decision[NotifierState]:
        if m.notice_id in state.recent:
            return Decision.answer(state, {"notice_id": m.notice_id, "duplicate": True})
        plan = self.plan(state.prefs, m.category, m.critical, m.channels)
        quiet = bool(plan) and not m.critical and in_quiet_hours(state.prefs, ctx.now)
        status = NoticeStatus.IN_APP if not plan else NoticeStatus.DEFERRED if quiet else NoticeStatus.SENDING
        nav = m.data.get("nav")
        row = {"account_id": state.account_id, "kind": m.kind, "category": m.category, "title": m.title,
               "body": m.body, "link": m.link, "nav": str(nav)[:300] if nav else None, "critical": m.critical,
               "needs_ack": m.needs_ack, "source": m.source[:64], "status": status.value, "plan": ",".join(plan),
               "created_at": ctx.now,
               "channel": None, "last_error": "", "late": late}
        deliver = Deliver(state.account_id, "notice", {
            "notice_id": m.notice_id, "kind": m.kind, "category": m.category, "title": m.title, "body": m.body,
            "link": m.link, "critical": m.critical, "needs_ack": m.needs_ack, "at": ctx.now.isoformat(),
            **({"late": True} if late else {}), **m.data,
        }, msg_id=_stream_id(m.notice_id), sensitive=True)
        new = msgspec.structs.replace(state, recent=[*state.recent[-(RECENT - 1):], m.notice_id],
                                      posted=state.posted + 1)
        records = (Record("notices", {"id": m.notice_id}, row),)
        events = (Event("NoticePosted", {"notice": m.notice_id, "kind": m.kind, "plan": plan, "late": late}),)
        reply = {"notice_id": m.notice_id, "status": status.value, "plan": plan}
        if not plan:
            return Decision(new, reply=reply, events=events, deliveries=(deliver,), records=records)
        p = Pending(m.notice_id, m.kind, m.title, m.body, m.link, m.critical, plan, status=status)
        new.pending = {**state.pending, m.notice_id: p}
        if quiet:
            return Decision(new, reply=reply, events=events, deliveries=(deliver,), records=records,
                            reminders=(Remind(quiet_end(state.prefs, ctx.now), SendNow(m.notice_id),
                                              key=f"send:{m.notice_id}"),))
        return Decision(new, reply=reply, events=events, deliveries=(deliver,), records=records,
                        tells=(self._tell(state.account_id, p),))

    def _send(self, state: NotifierState, p: Pending, ctx: Context, status: NoticeStatus) -> Decision[NotifierState]:
        p = msgspec.structs.replace(p, status=status)
        new = msgspec.structs.replace(state, pending={**state.pending, p.notice_id: p})
        return Decision(new, tells=(self._tell(state.account_id, p),),
                        records=(Record("notices", {"id": p.notice_id}, {"status": status.value}),))

    def _result(self, state: NotifierState, r: SendResult, ctx: Context) -> Decision[NotifierState]:
        p = state.pending.get(r.notice_id)
        if p is None or p.plan[p.index] != r.channel or p.attempt != r.attempt or p.status != NoticeStatus.SENDING:
            return Decision.answer(state, {"stale": True})
        key = {"id": p.notice_id}
        if r.ok:
            NOTICE.step(p.status, "accepted")
            pending = {k: v for k, v in state.pending.items() if k != p.notice_id}
            return Decision(msgspec.structs.replace(state, pending=pending), records=(Record("notices", key, {
                "status": NoticeStatus.SENT.value, "channel": r.channel, "sent_at": ctx.now,
                "provider_id": r.provider_id[:64], "attempts": p.attempt + 1}),),
                events=(Event("NoticeSent", {"notice": p.notice_id, "channel": r.channel}),))
        reason = f"{r.channel}: {r.reason}"[:300]
        if r.retryable and not r.fallback and p.attempt + 1 < MAX_ATTEMPTS:
            wait = backoff(p.notice_id, p.attempt, r.retry_after)
            retry = msgspec.structs.replace(p, attempt=p.attempt + 1, status=NOTICE.step(p.status, "retry"),
                                            last_error=reason)
            return Decision(msgspec.structs.replace(state, pending={**state.pending, p.notice_id: retry}),
                            reminders=(Remind(ctx.now + dt.timedelta(seconds=wait), SendNow(p.notice_id),
                                              key=f"send:{p.notice_id}"),),
                            records=(Record("notices", key, {"status": retry.status.value, "last_error": reason}),))
        if p.index + 1 < len(p.plan):
            nxt = msgspec.structs.replace(p, index=p.index + 1, attempt=0, last_error=reason,
                                          status=NOTICE.step(p.status, "fallback"))
            new = msgspec.structs.replace(state, pending={**state.pending, p.notice_id: nxt})
            return Decision(new, tells=(self._tell(state.account_id, nxt),),
                            events=(Event("NoticeFellBack", {"notice": p.notice_id, "from": r.channel,
                                                             "to": nxt.plan[nxt.index], "reason": reason}),),
                            records=(Record("notices", key, {"status": nxt.status.value, "last_error": reason}),))
        NOTICE.step(p.status, "exhausted")
        pending = {k: v for k, v in state.pending.items() if k != p.notice_id}
        return Decision(msgspec.structs.replace(state, pending=pending, dead=state.dead + 1),
                        events=(Event("NoticeDeadLettered", {"notice": p.notice_id, "reason": reason}),),
                        records=(Record("notices", key, {"status": NoticeStatus.DEAD.value, "last_error": reason,
                                                         "dead_at": ctx.now}),))

    def _resend(self, state: NotifierState, m: Resend, ctx: Context) -> Decision[NotifierState]:
        if m.notice_id in state.pending:
            raise Refusal("该消息正在发送中，无需重发", code="notice_sending")
        plan = self.plan(state.prefs, "clinical" if m.critical else "", True, None)
        if not plan:
            raise Refusal("收件人没有可用的外部渠道", code="no_channel")
        p = Pending(m.notice_id, m.kind, m.title, m.body, m.link, m.critical, plan)
        new = msgspec.structs.replace(state, pending={**state.pending, m.notice_id: p})
        return Decision(new, reply={"notice_id": m.notice_id, "plan": plan}, tells=(self._tell(state.account_id, p),),
                        events=(Event("NoticeResent", {"notice": m.notice_id, "plan": plan}),),
                        records=(Record("notices", {"id": m.notice_id}, {
                            "status": NoticeStatus.SENDING.value, "plan": ",".join(plan), "last_error": "",
                            "dead_at": None}),))

    # ---- rules ---------------------------------------------------------------------------------

    @staticmethod
    def plan(prefs: Preferences, category: str, critical: bool, narrowed: list[str] | None) -> list[str]:
        """The outside channels a notice goes to, in order (empty: in-app only)."""
        if critical:
            chosen = [c for c in prefs.channels if c in OUTSIDE_CHANNELS]
            if "sms" not in chosen:
                chosen.append("sms")  # a critical alert always has the channel that reaches any phone
        else:
            off = set(prefs.off.get(category, ()))
            chosen = [c for c in prefs.channels if c in OUTSIDE_CHANNELS and c not in off]
        if narrowed is not None:
            chosen = [c for c in chosen if c in narrowed]
        return chosen

    @staticmethod
    def _tell(account_id: str, p: Pending) -> Tell:
        channel = p.plan[p.index]
        return Tell(make_address("send", f"{p.notice_id}:{channel}:{p.attempt}"),
                    Send(account_id, p.notice_id, channel, p.attempt, p.kind, p.title, p.body, p.link))


def _stream_id(notice_id: str) -> str:
    """The delivery's id on the stream (at most 64 characters: long notice ids are hashed)."""
    if len(notice_id) <= 62:
        return f"n:{notice_id}"
    return f"n:{hashlib.blake2b(notice_id.encode(), digest_size=24).hexdigest()}"


def _checked(prefs: Preferences) -> Preferences:
    unknown = [c for c in prefs.channels if c not in OUTSIDE_CHANNELS]
    if unknown or len(set(prefs.channels)) != len(prefs.channels):
        raise Refusal(f"未知或重复的渠道：{'、'.join(unknown) or '重复'}（可选 wechat、sms、alipay）",
                      code="bad_preferences")
    for minutes in (prefs.quiet_start, prefs.quiet_end):
        if minutes is not None and not 0 <= minutes < 24 * 60:
            raise Refusal("免打扰时段的时间不对（0:00 到 23:59）", code="bad_preferences")
    if (prefs.quiet_start is None) != (prefs.quiet_end is None) or (
            prefs.quiet_start is not None and prefs.quiet_start == prefs.quiet_end):
        raise Refusal("免打扰时段需要开始和结束两个不同的时间", code="bad_preferences")
    return prefs


def _local_minutes(now: dt.datetime) -> int:
    local = now.astimezone(SHANGHAI)
    return local.hour * 60 + local.minute


def in_quiet_hours(prefs: Preferences, now: dt.datetime) -> bool:
    start, end = prefs.quiet_start, prefs.quiet_end
    if start is None or end is None:
        return False
    minute = _local_minutes(now)
    return start <= minute < end if start < end else minute >= start or minute < end


def quiet_end(prefs: Preferences, now: dt.datetime) -> dt.datetime:
    """When the quiet hours that ``now`` falls in end (Asia/Shanghai wall time)."""
    assert prefs.quiet_end is not None
    local = now.astimezone(SHANGHAI)
    end = local.replace(hour=prefs.quiet_end // 60, minute=prefs.quiet_end % 60, second=0, microsecond=0)
    if end <= local:
        end += dt.timedelta(days=1)
    return end.astimezone(dt.UTC)


def backoff(notice_id: str, attempt: int, asked: float | None = None) -> float:
    """Seconds before retry ``attempt + 1``: 2^attempt jittered to 50..150 % (deterministic per notice,
    so a replayed decision waits the same), or what the provider asked for when longer."""
    digest = hashlib.blake2b(f"{notice_id}:{attempt}".encode(), digest_size=2).digest()
    jitter = 0.5 + int.from_bytes(digest, "big") / 65535
    return min(max(2.0 ** attempt * jitter, asked or 0.0), MAX_BACKOFF_SECONDS)

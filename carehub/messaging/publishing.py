"""The publish API (MSG-1): the hospital's other systems (HIS, LIS, PACS, queue calling) post notices.

A partner system signs its request (SCH-9, :mod:`carehub.identity.partners`, operation
``messages.publish``) and names a notice kind of :mod:`.kinds`, one recipient (an account, a patient
ID or a phone number), the template values and an idempotency key. What happens:

1. the idempotency key is looked up: a repeat answers the first answer (``duplicate: true``) and
   sends nothing; the same key with a different request is refused (``idempotency_conflict``);
2. the partner's publish rule (table ``partner_publish_rules``, set by an admin) must allow the
   kind and the recipient's audience (patient or staff); a partner without a rule publishes nothing;
3. the recipient is found; a kind for staff never reaches a patient's account, nor the reverse;
4. the partner's per-minute budget (a token bucket: bursts up to ``per_minute``, refilled evenly)
   must have room, else ``rate_limited`` with the seconds to wait;
5. the notice is posted through :meth:`Notifier.notify` with a notice id derived from partner and
   key (``p-<hash>``): two racing repeats post one notice (the notifier actor dedupes by id), and
   the first answer is kept in ``open_messages``.

Refusals are not kept: after an admin fixes a rule the partner retries with the same key.
The budgets live in this node's memory, like :class:`carehub.identity.ratelimit.RateLimiter`'s
windows (that limiter scans its window on each check; a bucket takes a batch in O(1)).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import trio

from carehub.actors.notifier import OUTSIDE_CHANNELS
from carehub.errors import CareHubError, Invalid, NotFound
from carehub.hub import HubError
from carehub.identity.service import normalise_phone
from carehub.storage.identity.accounts import AccountRow, AccountStore
from carehub.storage.identity.patients import PatientStore
from carehub.storage.keyring import KeyRing
from carehub.storage.messaging import PublishStore

from .errors import MessagingError, NotAllowed, NoticeNotFound, UnknownKind, UnknownRecipient
from .kinds import KINDS
from .notifier import Notifier

MAX_BATCH = 500
AUDIENCES = ("patient", "staff")
MAX_PER_MINUTE = 100_000
MAX_VALUE_CHARS = 1000
_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
#: batch items handled at once (each one is a notifier actor's commit)
_CONCURRENCY = 16


class IdempotencyConflict(MessagingError):
    """The idempotency key was used before for a different request."""

    code = "idempotency_conflict"


class WrongAudience(MessagingError):
    """A kind for staff sent to a patient's account, or the reverse."""

    code = "wrong_audience"


class PublishRateLimited(MessagingError):
    """The partner's per-minute budget is spent; ``retry_after`` whole seconds until there is room."""

    code = "rate_limited"

    def __init__(self, retry_after: float, message: str) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


@dataclasses.dataclass(frozen=True)
class OpenMessage:
    """One message a partner publishes (the route's body, checked for shape already)."""

    kind: str
    idempotency_key: str
    values: dict[str, str] = dataclasses.field(default_factory=dict)
    account_id: str | None = None
    patient_id: str | None = None
    phone: str | None = None
    #: narrow the outside channels to these (None: the recipient's own choice; []: in-app only)
    channels: list[str] | None = None
    #: post it then, not now (a reminder: revisit, pickup, follow-up); cancelled by :meth:`Publishing.cancel`
    send_at: dt.datetime | None = None

    def fingerprint(self) -> str:
        """What makes two requests the same request (for a repeated idempotency key)."""
        canonical = orjson.dumps([self.kind, self.account_id, self.patient_id, self.phone, self.values,
                                  self.channels, self.send_at.isoformat() if self.send_at else None],
                                 option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(canonical).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class PublishRule:
    partner_id: str
    #: kind names, or {"*"} for every kind
    kinds: frozenset[str]
    audiences: frozenset[str]
    per_minute: int
    updated_at: dt.datetime | None = None
    updated_by: str = ""

    def allows_kind(self, kind: str) -> bool:
        return "*" in self.kinds or kind in self.kinds

    def view(self) -> dict[str, Any]:
        return {"partner_id": self.partner_id, "kinds": sorted(self.kinds), "audiences": sorted(self.audiences),
                "per_minute": self.per_minute,
                "updated_at": self.updated_at.isoformat() if self.updated_at else None, "updated_by": self.updated_by}


def _split(text: str) -> frozenset[str]:
    return frozenset(p for p in str(text).split(",") if p)


def _rule(row: dict[str, Any]) -> PublishRule:
    split = _split
    return PublishRule(row["partner_id"], split(row["kinds"]), split(row["audiences"]), int(row["per_minute"]),
                       row["updated_at"], row["updated_by"])


def audiences_of(roles: frozenset[str]) -> set[str]:
    """Patient accounts hold the ``patient`` role; any other role but ``partner`` is staff."""
    found = set()
    if "patient" in roles:
        found.add("patient")
    if roles - {"patient", "partner", ""}:
        found.add("staff")
    return found


def notice_id_for(partner_id: str, key: str) -> str:
    return "p-" + hashlib.sha256(f"{partner_id}\n{key}".encode()).hexdigest()[:32]


def source_of(partner_id: str) -> str:
    return f"partner:{partner_id}"[:64]


class _Bucket:
    __slots__ = ("at", "capacity", "tokens")

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = capacity
        self.tokens = float(capacity)
        self.at = now


@dataclasses.dataclass(frozen=True)
class _Known:
    """What a batch read up front: first answers by idempotency key, recipient accounts by id."""

    answers: dict[str, str]
    accounts: dict[str, AccountRow]
    #: the batch's new first answers, kept in one go after its posts
    to_keep: dict[str, str] = dataclasses.field(default_factory=dict)
    #: idempotency key -> notice id, for messages whose notice a racing request (or a request before a
    #: restart) posted: their first answers are looked up after the batch's posts
    raced: dict[str, str] = dataclasses.field(default_factory=dict)


class Publishing:
    def __init__(self, notifier: Notifier, store: PublishStore, accounts: AccountStore, patients: PatientStore,
                 keyring: KeyRing, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.store = store
        self.accounts = accounts
        self.patients = patients
        self.keyring = keyring
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    # ---- publishing ----------------------------------------------------------------------------

    async def publish(self, partner_id: str, message: OpenMessage) -> dict[str, Any]:
        """Post one message; ``{message_id, status, duplicate}``. Refusals raise (see the module docstring)."""
        rule = await self._rule_of(partner_id)
        return await self._one(partner_id, rule, message)

    async def publish_batch(self, partner_id: str, messages: Sequence[OpenMessage]) -> list[dict[str, Any]]:
        """Post up to :data:`MAX_BATCH` messages; one answer per message, in order: the answer of
        :meth:`publish`, or ``{error: {code, message}}`` (with ``retry_after`` when rate limited).

        Raises only for the batch as a whole: bad size, a key used twice in it, no publish rule, or
        every message refused for the rate limit (nothing was sent: retry after ``retry_after``).
        """
        if not 1 <= len(messages) <= MAX_BATCH:
            raise Invalid(f"一次可发布 1 到 {MAX_BATCH} 条消息 (send between 1 and {MAX_BATCH} messages; "
                          f"got {len(messages)})")
        seen: dict[str, int] = {}
        for n, m in enumerate(messages):
            if m.idempotency_key in seen:
                raise Invalid(f"第 {seen[m.idempotency_key] + 1} 条和第 {n + 1} 条的 idempotency_key 相同 "
                              f"(messages[{seen[m.idempotency_key]}] and messages[{n}] share an idempotency_key)")
            seen[m.idempotency_key] = n
        rule = await self._rule_of(partner_id)
        # what the batch's messages look up, read once for all of them (two queries, not two per message)
        known = _Known(await self.store.first_answers(partner_id, list(seen)), await self.accounts.by_ids(
            [m.account_id for m in messages if m.account_id is not None and 0 < len(m.account_id) <= 64]))
        results: list[dict[str, Any]] = [{} for _ in messages]
        limited: list[float] = []
        limiter = trio.CapacityLimiter(_CONCURRENCY)

        async def one(n: int, m: OpenMessage) -> None:
            async with limiter:
                try:
                    results[n] = await self._one(partner_id, rule, m, known)
                except PublishRateLimited as err:
                    limited.append(err.retry_after)
                    results[n] = {"error": {"code": err.code, "message": err.message, "retry_after": err.retry_after}}
                except (CareHubError, HubError) as err:
                    results[n] = {"error": {"code": err.code, "message": err.message}}

        async with trio.open_nursery() as nursery:
            for n, m in enumerate(messages):
                nursery.start_soon(one, n, m)
        if known.raced:
            await self._settle_raced(partner_id, messages, known, results)
        if known.to_keep:
            kept = await self.store.keep_answers(partner_id, known.to_keep, dt.datetime.now(dt.UTC))
            for n, m in enumerate(messages):
                mine = known.to_keep.get(m.idempotency_key)
                if mine is not None and kept[m.idempotency_key] != mine:  # a racing request was kept first
                    results[n] = self._repeat(kept[m.idempotency_key], m.fingerprint())
        if len(limited) == len(messages):
            raise PublishRateLimited(min(limited), "发布过于频繁，请稍后再试 (per-minute limit reached; nothing sent)")
        return results

    async def _one(self, partner_id: str, rule: PublishRule, m: OpenMessage,
                   known: _Known | None = None) -> dict[str, Any]:
        if not _KEY.match(m.idempotency_key):
            raise Invalid("idempotency_key 须为 1-80 个字符 [A-Za-z0-9_.:-] (idempotency_key must be 1-80 characters "
                          "of A-Z a-z 0-9 _ . : -)")
        fingerprint = m.fingerprint()
        first = (known.answers.get(m.idempotency_key) if known is not None
                 else await self.store.first_answer(partner_id, m.idempotency_key))
        if first is not None:
            return self._repeat(first, fingerprint)
        kind = KINDS.get(m.kind)
        if kind is None:
            raise UnknownKind(f"没有这种消息类型: {m.kind[:40]} (known kinds: docs/open-api.md, or GET "
                              "/api/v1/admin/publish-rules for admins)")
        if not rule.allows_kind(kind.name):
            raise NotAllowed(f"该合作方无权发布 {kind.name} 类消息 (kind {kind.name} is not in this partner's publish "
                             "rule; an admin sets it in PUT /api/v1/admin/publish-rules/<partner>)")
        self._check_values(kind.name, kind.variables, m.values)
        channels = self._check_channels(m.channels)
        account = await self._recipient(m, known)
        if kind.audience not in audiences_of(account.roles):
            raise WrongAudience(f"{kind.name} 类消息只发给{'工作人员' if kind.audience == 'staff' else '患者'} "
                                f"(kind {kind.name} is for {kind.audience} accounts; the recipient is not one)")
        if kind.audience not in rule.audiences:
            raise NotAllowed(f"该合作方无权向{'工作人员' if kind.audience == 'staff' else '患者'}发送消息 "
                             f"(audience {kind.audience} is not in this partner's publish rule)")
        self._take(partner_id, rule.per_minute)
        if m.send_at is not None and (m.send_at.tzinfo is None or m.send_at > dt.datetime.now(dt.UTC)
                                      + dt.timedelta(days=366)):
            raise Invalid("send_at 须为带时区的时间，且在一年之内 (send_at: ISO 8601 with a zone, within a year)")
        reply = await self.notifier.notify(
            account.id, kind.name, m.values, notice_id=notice_id_for(partner_id, m.idempotency_key),
            source=source_of(partner_id), channels=channels, at=m.send_at)
        if reply.get("duplicate"):
            # a racing first request with this key posted it: its answer is the first answer
            if known is not None:  # a batch looks them up together, after its posts
                known.raced[m.idempotency_key] = str(reply["notice_id"])
                return {"message_id": str(reply["notice_id"]), "status": "accepted", "duplicate": True}
            return await self._raced(partner_id, m.idempotency_key, fingerprint, str(reply["notice_id"]))
        answer = {"message_id": reply["notice_id"], "status": reply.get("status") or "accepted",
                  "request": fingerprint}
        encoded = orjson.dumps(answer).decode()
        if known is not None:  # a batch keeps its first answers together, after its posts
            known.to_keep[m.idempotency_key] = encoded
            return {"message_id": answer["message_id"], "status": answer["status"], "duplicate": False}
        kept = await self.store.keep_answer(partner_id, m.idempotency_key, encoded, dt.datetime.now(dt.UTC))
        if kept != encoded:  # a repeat raced this one and was kept first: it is the first answer
            return self._repeat(kept, fingerprint)
        return {"message_id": answer["message_id"], "status": answer["status"], "duplicate": False}

    async def _settle_raced(self, partner_id: str, messages: Sequence[OpenMessage], known: _Known,
                            results: list[dict[str, Any]]) -> None:
        """The batch's messages whose notices racing requests posted: their first answers, looked up together
        (once more after a moment); those whose first request went away (a restart) keep one now."""
        keys = list(known.raced)
        firsts = await self.store.first_answers(partner_id, keys)
        if len(firsts) < len(keys):
            await trio.sleep(0.2)
            firsts = await self.store.first_answers(partner_id, keys)
        missing = [k for k in keys if k not in firsts]
        if missing:
            rows = {r["id"]: r for r in await self.notifier.store.many([known.raced[k] for k in missing])}
            by_key = {m.idempotency_key: m for m in messages}
            firsts.update(await self.store.keep_answers(partner_id, {k: orjson.dumps({
                "message_id": known.raced[k], "status": rows[known.raced[k]]["status"] if known.raced[k] in rows
                else "accepted", "request": by_key[k].fingerprint()}).decode() for k in missing},
                dt.datetime.now(dt.UTC)))
        for n, m in enumerate(messages):
            if m.idempotency_key in known.raced:
                try:
                    results[n] = {**self._repeat(firsts[m.idempotency_key], m.fingerprint()), "duplicate": True}
                except IdempotencyConflict as err:
                    results[n] = {"error": {"code": err.code, "message": err.message}}

    async def _raced(self, partner_id: str, key: str, fingerprint: str, notice_id: str) -> dict[str, Any]:
        """The answer to a request whose notice a racing first request posted: the first answer once it is
        kept (it is kept right after the post), else the notice's current status."""
        for _ in range(40):
            first = await self.store.first_answer(partner_id, key)
            if first is not None:
                return self._repeat(first, fingerprint)
            await trio.sleep(0.05)
        # the first request went away before keeping its answer (the hub restarted under it): keep this one
        row = await self.notifier.store.get(notice_id)
        answer = {"message_id": notice_id, "status": row["status"] if row else "accepted", "request": fingerprint}
        kept = await self.store.keep_answer(partner_id, key, orjson.dumps(answer).decode(), dt.datetime.now(dt.UTC))
        return {**self._repeat(kept, fingerprint), "duplicate": True}

    @staticmethod
    def _repeat(first: str, fingerprint: str) -> dict[str, Any]:
        answer = orjson.loads(first)
        if answer.get("request") != fingerprint:
            raise IdempotencyConflict("该 idempotency_key 已用于另一条不同的消息 (this idempotency_key was used for a "
                                      "different message; use a new key for a new message)")
        return {"message_id": answer["message_id"], "status": answer["status"], "duplicate": True}

    @staticmethod
    def _check_values(kind: str, variables: Sequence[str], values: dict[str, str]) -> None:
        unknown = sorted(set(values) - set(variables))
        if unknown:
            raise Invalid(f"{kind} 类消息没有变量 {', '.join(u[:40] for u in unknown[:5])} (values may name: "
                          f"{', '.join(variables)})")
        for name, value in values.items():
            if len(value) > MAX_VALUE_CHARS or "\x00" in value:
                raise Invalid(f"变量 {name} 过长或含有不允许的字符 (values.{name}: at most {MAX_VALUE_CHARS} "
                              "characters, no NUL)")

    @staticmethod
    def _check_channels(channels: list[str] | None) -> list[str] | None:
        if channels is None:
            return None
        unknown = [c for c in channels if c not in OUTSIDE_CHANNELS]
        if unknown:
            raise Invalid(f"没有渠道 {unknown[0][:40]} (channels may name: {', '.join(OUTSIDE_CHANNELS)}; the in-app "
                          "copy is always sent)")
        return list(dict.fromkeys(channels))

    async def _recipient(self, m: OpenMessage, known: _Known | None = None) -> AccountRow:
        given = [(name, value) for name, value in (("account_id", m.account_id), ("patient_id", m.patient_id),
                                                    ("phone", m.phone)) if value is not None]
        if len(given) != 1:
            raise Invalid("to 须且只能给出 account_id、patient_id、phone 之一 (name exactly one recipient: "
                          "account_id, patient_id or phone)")
        name, value = given[0]
        account = None
        if name == "account_id" and 0 < len(value) <= 64:
            account = known.accounts.get(value) if known is not None else await self.accounts.by_id(value)
        elif name == "patient_id" and 0 < len(value) <= 64:
            links = await self.patients.links_to(value)
            # the person's own account, else (a child, a person without one) the account that added them first
            holder = next((link for link in links if link.relation == "self"), None) or (links[0] if links else None)
            if holder is not None:
                account = await self.accounts.by_id(holder.account_id)
        elif name == "phone":
            phone = normalise_phone(value)  # the same rule sign-in uses
            account = await self.accounts.by_phone(self.keyring.blind_index(phone, field="accounts.phone"))
        if account is None or account.disabled or not audiences_of(account.roles):
            raise UnknownRecipient(f"找不到接收人 (no account for {name} {value[:64]!r})")
        return account

    def _take(self, partner_id: str, per_minute: int) -> None:
        now = self._clock()
        bucket = self._buckets.get(partner_id)
        if bucket is None:
            if len(self._buckets) > 10_000:
                self._buckets.clear()
            bucket = self._buckets[partner_id] = _Bucket(per_minute, now)
        rate = per_minute / 60.0
        bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.at) * rate)
        bucket.capacity = per_minute
        bucket.at = now
        if bucket.tokens < 1.0:
            raise PublishRateLimited((1.0 - bucket.tokens) / rate, f"发布过于频繁，每分钟最多 {per_minute} 条 "
                                     f"(at most {per_minute} messages a minute)")
        bucket.tokens -= 1.0

    # ---- status --------------------------------------------------------------------------------

    async def status(self, partner_id: str, message_id: str) -> dict[str, Any]:
        """Where a message this partner published is, per channel; another partner's: not found."""
        found = await self.notifier.status(message_id) if message_id.startswith("p-") and len(message_id) <= 80 \
            else None
        if found is None or found["source"] != source_of(partner_id):
            raise NoticeNotFound(f"没有这条消息 (no message {message_id[:80]} published by this partner)")
        channels = [{"channel": c["channel"], "status": c["status"], "at": c.get("at"), "read": c.get("read"),
                     "report": c.get("report")} for c in found["channels"]]
        return {"message_id": found["message_id"], "kind": found["kind"], "status": found["status"],
                "reason": found["reason"], "created_at": found["created_at"], "channels": channels}

    async def cancel(self, partner_id: str, message_id: str, reason: str) -> dict[str, Any]:
        """A scheduled message whose reason went away (the medicine was picked up): it is not posted."""
        row = await self.notifier.store.get(message_id) if message_id.startswith("p-") and len(message_id) <= 80 \
            else None
        if row is None or row["source"] != source_of(partner_id):
            raise NoticeNotFound(f"没有这条消息 (no message {message_id[:80]} published by this partner)")
        return await self.notifier.cancel_scheduled(row["account_id"], message_id, reason[:100])

    # ---- rules (admin) -------------------------------------------------------------------------

    async def _rule_of(self, partner_id: str) -> PublishRule:
        row = await self.store.rule(partner_id)
        if row is None:
            raise NotAllowed("该合作方尚未配置发布权限，请管理员在后台设置 (this partner has no publish rule yet: "
                             "an admin sets one with PUT /api/v1/admin/publish-rules/<partner_account_id>)")
        return _rule(row)

    async def rules(self) -> dict[str, Any]:
        """Every partner account with its rule (None: publishes nothing), and what a rule may name."""
        partners = await self.accounts.with_role("partner")
        rules = await self.store.rules()
        return {
            "partners": [{"account_id": a.id, "login": a.login, "name": a.display_name, "disabled": a.disabled,
                          "rule": _rule(rules[a.id]).view() if a.id in rules else None} for a in partners],
            "kinds": [{"kind": k.name, "label": k.label, "audience": k.audience, "category": k.category}
                      for k in KINDS.values()],
            "audiences": list(AUDIENCES),
        }

    async def save_rule(self, partner_id: str, kinds: Sequence[str], audiences: Sequence[str], per_minute: int,
                        *, by: str) -> dict[str, Any]:
        account = await self.accounts.by_id(partner_id) if len(partner_id) <= 64 else None
        if account is None or "partner" not in account.roles:
            raise NotFound(f"合作方账号 {partner_id[:64]} 不存在 (no partner account)")
        chosen = set(kinds)
        if "*" in chosen and len(chosen) > 1:
            raise Invalid('kinds 为 ["*"]（全部类型）或类型列表，不能混用 (either ["*"] or a list of kinds)')
        unknown = sorted(chosen - set(KINDS) - {"*"})
        if unknown:
            raise Invalid(f"没有消息类型 {', '.join(u[:40] for u in unknown[:5])} (known kinds: GET "
                          "/api/v1/admin/publish-rules)")
        bad = sorted(set(audiences) - set(AUDIENCES))
        if bad:
            raise Invalid(f"audiences 只能是 patient、staff (unknown audience {bad[0][:40]})")
        if not 1 <= per_minute <= MAX_PER_MINUTE:
            raise Invalid(f"per_minute 须在 1 到 {MAX_PER_MINUTE} 之间 (per_minute must be 1..{MAX_PER_MINUTE})")
        await self.store.save_rule(partner_id, ",".join(sorted(chosen)), ",".join(sorted(set(audiences))),
                                   per_minute, by, dt.datetime.now(dt.UTC))
        return (await self._rule_of(partner_id)).view()


__all__ = ["AUDIENCES", "MAX_BATCH", "IdempotencyConflict", "OpenMessage", "PublishRateLimited", "PublishRule",
           "Publishing", "WrongAudience", "notice_id_for", "source_of"]

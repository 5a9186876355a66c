"""Sending one notice on one outside channel: the ``send/<notice_id>:<channel>:<attempt>`` effect.

:class:`SendEffect` finds the recipient's address on the channel (the account's phone for SMS,
the bound openid / Alipay user id for WeChat and Alipay), asks the channel's circuit breaker,
sends through the adapter (:mod:`carehub.channels.notices`) and tells the notifier actor how it
went (:class:`~carehub.actors.notifier.SendResult`); the actor decides about retries, fallback
and dead letters.

**No second send after a crash.** The effect row stays stored until ``perform`` returns, so a
crash between the provider's answer and the actor's result repeats the send:

- WeChat deduplicates by ``client_msg_id``: the adapter passes ``<notice_id>:<channel>`` and the
  repeat is the same message (:data:`DEDUPLICATING`);
- SMS and Alipay do not: a marker is written before the attempt (``notice_attempts``). A
  repeated attempt that finds its marker, and every retry after a failure (a timed-out send may
  have gone through), first asks the provider (``find_sent``) and reports what it finds instead
  of sending again.

**Circuit breaker per channel.** :data:`FAILURES_TO_OPEN` retryable failures in a row open the
channel for :data:`OPEN_SECONDS`: sends fail at once (retryable, with the time left), then one
trial send decides whether it closes again. The states are on the ops dashboard and the admin
console's channel page.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import ClassVar

import msgspec

from carehub.actors.notifier import Send, SendResult
from carehub.channels.notices import ChannelError, NoticeChannel, OutgoingNotice
from carehub.hub import Context, Effect, Hub, make_address
from carehub.storage.identity.accounts import AccountStore
from carehub.storage.keyring import KeyRing
from carehub.storage.messaging import NoticeStore

log = logging.getLogger("carehub.messaging")

#: channels whose provider recognises a repeated send by our idempotency key
DEDUPLICATING = frozenset({"wechat"})
FAILURES_TO_OPEN = 5
OPEN_SECONDS = 15.0
#: how long an address found stays cached (a new binding is seen within this)
ADDRESS_TTL_SECONDS = 60.0


@dataclasses.dataclass
class Circuit:
    """One channel's breaker: closed -> open after repeated failures -> half-open trial -> closed."""

    channel: str
    failures: int = 0
    opened_at: float | None = None
    trial: bool = False
    sent: int = 0
    failed: int = 0
    last_error: str = ""

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if time.monotonic() - self.opened_at >= OPEN_SECONDS else "open"

    def allow(self) -> float | None:
        """None: go ahead; else the seconds until the channel may be tried again."""
        if self.opened_at is None:
            return None
        left = OPEN_SECONDS - (time.monotonic() - self.opened_at)
        if left > 0:
            return left
        if self.trial:
            return 1.0  # one trial at a time
        self.trial = True
        return None

    def succeeded(self) -> None:
        self.failures, self.opened_at, self.trial = 0, None, False
        self.sent += 1

    def failed_once(self, reason: str) -> None:
        self.failed += 1
        self.last_error = reason[:200]
        self.failures += 1
        if self.trial or self.failures >= FAILURES_TO_OPEN:
            if self.opened_at is None or self.trial:
                log.warning("channel %s: circuit open after %d failures (%s)", self.channel, self.failures, reason)
            self.opened_at, self.trial = time.monotonic(), False

    def view(self) -> dict[str, object]:
        return {"channel": self.channel, "state": self.state, "failures_in_a_row": self.failures, "sent": self.sent,
                "failed": self.failed, "last_error": self.last_error}


class Channels:
    """The outside channels configured here, their switches (admin) and their breakers."""

    def __init__(self, adapters: Mapping[str, NoticeChannel | None]) -> None:
        self.adapters = {name: a for name, a in adapters.items() if a is not None}
        self.circuits = {name: Circuit(name) for name in ("wechat", "sms", "alipay")}
        self.disabled: set[str] = set()

    async def load(self, store: NoticeStore) -> None:
        self.disabled = {c for c, row in (await store.channels()).items() if not row["enabled"]}

    async def save(self, store: NoticeStore, channel: str, enabled: bool, default_template: str | None, *,
                   by: str) -> None:
        """An admin switches a channel on or off (stored, then in force at once)."""
        await store.save_channel(channel, enabled, default_template, by, dt.datetime.now(dt.UTC))
        if enabled:
            self.disabled.discard(channel)
        else:
            self.disabled.add(channel)

    def usable(self) -> list[str]:
        """The outside channels a notice may be planned on: configured here and switched on."""
        return [name for name in self.circuits if name in self.adapters and name not in self.disabled]

    def view(self) -> list[dict[str, object]]:
        return [{**circuit.view(), "configured": name in self.adapters, "enabled": name not in self.disabled}
                for name, circuit in self.circuits.items()]


class Addresses:
    """Where an account is reached on a channel (cached for a minute)."""

    def __init__(self, store: NoticeStore, accounts: AccountStore, keyring: KeyRing) -> None:
        self.store = store
        self.accounts = accounts
        self.keyring = keyring
        self._cache: dict[tuple[str, str], tuple[float, str | None]] = {}

    async def find(self, account_id: str, channel: str) -> str | None:
        key = (account_id, channel)
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < ADDRESS_TTL_SECONDS:
            return hit[1]
        if channel == "sms":
            account = await self.accounts.by_id(account_id)
            address = (self.keyring.open(account.phone_enc, field="accounts.phone")
                       if account is not None and account.phone_enc else None)
        else:
            address = await self.store.binding(account_id, channel)
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic(), address)
        return address

    def forget(self, account_id: str) -> None:
        for channel in ("wechat", "sms", "alipay"):
            self._cache.pop((account_id, channel), None)


def send_key(notice_id: str, channel: str) -> str:
    """The idempotency key of a notice on a channel: the same for every attempt, at most 64 characters
    (providers keep 64: a longer key is hashed, so two keys never share a cut-off prefix)."""
    key = f"{notice_id}:{channel}"
    if len(key) <= 64:
        return key
    return f"h{hashlib.blake2b(key.encode(), digest_size=24).hexdigest()}:{channel}"


class SendEffect(Effect):
    kind = "send"
    messages: ClassVar[dict[str, type[msgspec.Struct]]] = {"Send": Send}

    def __init__(self, hub: Hub, channels: Channels, addresses: Addresses, store: NoticeStore,
                 templates: Callable[[str, str], str | None] | None = None) -> None:
        self.hub = hub
        self.channels = channels
        self.addresses = addresses
        self.store = store
        self.templates = templates

    async def perform(self, message: msgspec.Struct, ctx: Context) -> None:
        assert isinstance(message, Send)
        result = await self._attempt(message, ctx)
        await self.hub.ask(make_address("notifier", message.account_id), result)

    async def _attempt(self, m: Send, ctx: Context) -> SendResult:
        def outcome(ok: bool, reason: str = "", *, retryable: bool = False, fallback: bool = False,
                    retry_after: float | None = None, provider_id: str = "") -> SendResult:
            return SendResult(m.notice_id, m.channel, m.attempt, ok, retryable=retryable, fallback=fallback,
                              reason=reason, provider_id=provider_id, retry_after=retry_after)

        adapter = self.channels.adapters.get(m.channel)
        if adapter is None or m.channel in self.channels.disabled:
            return outcome(False, "该渠道未配置或已停用", fallback=True)
        address = await self.addresses.find(m.account_id, m.channel)
        if not address:
            return outcome(False, "收件人未绑定该渠道", fallback=True)
        circuit = self.channels.circuits[m.channel]
        wait = circuit.allow()
        if wait is not None:
            return outcome(False, "渠道熔断中，稍后重试", retryable=True, retry_after=wait)
        key = send_key(m.notice_id, m.channel)
        try:
            if m.channel not in DEDUPLICATING:
                first = await self.store.begin_attempt(f"{key}:{m.attempt}", ctx.now)
                if not first or m.attempt > 0:
                    found = await adapter.find_sent(address, key)
                    if found is not None:
                        circuit.succeeded()
                        return outcome(True, provider_id=found.provider_id)
            template = self.templates(m.kind, m.channel) if self.templates else None
            receipt = await adapter.send_notice(
                address, OutgoingNotice(m.kind, m.title, m.body, m.link, template=template), idempotency_key=key)
        except ChannelError as err:
            if err.retryable:
                circuit.failed_once(str(err))
            else:
                circuit.failed += 1
                circuit.last_error = str(err)[:200]
            return outcome(False, f"{err.code} {err.message}"[:200], retryable=err.retryable, fallback=err.fallback,
                           retry_after=err.retry_after)
        circuit.succeeded()
        return outcome(True, provider_id=receipt.provider_id)


"""What every notice channel adapter (WeChat, SMS, Alipay) speaks to the message center.

The message center (:mod:`carehub.messaging`) hands an adapter one :class:`OutgoingNotice` for
one address (a phone, a WeChat openid, an Alipay user id) and gets back a
:class:`ChannelReceipt`, or a :class:`ChannelError` that says what to do next:

- ``retryable``: the same send may succeed later (provider busy, rate limited per minute, token
  expired and already refreshed, timeout): the notifier retries with back-off and jitter.
- ``fallback``: this channel will never reach the person for this notice (not following the
  account, subscription refused, bad number): the notifier goes on to the next channel at once.
- neither: a configuration problem (bad template, bad key): counted against the channel and,
  after the retries, dead-lettered with the provider's reason so ops can fix and resend.

``idempotency_key`` is stable for one (notice, channel, attempt): adapters pass it to the
provider where the provider deduplicates (WeChat ``client_msg_id``, Alipay ``out_request_no`` /
``msg_id``, SMS ``OutId`` for reconciliation through ``QuerySendDetails``).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Protocol

ChannelName = Literal["wechat", "sms", "alipay"]
CHANNELS: tuple[ChannelName, ...] = ("wechat", "sms", "alipay")


@dataclasses.dataclass(frozen=True)
class OutgoingNotice:
    """One rendered notice, as a provider template needs it (every value is plain text)."""

    kind: str  # the notice kind, e.g. "booking.confirmed" (carehub.messaging.kinds)
    title: str  # short (WeChat cuts values at 20 characters)
    body: str
    #: a deep link into the patient app or workstation (a path such as "/h5/bills?bill=B1"),
    #: made absolute by the adapter from its configured public base URL
    link: str | None = None
    #: the provider's template for this kind (WeChat template_id, SMS template code, Alipay
    #: template id); None: the adapter's default template for notices
    template: str | None = None
    #: recipient's display name for templates that greet ("张*三您好")
    name: str = ""


@dataclasses.dataclass(frozen=True)
class ChannelReceipt:
    """The provider accepted the notice; ``provider_id`` finds it in the provider's reports."""

    provider_id: str
    #: True when the provider already confirmed delivery (most only accept now, report later)
    delivered: bool = False


class ChannelError(Exception):
    """A send that did not go out; ``code`` and ``message`` are the provider's words."""

    def __init__(self, code: str, message: str, *, retryable: bool = False, fallback: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.fallback = fallback
        #: the provider asked to wait this long (seconds) before the next try
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True)
class DeliveryReport:
    """A provider's later word on a send it accepted (WeChat TEMPLATESENDJOBFINISH, SMS report)."""

    channel: ChannelName
    provider_id: str
    delivered: bool
    reason: str = ""


class NoticeChannel(Protocol):
    """An adapter the message center can send notices through."""

    name: ChannelName

    async def send_notice(self, address: str, notice: OutgoingNotice, *, idempotency_key: str) -> ChannelReceipt:
        """Send one notice; raises :class:`ChannelError` (never anything else for provider trouble)."""
        ...

    async def find_sent(self, address: str, idempotency_key: str) -> ChannelReceipt | None:
        """After a crash between a send and its receipt: did the provider take this send?

        None when it did not (or the provider cannot say: then the caller decides by whether the
        provider deduplicates ``idempotency_key`` itself).
        """
        ...

"""What an actor kind is: a pure ``handle(state, message, ctx) -> Decision`` plus its types.

The shell (:mod:`carehub.hub.runtime`) owns the mailbox, the transaction and delivery. A
behaviour never awaits, never touches SQL or Trio: it looks at its state and one message and
decides what happens. Everything in a :class:`Decision` is committed in one transaction before
the sender gets the reply; deliveries, tells and publishes go out only after that commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, NewType, TypeVar

import msgspec

Address = NewType("Address", str)
AccountId = NewType("AccountId", str)

S = TypeVar("S")


def make_address(kind: str, key: str) -> Address:
    return Address(f"{kind}/{key}")


def split_address(address: str) -> tuple[str, str]:
    """``"queue/cardio-am"`` -> ``("queue", "cardio-am")``; raises ValueError when malformed."""
    kind, sep, key = address.partition("/")
    if not sep or not kind or not key or len(address) > 200:
        raise ValueError(f"actor address must look like 'kind/key' (at most 200 characters), got {address!r}")
    return kind, key


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a message from outside the hub (an account and its roles), or the system."""

    account_id: str | None
    roles: frozenset[str] = frozenset()

    @property
    def is_system(self) -> bool:
        return self.account_id is None


SYSTEM = Caller(None, frozenset({"system"}))


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    address: Address
    key: str
    now: dt.datetime
    caller: Caller
    #: How late a reminder fired (zero for ordinary messages and punctual reminders).
    late_by: dt.timedelta = dt.timedelta(0)

    @property
    def is_late(self) -> bool:
        return self.late_by > dt.timedelta(seconds=1)


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, appended to the actor's event log (past tense type)."""

    type: str
    body: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Deliver:
    """A message for a person: appended to the account's delivery stream, pushed after commit."""

    account_id: str
    type: str
    body: Mapping[str, Any]
    #: Stable id a client uses to recognise a repeat; derived by the shell when omitted.
    msg_id: str | None = None
    #: Medical or personal text (chat, intake): encrypted at rest by the store.
    sensitive: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Tell:
    """A message for another actor, kept in the outbox until that actor has handled it."""

    to: Address
    message: msgspec.Struct


@dataclasses.dataclass(frozen=True, slots=True)
class Remind:
    """A message to this actor at ``at``; survives restarts. A ``key`` replaces an earlier one."""

    at: dt.datetime
    message: msgspec.Struct
    key: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Publish:
    """A best-effort event to a topic's current subscribers (not stored).

    ``coalesce`` names updates that supersede each other (a queue position): a slow subscriber
    gets only the latest one with the same key.
    """

    topic: str
    type: str
    body: Mapping[str, Any]
    coalesce: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """A row of a query table (bookings, sessions...) kept in step with the actor's state.

    Written in the same transaction as the state: an update by ``key`` (column -> value), or an
    insert when no row has that key. Values are plain Python values (str, int, bool, datetime,
    date, None). The table must be one of the behaviour's ``projections``; one actor owns each row.
    """

    table: str
    key: Mapping[str, Any]
    values: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Decision(Generic[S]):
    state: S
    reply: Any = None
    events: tuple[Event, ...] = ()
    deliveries: tuple[Deliver, ...] = ()
    tells: tuple[Tell, ...] = ()
    reminders: tuple[Remind, ...] = ()
    cancel_reminders: tuple[str, ...] = ()
    publishes: tuple[Publish, ...] = ()
    records: tuple[Record, ...] = ()
    #: False for read-only answers: nothing to commit, state unchanged.
    changed: bool = True

    @classmethod
    def answer(cls, state: S, reply: Any) -> Decision[S]:
        """A read-only decision: reply without writing anything."""
        return cls(state=state, reply=reply, changed=False)

    @property
    def writes(self) -> bool:
        return bool(
            self.changed
            or self.events
            or self.deliveries
            or self.tells
            or self.reminders
            or self.cancel_reminders
            or self.records
        )


class Behaviour(Generic[S]):
    """Base of every actor kind. Subclasses set the class attributes and implement ``handle``.

    ``messages`` is the closed set of message types the kind accepts, by wire name; messages
    arriving as data (WebSocket calls, stored reminders) are converted and validated against
    it, so a handler only ever sees typed messages.
    """

    kind: ClassVar[str]
    state_type: ClassVar[type[Any]]
    messages: ClassVar[Mapping[str, type[msgspec.Struct]]]
    #: The query tables this kind keeps in step with its state (:class:`Record`): the hub knows no
    #: table of its own accord. :func:`carehub.hub.open_hub` has the store confirm every declared
    #: table exists (it refuses to start otherwise), and a decision with a record for a table its
    #: kind did not declare is refused (:class:`BadMessage`) and writes nothing.
    projections: ClassVar[frozenset[str]] = frozenset()
    #: Up to this many waiting messages are handled one after another and committed together
    #: (replies still only after the commit). For hot actors such as a slot pool under a
    #: release burst: one transaction answers many patients.
    batch_limit: ClassVar[int] = 1

    def initial(self, key: str) -> S:
        raise NotImplementedError

    def handle(self, state: S, message: msgspec.Struct, ctx: Context) -> Decision[S]:
        raise NotImplementedError

    def summary(self, state: S) -> str:
        """One line for the ops dashboard."""
        return ""

    def may_call(self, caller: Caller, key: str, message: msgspec.Struct) -> bool:
        """Whether an outside caller (WebSocket/HTTP) may send this message. Deny by default.

        Raise :class:`Refusal` instead of returning False to tell the caller why (and what to do).
        """
        return caller.is_system


class Effect:
    """An I/O step an actor asks for with a durable :class:`Tell` (a refund, an SMS, a HIS push).

    Actors stay pure: they decide *that* something must happen, and the tell to ``<kind>/<key>``
    is committed with their state. The hub then calls :meth:`perform` until it returns; a
    failure is retried with growing waits (the stored row is kept, so a restart only delays it).
    ``perform`` must therefore be idempotent, which the providers' own idempotency keys (an
    ``out_refund_no``, a FHIR identifier) make easy. The outcome, if an actor needs it, comes back
    as an ordinary message (a tell or ask from ``perform``).
    """

    kind: ClassVar[str]
    messages: ClassVar[Mapping[str, type[msgspec.Struct]]]
    #: after this many failures ops get an alarm; retries go on (hourly), nothing is dropped
    alarm_after: ClassVar[int] = 10

    async def perform(self, message: msgspec.Struct, ctx: Context) -> None:
        raise NotImplementedError

    def retry_after(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failure."""
        return float(min(2 ** min(attempts, 12), 3600))


def message_name(message: msgspec.Struct) -> str:
    return type(message).__name__

"""The storage the hub needs, as a port. :mod:`carehub.storage.hub_store` implements it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from .behaviour import Record


@dataclasses.dataclass(frozen=True, slots=True)
class StoredState:
    state: bytes | None  # JSON; None when the actor has never been saved
    version: int


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduledRow:
    """A stored message for an actor: a reminder (due later) or an outbox tell (due now)."""

    id: str
    target: str
    type: str
    body: bytes  # JSON
    due_at: dt.datetime
    key: str | None = None
    #: failed attempts so far (effects)
    attempts: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryRow:
    account_id: str
    msg_id: str
    type: str
    body: bytes  # JSON
    #: medical or personal text: the store keeps it encrypted at rest
    sensitive: bool = False
    #: what the store writes instead of ``body`` (set by the store when it seals)
    stored: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StreamItem:
    """One message in a person's delivery stream, with its place in it."""

    account_id: str
    seq: int
    msg_id: str
    type: str
    body: bytes  # JSON
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Commit:
    """Everything one handled message changes, written in one transaction."""

    address: str
    kind: str
    expected_version: int
    state: bytes | None  # None: state unchanged
    events: Sequence[tuple[str, bytes]] = ()
    deliveries: Sequence[DeliveryRow] = ()
    scheduled: Sequence[ScheduledRow] = ()
    cancel_keys: Sequence[str] = ()
    #: The scheduled row this message came from; deleted in the same transaction.
    consumed: str | None = None
    now: dt.datetime | None = None
    #: query-table rows written with the state
    records: Sequence[Record] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class CommitResult:
    version: int
    delivered: Sequence[StreamItem]


class HubStore(Protocol):
    async def confirm_projections(self, tables: frozenset[str]) -> None:
        """Check that every projection table the behaviours declared exists (raise HubError naming
        the missing ones otherwise); commits may write these tables, and only these, from then on."""
        ...

    async def load_state(self, address: str) -> StoredState: ...

    async def commit(self, commit: Commit) -> CommitResult:
        """Write atomically; raise VersionConflict or StorageUnavailable and write nothing."""
        ...

    async def due_scheduled(self, before: dt.datetime, limit: int) -> list[ScheduledRow]: ...

    async def next_due(self) -> dt.datetime | None: ...

    async def complete_scheduled(self, row_id: str) -> None:
        """Delete a stored message whose effect was performed."""
        ...

    async def postpone_scheduled(self, row_id: str, due_at: dt.datetime) -> None: ...

    async def read_stream(self, account_id: str, after_seq: int, limit: int) -> list[StreamItem]: ...

"""The actor runtime. Knows nothing of hospitals: addresses, behaviours, mailboxes, commits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import trio

from .behaviour import (
    SYSTEM,
    AccountId,
    Address,
    Behaviour,
    Caller,
    Context,
    Decision,
    Deliver,
    Effect,
    Event,
    Publish,
    Record,
    Remind,
    Tell,
    make_address,
    split_address,
)
from .errors import (
    ActorCrashed,
    ActorQuarantined,
    AlreadyHandled,
    AskTimeout,
    BadMessage,
    HubError,
    HubStopping,
    InvalidTransition,
    MailboxFull,
    Refusal,
    StorageUnavailable,
    UnknownActorKind,
    UnknownRecipient,
    VersionConflict,
)
from .lifecycle import Lifecycle
from .runtime import DeliverySink, Hub, HubSettings, utcnow
from .store import Commit, CommitResult, DeliveryRow, HubStore, ScheduledRow, StoredState, StreamItem
from .topics import Outbound, Priority, Subscriber, Topics


@asynccontextmanager
async def open_hub(
    store: HubStore,
    behaviours: Iterable[Behaviour[Any]],
    settings: HubSettings | None = None,
    effects: Iterable[Effect] = (),
) -> AsyncIterator[Hub]:
    """Run a hub for the duration of the ``async with`` block (refused if a declared projection table is missing)."""
    hub = Hub(store, behaviours, settings, effects=effects)
    # the hub writes no table it was not told of: each behaviour declares its projections, and a
    # store without one of them is a deployment error found now, not at the first booking
    await store.confirm_projections(frozenset().union(*(b.projections for b in hub.behaviours.values())))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        try:
            yield hub
        finally:
            nursery.cancel_scope.cancel()


__all__ = [
    "SYSTEM",
    "AccountId",
    "ActorCrashed",
    "ActorQuarantined",
    "Address",
    "AlreadyHandled",
    "AskTimeout",
    "BadMessage",
    "Behaviour",
    "Caller",
    "Commit",
    "CommitResult",
    "Context",
    "Decision",
    "Deliver",
    "DeliveryRow",
    "DeliverySink",
    "Effect",
    "Event",
    "Hub",
    "HubError",
    "HubSettings",
    "HubStopping",
    "HubStore",
    "InvalidTransition",
    "Lifecycle",
    "MailboxFull",
    "Outbound",
    "Priority",
    "Publish",
    "Record",
    "Refusal",
    "Remind",
    "ScheduledRow",
    "StorageUnavailable",
    "StoredState",
    "StreamItem",
    "Subscriber",
    "Tell",
    "Topics",
    "UnknownActorKind",
    "UnknownRecipient",
    "VersionConflict",
    "make_address",
    "open_hub",
    "split_address",
    "utcnow",
]

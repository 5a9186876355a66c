"""What the HTTP and WebSocket layers need, built once by :func:`carehub.app.open_app`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from carehub.channels.push import PushChannel, Session
from carehub.config import Config
from carehub.eventloop import Collector
from carehub.hub import Hub
from carehub.identity import Identity
from carehub.identity.care import CareAccess
from carehub.identity.partners import Partners
from carehub.identity.patients import Patients
from carehub.identity.signatures import Signatures
from carehub.outpatient import Outpatient
from carehub.storage.db import Database
from carehub.storage.hub_store import PostgresHubStore

if TYPE_CHECKING:
    from .gateway import Connection
    from .routing import Command

from .websocket import Flusher, ReadPacer, ReadPoller


@dataclasses.dataclass
class GatewayStats:
    connections_opened: int = 0
    bad_frames: int = 0
    kicked_slow: int = 0


@dataclasses.dataclass
class Services:
    config: Config
    db: Database
    store: PostgresHubStore
    hub: Hub
    push: PushChannel
    identity: Identity
    schema_version: int
    patients: Patients
    partners: Partners
    care: CareAccess
    signatures: Signatures
    outpatient: Outpatient
    connections: dict[Session, Connection] = dataclasses.field(default_factory=dict)
    #: routes that are also commands on ``/ws``, by name (filled by the router)
    commands: dict[str, Command] = dataclasses.field(default_factory=dict)
    stats: GatewayStats = dataclasses.field(default_factory=GatewayStats)
    draining: bool = False
    #: writes every WebSocket connection's queued frames (started by the app)
    flusher: Flusher = dataclasses.field(default_factory=Flusher)
    pacer: ReadPacer = dataclasses.field(default_factory=ReadPacer)
    #: reads for signed-in WebSocket connections (started by the app)
    poller: ReadPoller = dataclasses.field(default_factory=ReadPoller)
    #: Set by the app: push a fresh ops snapshot to the ``ops`` topic now.
    publish_ops_now: Callable[[], None] = lambda: None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: runs Python's garbage collector at quiet moments (started by ``serve``; None in tests' apps)
    collector: Collector | None = None

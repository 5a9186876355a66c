"""What the HTTP and WebSocket layers need, built once by :func:`carehub.app.open_app`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from carehub.channels.push import PushChannel
from carehub.config import Config
from carehub.directory import Directory
from carehub.hub import Hub
from carehub.identity import Identity
from carehub.identity.care import CareAccess
from carehub.identity.partners import Partners
from carehub.identity.patients import Patients
from carehub.identity.signatures import Signatures
from carehub.messaging import MessageCenter
from carehub.outpatient import Outpatient
from carehub.statistics import Statistics
from carehub.storage.db import Database
from carehub.storage.hub_store import PostgresHubStore

if TYPE_CHECKING:
    from .gateway import Gateway


@dataclasses.dataclass(frozen=True)
class Services:
    """The domain objects, stores and gateway the web layer is wired with, built once in ``app.py``.

    Nothing looks services up per request: ``http/api.py`` hands each REST module exactly the
    objects it uses (``register(r, *, outpatient=...)``), and the ``/ws`` gateway holds its own.
    Frozen: nothing is added or replaced after start-up.
    """

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
    directory: Directory
    #: the ``/ws`` gateway's parts, connections, commands and ops figures (``carehub.http.gateway.Gateway``)
    gateway: Gateway
    #: the admin console's statistics (SCH-8, STAT-1, STAT-4)
    statistics: Statistics
    #: the message center (MSG-1..8): notifier, inbox, templates, channels, publishing
    messaging: MessageCenter

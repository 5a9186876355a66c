"""The message center as the rest of CareHub sees it: one object, built in ``app.py``."""

from __future__ import annotations

import dataclasses

from carehub.storage.messaging import NoticeStore, PublishStore

from .alerts import ClinicalAlerts
from .notifier import Notifier
from .sending import Addresses, Channels


@dataclasses.dataclass(frozen=True)
class MessageCenter:
    notifier: Notifier
    channels: Channels
    addresses: Addresses
    notices: NoticeStore
    publishing: PublishStore
    #: clinical alerts and other acknowledged work items (MSG-7, DOC-19)
    alerts: ClinicalAlerts

"""The message center as the rest of CareHub sees it: one object, built in ``app.py``."""

from __future__ import annotations

import dataclasses

from carehub.storage.messaging import NoticeStore, PublishStore

from .notifier import Notifier
from .sending import Addresses, Channels


@dataclasses.dataclass(frozen=True)
class MessageCenter:
    notifier: Notifier
    channels: Channels
    addresses: Addresses
    notices: NoticeStore
    publishing: PublishStore

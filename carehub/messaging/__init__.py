"""The message center (MSG-1..8, OUT-15, DOC-19): one notifier for every notice. See docs/messaging.md.

- :mod:`.kinds`: every kind of notice, its variables, category and rules;
- :mod:`.templates`: ``{variable}`` templates, checked when saved;
- :mod:`.notifier`: :class:`Notifier` (render, post, inbox, templates, dead letters) and the
  ``notify/<id>`` effect actors use; the per-recipient actor is :mod:`carehub.actors.notifier`;
- :mod:`.sending`: the ``send/<id>`` effect, channel breakers, addresses.
"""

from __future__ import annotations

from .alerts import AlertAlarmEffect, ClinicalAlerts
from .center import MessageCenter
from .kinds import CATEGORIES, KINDS, NoticeKind
from .notifier import MessagingSettings, Notifier, NotifyEffect, new_notice_id
from .sending import Addresses, Channels, SendEffect

__all__ = ["CATEGORIES", "KINDS", "Addresses", "AlertAlarmEffect", "Channels", "ClinicalAlerts", "MessageCenter",
           "MessagingSettings", "NoticeKind", "Notifier", "NotifyEffect", "SendEffect", "new_notice_id"]

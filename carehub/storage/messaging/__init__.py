"""The message center's repositories.

=================  =========================================================================
module             tables
=================  =========================================================================
``notices``        ``notices`` (read, and read marks / provider reports: the notifier actors'
                   projection), ``notice_templates``, ``notice_channels``, ``channel_bindings``,
                   ``notice_attempts``
``publishing``     ``partner_publish_rules``, ``open_messages``
``alerts``         ``department_contacts``, ``alert_rules``, ``clinical_alerts`` and ``alert_steps``
                   (the alert actors' projections)
=================  =========================================================================
"""

from __future__ import annotations

from .alerts import AlertStore
from .notices import NoticeStore
from .publishing import PublishStore

__all__ = ["AlertStore", "NoticeStore", "PublishStore"]

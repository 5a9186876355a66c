"""What several REST modules still share: closing revoked sessions, ops figures."""

from __future__ import annotations

import logging
from typing import Any

from ..context import Services
from ..ws import CLOSE_REVOKED

log = logging.getLogger("carehub.http")


def close_sessions(services: Services, token_hashes: set[str], reason: str) -> None:
    """Close every WebSocket opened with one of these (now revoked) tokens, with 4003."""
    for conn in list(services.connections.values()):
        if conn.principal is not None and conn.principal.token_hash in token_hashes:
            conn.kick(CLOSE_REVOKED, reason)


def ops_figures(services: Services) -> dict[str, Any]:
    snap = services.hub.snapshot()
    snap["connections"] = len(services.push.sessions)
    snap["accounts_online"] = len(services.push.by_account)
    snap["topics"] = services.hub.topics.topic_count()
    snap["reminders_due"] = services.extra.get("reminders_due", 0)
    snap["ws_bad_frames"] = services.stats.bad_frames
    snap["ws_kicked_slow"] = services.stats.kicked_slow
    snap["ws_sockets_full"] = services.flusher.full
    snap["pushed_total"] = services.push.pushed
    return snap



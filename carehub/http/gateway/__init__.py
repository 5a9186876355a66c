"""The ``/ws`` protocol gateway: CareHub's wire protocol (docs/protocol.md) on its own WebSocket server side.

How it is built, and why each piece exists: docs/gateway.md.
"""

from .connection import (
    CLOSE_AUTH,
    CLOSE_IDLE,
    CLOSE_RESTART,
    CLOSE_REVOKED,
    CLOSE_SLOW,
    Connection,
    bye_frame,
    echo_gateway,
    websocket_gateway,
)
from .state import Gateway, GatewayStats, OpsBoard
from .streams import StreamOpener

__all__ = [
    "CLOSE_AUTH",
    "CLOSE_IDLE",
    "CLOSE_RESTART",
    "CLOSE_REVOKED",
    "CLOSE_SLOW",
    "Connection",
    "Gateway",
    "GatewayStats",
    "OpsBoard",
    "StreamOpener",
    "bye_frame",
    "echo_gateway",
    "websocket_gateway",
]

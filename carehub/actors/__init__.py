"""Domain actors, one module per kind. :func:`all_behaviours` is what the app runs."""

from __future__ import annotations

import importlib
from typing import Any

from carehub.hub import Behaviour

from .alert import Alert
from .conversation import Conversation
from .notifier import Notifier
from .slot_pool import SlotPool
from .waiting_queue import WaitingQueue


def all_behaviours(plugins: str = "") -> list[Behaviour[Any]]:
    """The built-in kinds plus any ``module:Class`` plugins (comma-separated)."""
    behaviours: list[Behaviour[Any]] = [Alert(), Conversation(), Notifier(), SlotPool(), WaitingQueue()]
    for spec in filter(None, (part.strip() for part in plugins.split(","))):
        module_name, _, class_name = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"actor plugin {spec!r} cannot be loaded: {err}") from err
        behaviours.append(cls())
    return behaviours


__all__ = ["Alert", "Conversation", "Notifier", "SlotPool", "WaitingQueue", "all_behaviours"]

"""Domain actors, one module per kind. :func:`all_behaviours` is what the app runs."""

from __future__ import annotations

from typing import Any

from carehub.hub import Behaviour

from .conversation import Conversation


def all_behaviours() -> list[Behaviour[Any]]:
    return [Conversation()]


__all__ = ["Conversation", "all_behaviours"]

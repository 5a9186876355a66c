"""Asking actors and publishing to topics over HTTP."""

from __future__ import annotations

from typing import Any

import msgspec

from carehub.hub import BadMessage, Caller, Hub, HubError, UnknownActorKind
from carehub.identity import (
    may_publish,
)

from ..errors import ApiError, from_hub
from ..routing import RequestContext, RouteDecorator


class Call(msgspec.Struct, forbid_unknown_fields=True):
    to: str
    type: str
    body: dict[str, Any] = msgspec.field(default_factory=dict)


class PublishBody(msgspec.Struct, forbid_unknown_fields=True):
    topic: str
    type: str
    body: dict[str, Any] = msgspec.field(default_factory=dict)


def register(r: RouteDecorator, *, hub: Hub) -> None:
    @r("POST", "/api/v1/call", summary="Ask an actor; the reply comes after its commit",
       permission="actor.call", body=Call, tag="hub")
    async def call(ctx: RequestContext, body: Call) -> Any:
        assert ctx.principal is not None
        try:
            address, message = hub.parse(body.to, body.type, body.body)
        except (BadMessage, UnknownActorKind) as err:
            raise from_hub(err) from None
        caller = Caller(ctx.principal.account_id, ctx.principal.caller_roles)
        try:
            allowed = hub.authorize(address, message, caller)
        except HubError as err:
            raise ApiError(403, err.code, err.message) from None
        if not allowed:
            raise ApiError(403, "forbidden", f"you may not send {body.type} to {body.to}")
        try:
            return {"result": await hub.ask(address, message, caller=caller)}
        except HubError as err:
            raise from_hub(err) from None

    @r("POST", "/api/v1/topics/publish", summary="Publish an event to a broadcast topic",
       permission="topic.publish", body=PublishBody, tag="hub")
    async def publish(ctx: RequestContext, body: PublishBody) -> Any:
        assert ctx.principal is not None
        if not may_publish(ctx.principal.permissions, body.topic):
            raise ApiError(403, "forbidden", f"you may not publish to {body.topic!r}; use broadcast/<name>")
        return {"subscribers": hub.topics.publish(body.topic, body.type, body.body)}

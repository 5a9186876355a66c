"""Third-party systems: HMAC-SM3 signed requests (docs/security.md)."""

from __future__ import annotations

from typing import Any

from carehub.directory import Directory
from carehub.hub import Hub

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator
from .hub import PublishBody


def register(r: RouteDecorator, *, hub: Hub, directory: Directory) -> None:
    @r("POST", "/api/v1/open/topics/publish", summary="Partner: publish to a broadcast topic (signed)",
       permission=None, body=PublishBody, tag="open", partner_op="topics.publish")
    async def open_publish(ctx: RequestContext, body: PublishBody) -> Any:
        if not body.topic.startswith("broadcast/") or len(body.topic) > 200:
            raise ApiError(403, "forbidden", "partners publish to broadcast/<name> topics")
        return {"subscribers": hub.topics.publish(body.topic, body.type, body.body)}

    @r("GET", "/api/v1/open/departments", summary="Partner: the hospital's departments (signed)",
       permission=None, tag="open", partner_op="directory.read")
    async def open_departments(ctx: RequestContext) -> Any:
        return {"departments": await directory.departments.places()}

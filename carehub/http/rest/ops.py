"""Operations: the live dashboard and its API."""

from __future__ import annotations

import importlib.resources
from typing import Any

from quart import Response, request

from carehub.hub import Hub

from ..errors import ApiError
from ..gateway import OpsBoard
from ..routing import RequestContext, RouteDecorator
from .args import int_arg


def register(r: RouteDecorator, *, hub: Hub, ops: OpsBoard) -> None:
    @r("GET", "/api/v1/ops/snapshot", summary="Hub figures for the ops dashboard", permission="ops.view", tag="ops")
    async def ops_snapshot(ctx: RequestContext) -> Any:
        return ops.figures()

    @r("GET", "/api/v1/ops/actors", summary="Search live actors", permission="ops.view", tag="ops",
       query=("search", "limit"))
    async def ops_actors(ctx: RequestContext) -> Any:
        search = request.args.get("search", "")[:200]
        return {"actors": hub.live_actors(search, int_arg("limit", 50, 1, 500))}

    @r("POST", "/api/v1/ops/actors/<path:address>/release", summary="Lift an actor's quarantine",
       permission="ops.manage", tag="ops")
    async def ops_release(ctx: RequestContext, address: str) -> Any:
        if not hub.release(address):
            raise ApiError(404, "not_quarantined", f"{address} is not quarantined")
        return {"released": address}

    @r("GET", "/ops", summary="Live ops dashboard (HTML; data over the WebSocket, ops role)",
       permission=None, tag="ops", content_type="text/html")
    async def ops_page(ctx: RequestContext) -> Any:
        html = importlib.resources.files("carehub.http").joinpath("templates/ops.html").read_text("utf-8")
        return Response(html, content_type="text/html; charset=utf-8")

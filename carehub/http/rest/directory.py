"""The hospital's public directory."""

from __future__ import annotations

from typing import Any

from quart import request

from ..routing import RequestContext, RouteDecorator


def register(r: RouteDecorator) -> None:
    @r("GET", "/api/v1/departments", summary="Departments of the hospital", permission=None, tag="directory")
    async def departments(ctx: RequestContext) -> Any:
        rows = await ctx.services.db.fetch("SELECT id, name, campus, location FROM departments ORDER BY id")
        return {"departments": [dict(row) for row in rows]}

    @r("GET", "/api/v1/doctors", summary="Doctors, optionally by department", permission=None, tag="directory",
       query=("department",))
    async def doctors(ctx: RequestContext) -> Any:
        department = request.args.get("department")
        rows = await ctx.services.db.fetch(
            "SELECT a.id, a.display_name AS name, d.department_id, d.title, d.specialty"
            " FROM doctors d JOIN accounts a ON a.id = d.account_id"
            " WHERE NOT a.disabled AND ($1::varchar IS NULL OR d.department_id = $1) ORDER BY a.id",
            department,
        )
        return {"doctors": [dict(row) for row in rows]}

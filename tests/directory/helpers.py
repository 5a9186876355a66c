"""What the directory tests share: an admin's client, the audit entries of an action."""

from __future__ import annotations

from typing import Any

import httpx

from ..servers import Server


async def as_admin(server: Server) -> httpx.AsyncClient:
    """An HTTP client signed in as the demo admin (password + TOTP)."""
    return server.http(await server.token("admin"))


async def audit_actions(server: Server, target_prefix: str) -> list[dict[str, Any]]:
    """The audit entries whose target starts with ``target_prefix``, oldest first."""
    async with await as_admin(server) as http:
        response = await http.get("/api/v1/admin/audit", params={"target": target_prefix})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["entries"]))


def error_message(response: httpx.Response) -> str:
    return str(response.json()["error"]["message"])

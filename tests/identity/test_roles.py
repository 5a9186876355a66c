"""Admins manage roles, their permissions and menus; changes reach live sessions (SCH-1, SCH-11, ADM-1)."""

from __future__ import annotations

from ..servers import Server


async def test_taking_a_permission_from_a_role_denies_its_members_at_once(server: Server) -> None:
    admin, ops = await server.token("admin"), await server.token("ops")
    async with server.http(ops) as http:
        assert (await http.get("/api/v1/ops/snapshot")).status_code == 200
    async with server.http(admin) as http:
        changed = await http.put(
            "/api/v1/admin/roles/ops", json={"permissions": ["account.self", "ops.manage"], "menus": ["alarms"]}
        )
    assert changed.status_code == 200
    async with server.http(ops) as http:
        assert (await http.get("/api/v1/ops/snapshot")).status_code == 403
        assert (await http.get("/api/v1/me/menus")).json() == {"menus": ["alarms"]}


async def test_a_new_role_can_be_created_and_given_to_an_account(server: Server) -> None:
    admin = await server.token("admin")
    pharmacist = await server.account_id("pharmacist1")
    async with server.http(admin) as http:
        made = await http.put(
            "/api/v1/admin/roles/auditor", json={"permissions": ["account.self", "admin.audit"], "menus": ["audit"]}
        )
        granted = await http.put(
            f"/api/v1/admin/accounts/{pharmacist}/roles", json={"roles": ["pharmacist", "auditor"]}
        )
        trail = (await http.get("/api/v1/admin/audit", params={"action": "role.grant"})).json()["entries"]
    assert made.status_code == 200 and granted.status_code == 200
    assert trail and trail[0]["target"] == f"account/{pharmacist}"
    async with server.http(await server.token("pharmacist1")) as http:
        assert (await http.get("/api/v1/admin/audit")).status_code == 200


async def test_the_admin_role_cannot_lose_the_power_to_manage_roles(server: Server) -> None:
    async with server.http(await server.token("admin")) as http:
        refused = await http.put("/api/v1/admin/roles/admin", json={"permissions": ["account.self"]})
        unknown = await http.put("/api/v1/admin/roles/x", json={"permissions": ["launch.rockets"]})
    assert refused.status_code == 409
    assert unknown.status_code == 422 and "launch.rockets" in unknown.json()["error"]["message"]


async def test_each_role_sees_its_own_menus(server: Server) -> None:
    async with server.http(await server.token("patient1")) as http:
        menus = (await http.get("/api/v1/me/menus")).json()["menus"]
    assert "family" in menus and "audit" not in menus

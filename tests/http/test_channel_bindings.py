"""Admins bind an account's WeChat openid / Alipay user id (the notices' outside addresses, MSG-1)."""

from __future__ import annotations

from ..servers import Server


async def test_an_admin_binds_one_account_and_reads_the_binding_back(server: Server) -> None:
    patient = await server.account_id("patient1")
    async with server.http(await server.token("admin")) as http:
        path = f"/api/v1/admin/accounts/{patient}/channel-bindings"
        assert (await http.get(path)).json() == {"account_id": patient, "wechat": None, "alipay": None}
        answer = await http.put(path, json={"wechat": "o-bench-1"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"account_id": patient, "wechat": "o-bench-1", "alipay": None}
        # a new openid replaces the old one; the Alipay id is added beside it
        answer = await http.put(path, json={"wechat": "o-bench-2", "alipay": "2088000000000001"})
        assert answer.json() == {"account_id": patient, "wechat": "o-bench-2", "alipay": "2088000000000001"}


async def test_bad_bindings_are_refused_with_a_reason(server: Server) -> None:
    patient = await server.account_id("patient2")
    async with server.http(await server.token("admin")) as http:
        unknown = await http.put("/api/v1/admin/accounts/nobody/channel-bindings", json={"wechat": "o1"})
        assert unknown.status_code == 404
        empty = await http.put(f"/api/v1/admin/accounts/{patient}/channel-bindings", json={})
        assert empty.status_code == 422
        bad = await http.put(f"/api/v1/admin/accounts/{patient}/channel-bindings", json={"wechat": "o 1; drop"})
        assert bad.status_code == 422 and "wechat" in bad.json()["error"]["message"]
        too_many = await http.post("/api/v1/admin/channel-bindings",
                                   json={"items": [{"account_id": patient, "wechat": "o1"}] * 1001})
        assert too_many.status_code == 422


async def test_the_bulk_form_binds_many_and_keeps_existing_bindings(server: Server) -> None:
    ids = [await server.account_id(f"patient{i}") for i in (3, 4)]
    async with server.http(await server.token("admin")) as http:
        await http.put(f"/api/v1/admin/accounts/{ids[0]}/channel-bindings", json={"wechat": "o-kept"})
        answer = await http.post("/api/v1/admin/channel-bindings", json={"items": [
            {"account_id": ids[0], "wechat": "o-new", "alipay": "2088000000000003"},
            {"account_id": ids[1], "wechat": "o-four"},
        ]})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"asked": 3}
        first = (await http.get(f"/api/v1/admin/accounts/{ids[0]}/channel-bindings")).json()
        assert first == {"account_id": ids[0], "wechat": "o-kept", "alipay": "2088000000000003"}
        second = (await http.get(f"/api/v1/admin/accounts/{ids[1]}/channel-bindings")).json()
        assert second["wechat"] == "o-four"
        unknown = await http.post("/api/v1/admin/channel-bindings",
                                  json={"items": [{"account_id": "x", "wechat": "o"}]})
        assert unknown.status_code == 404

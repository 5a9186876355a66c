"""The price list with its change history (ADM-6)."""

from __future__ import annotations

from ..servers import Server
from .helpers import as_admin, audit_actions, error_message


async def test_anyone_can_search_the_price_list_by_name(server: Server) -> None:
    """ADM-6: prices in fen with their unit."""
    async with server.http() as http:
        found = (await http.get("/api/v1/prices", params={"q": "血常规"})).json()["prices"]
        everything = (await http.get("/api/v1/prices")).json()["prices"]
    assert [(p["code"], p["unit"], p["price_fen"]) for p in found] == [("JY001", "项", 2000)]
    assert len(everything) == 20


async def test_every_price_change_is_kept_with_who_when_and_the_old_and_new_values(server: Server) -> None:
    """ADM-6."""
    admin = await server.account_id("admin")
    async with await as_admin(server) as http:
        for price in (2200, 2400):
            body = {"name": "血常规", "category": "检验", "unit": "项", "price_fen": price}
            assert (await http.put("/api/v1/admin/prices/JY001", json=body)).json()["changed"] is True
        history = (await http.get("/api/v1/admin/prices/history", params={"code": "JY001"})).json()["changes"]
    assert [(c["old_price_fen"], c["new_price_fen"]) for c in history] == [(2200, 2400), (2000, 2200), (None, 2000)]
    assert history[0]["changed_by"] == admin and history[0]["changed_at"]
    assert len(await audit_actions(server, "price/JY001")) == 2


async def test_an_item_taken_off_the_list_is_no_longer_shown_but_its_history_stays(server: Server) -> None:
    """ADM-6."""
    body = {"name": "雾化吸入", "category": "治疗", "unit": "次", "price_fen": 1600, "active": False}
    async with await as_admin(server) as http:
        await http.put("/api/v1/admin/prices/ZL004", json=body)
        history = (await http.get("/api/v1/admin/prices/history", params={"code": "ZL004"})).json()["changes"]
    async with server.http() as http:
        codes = [p["code"] for p in (await http.get("/api/v1/prices")).json()["prices"]]
    assert "ZL004" not in codes
    assert (history[0]["old_active"], history[0]["new_active"]) == (True, False)


async def test_a_negative_price_is_refused_in_chinese(server: Server) -> None:
    """ADM-6."""
    async with await as_admin(server) as http:
        response = await http.put(
            "/api/v1/admin/prices/JY001", json={"name": "血常规", "unit": "项", "price_fen": -1}
        )
    assert response.status_code == 422 and "价格" in error_message(response)

"""Hospital news (PUB-3) and visit guide pages (PUB-5, GUIDE-1), written by admins, read by anyone."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..servers import Server
from .helpers import as_admin


def at(**delta: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(**delta)).isoformat()


async def test_news_shows_newest_first_and_leaves_out_scheduled_and_hidden_articles(server: Server) -> None:
    """PUB-3."""
    async with await as_admin(server) as http:
        articles: list[tuple[str, dict[str, Any]]] = [
            ("今日义诊", {}), ("下周讲座", {"published_at": at(days=7)}), ("撤下的稿件", {"hidden": True}),
        ]
        for title, extra in articles:
            response = await http.post("/api/v1/admin/news", json={"title": title, "body": "正文", **extra})
            assert response.status_code == 201, response.text
        everything = (await http.get("/api/v1/admin/news")).json()["news"]
    async with server.http() as http:
        public = (await http.get("/api/v1/news")).json()["news"]
    assert [n["title"] for n in public] == ["今日义诊", "东院区骨科病房启用"]
    assert {"下周讲座", "撤下的稿件"} <= {n["title"] for n in everything}


async def test_a_news_article_is_read_in_full_by_its_id(server: Server) -> None:
    """PUB-3."""
    async with await as_admin(server) as http:
        news_id = (await http.post("/api/v1/admin/news", json={"title": "新院区开诊", "body": "全文"})).json()["id"]
    async with server.http() as http:
        article = (await http.get(f"/api/v1/news/{news_id}")).json()
    assert (article["title"], article["body"]) == ("新院区开诊", "全文")


async def test_a_news_time_without_a_timezone_is_refused(server: Server) -> None:
    """PUB-3: an ambiguous publication time is not guessed."""
    async with await as_admin(server) as http:
        response = await http.post(
            "/api/v1/admin/news", json={"title": "t", "body": "b", "published_at": "2030-01-01T08:00:00"}
        )
    assert response.status_code == 422 and "时区" in response.json()["error"]["message"]


async def test_a_guide_page_written_by_an_admin_is_read_by_anyone(server: Server) -> None:
    """PUB-5, GUIDE-1."""
    page = {"title": "停车指南", "body": "地下停车场入口在东门。", "sort_order": 9}
    async with await as_admin(server) as http:
        assert (await http.put("/api/v1/admin/guide/parking", json=page)).status_code == 200
    async with server.http() as http:
        titles = [p["title"] for p in (await http.get("/api/v1/guide")).json()["pages"]]
        shown = (await http.get("/api/v1/guide/parking")).json()
    assert titles == ["挂号须知", "就诊流程", "医保报销", "停车指南"]
    assert shown["body"] == "地下停车场入口在东门。"


async def test_a_hidden_guide_page_is_not_found_by_the_public(server: Server) -> None:
    """GUIDE-1."""
    async with await as_admin(server) as http:
        await http.put("/api/v1/admin/guide/insurance", json={"title": "医保报销", "body": "修订中", "hidden": True})
    async with server.http() as http:
        response = await http.get("/api/v1/guide/insurance")
    assert response.status_code == 404 and "不存在" in response.json()["error"]["message"]

"""Announcements with a start and an end time and read counts (ADM-5)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..servers import Server
from .helpers import as_admin, error_message


def at(**delta: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(**delta)).isoformat()


async def announce(server: Server, title: str, starts_at: str, ends_at: str) -> str:
    async with await as_admin(server) as http:
        response = await http.post(
            "/api/v1/admin/announcements", json={"title": title, "body": "内容", "starts_at": starts_at,
                                                 "ends_at": ends_at},
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def read_count(server: Server, announcement_id: str) -> int:
    async with await as_admin(server) as http:
        items: list[dict[str, Any]] = (await http.get("/api/v1/admin/announcements")).json()["announcements"]
    return int(next(a for a in items if a["id"] == announcement_id)["read_count"])


async def test_only_announcements_between_their_start_and_end_are_shown(server: Server) -> None:
    """ADM-5."""
    await announce(server, "停电通知", at(hours=-1), at(hours=1))
    await announce(server, "下月体检", at(days=3), at(days=5))
    await announce(server, "上周停诊", at(days=-7), at(minutes=-1))
    async with server.http() as http:
        titles = [a["title"] for a in (await http.get("/api/v1/announcements")).json()["announcements"]]
    assert titles == ["停电通知", "门诊时间调整"]


async def test_marking_an_announcement_read_counts_each_account_once(server: Server) -> None:
    """ADM-5."""
    notice = await announce(server, "停电通知", at(hours=-1), at(hours=1))
    for login_name in ("patient1", "patient1", "patient2"):
        async with server.http(await server.token(login_name)) as http:
            assert (await http.post(f"/api/v1/announcements/{notice}/read")).status_code == 200
    assert await read_count(server, notice) == 2


async def test_a_signed_in_reader_sees_which_announcements_they_have_read(server: Server) -> None:
    """ADM-5."""
    async with server.http(await server.token("patient1")) as http:
        await http.post("/api/v1/announcements/demo-notice-1/read")
        shown = (await http.get("/api/v1/announcements")).json()["announcements"]
    assert [(a["id"], a["read"]) for a in shown] == [("demo-notice-1", True)]


async def test_a_withdrawn_announcement_disappears_and_cannot_be_marked_read(server: Server) -> None:
    """ADM-5."""
    async with await as_admin(server) as http:
        await http.patch("/api/v1/admin/announcements/demo-notice-1", json={"withdrawn": True})
    async with server.http(await server.token("patient1")) as http:
        shown = (await http.get("/api/v1/announcements")).json()["announcements"]
        marked = await http.post("/api/v1/announcements/demo-notice-1/read")
    assert shown == [] and marked.status_code == 404


async def test_an_announcement_that_ends_before_it_starts_is_refused(server: Server) -> None:
    """ADM-5."""
    async with await as_admin(server) as http:
        response = await http.post(
            "/api/v1/admin/announcements", json={"title": "t", "body": "b", "starts_at": at(hours=2),
                                                 "ends_at": at(hours=1)},
        )
    assert response.status_code == 422 and "结束时间" in error_message(response)

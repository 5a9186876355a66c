"""What holds for every admin edit of the directory: it is audited (ADM-2..6, ADM-7), and bad input
gets a 4xx with a Chinese message, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from ..servers import Server
from .helpers import as_admin, error_message

EDITS: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/api/v1/admin/departments", {"id": "eye", "name": "眼科"}, "department.create"),
    ("PATCH", "/api/v1/admin/departments/peds", {"room": "201室"}, "department.change"),
    ("PUT", "/api/v1/admin/campuses/west", {"name": "西院区", "address": "西路1号"}, "campus.change"),
    ("PUT", "/api/v1/admin/settings", {"map_url": "https://map.example.cn/x"}, "settings.change"),
    ("POST", "/api/v1/admin/news", {"title": "义诊", "body": "周六义诊"}, "news.create"),
    ("PATCH", "/api/v1/admin/news/demo-news-1", {"hidden": True}, "news.change"),
    ("PUT", "/api/v1/admin/guide/visit", {"title": "就诊流程", "body": "新流程"}, "guide.change"),
    ("PATCH", "/api/v1/admin/announcements/demo-notice-1", {"title": "门诊时间"}, "announcement.change"),
    ("PUT", "/api/v1/admin/prices/GH001", {"name": "普通门诊诊查费", "unit": "次", "price_fen": 1200}, "price.change"),
    ("DELETE", "/api/v1/admin/triage/rules/neck", {}, "triage.rule_delete"),
]


async def test_every_kind_of_directory_edit_leaves_an_audit_entry_naming_the_admin(server: Server) -> None:
    """ADM-2..6 with ADM-7."""
    admin = await server.account_id("admin")
    async with await as_admin(server) as http:
        for method, path, body, _ in EDITS:
            response = await http.request(method, path, json=body)
            assert response.status_code in (200, 201), (path, response.text)
        entries = (await http.get("/api/v1/admin/audit", params={"actor": admin})).json()["entries"]
    recorded = [e["action"] for e in reversed(entries) if e["action"] != "auth.login"]
    assert recorded == [action for *_, action in EDITS]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("POST", "/api/v1/admin/departments", {"id": "x y", "name": "科室"}, 422, "科室编号"),
        ("POST", "/api/v1/admin/departments", {"id": "eye", "name": "眼\u0000科"}, 422, "不允许的字符"),
        ("POST", "/api/v1/admin/departments", {"id": "eye", "name": "眼科", "floor_id": "nowhere"}, 422, "楼层"),
        ("PATCH", "/api/v1/admin/departments/peds", {"floor_id": "nowhere"}, 422, "楼层"),
        ("PATCH", "/api/v1/admin/departments/ghost", {"name": "幽灵科"}, 404, "不存在"),
        ("POST", "/api/v1/admin/doctors", {"login": "d\u0000", "name": "甲", "department_id": "peds", "title": "医师",
                                           "specialty": "儿科"}, 422, "账号"),
        ("PUT", "/api/v1/admin/guide/visit", {"title": "长" * 201, "body": "b"}, 422, "不能超过 200"),
        ("PUT", "/api/v1/admin/prices/GH001", {"name": "n", "unit": "次", "price_fen": 10**12}, 422, "价格"),
        ("PUT", "/api/v1/admin/campuses/main", {"name": "本部", "address": "a", "floors": [
            {"id": "f1", "building": "A", "name": "1层", "level": 1},
            {"id": "f2", "building": "A", "name": "1层", "level": 1}]}, 422, "重复"),
    ],
)
async def test_bad_directory_input_gets_a_4xx_with_a_chinese_message(
    server: Server, method: str, path: str, body: dict[str, Any], status: int, says: str
) -> None:
    """ADM-2, ADM-4, ADM-6, PUB-5."""
    async with await as_admin(server) as http:
        response = await http.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert says in error_message(response)

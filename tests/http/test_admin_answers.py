"""The admin console's list routes answer exactly the shape their OpenAPI schema (``response=``) declares."""

from __future__ import annotations

import msgspec

from ..servers import Server

ADMIN_LISTS = (
    "/api/v1/admin/directory", "/api/v1/admin/announcements", "/api/v1/admin/prices/history", "/api/v1/admin/prices",
    "/api/v1/admin/triage/rules", "/api/v1/admin/news", "/api/v1/admin/guide", "/api/v1/admin/partners",
    "/api/v1/admin/audit", "/api/v1/admin/audit/verify", "/api/v1/admin/roles", "/api/v1/admin/accounts",
)


async def test_the_admin_lists_answer_their_declared_shape(server: Server) -> None:
    specs = {s.path: s for s in server.app.router.specs if s.method == "GET"}
    async with server.http(await server.token("admin")) as http:
        # something in each list: a price change and a partner key
        assert (await http.put("/api/v1/admin/prices/T-ANSWER", json={
            "name": "测试项目", "unit": "次", "price_fen": 100})).status_code == 200
        partner = await server.account_id("partner1")
        assert (await http.post(f"/api/v1/admin/partners/{partner}/keys",
                                json={"operations": ["directory.read"]})).status_code == 201
        for path in ADMIN_LISTS:
            spec = specs[path]
            assert spec.response is not None, path
            answer = await http.get(path)
            assert answer.status_code == 200, (path, answer.text)
            msgspec.json.decode(answer.content, type=spec.response)  # raises if the shape differs


async def test_an_admin_reads_a_hidden_news_article_and_guide_page_with_their_bodies(server: Server) -> None:
    """PUB-3, PUB-5: the console edits what patients cannot see yet."""
    async with server.http(await server.token("admin")) as http:
        created = await http.post("/api/v1/admin/news", json={"title": "内部预告", "body": "正文 A", "hidden": True})
        news_id = created.json()["id"]
        guide = await http.put(
            "/api/v1/admin/guide/hidden-page", json={"title": "草稿", "body": "正文 B", "hidden": True}
        )
        assert guide.status_code == 200
        article = await http.get(f"/api/v1/admin/news/{news_id}")
        page = await http.get("/api/v1/admin/guide/hidden-page")
        missing = await http.get("/api/v1/admin/news/nothing")
    async with server.http() as http:
        public_article = await http.get(f"/api/v1/news/{news_id}")
        public_page = await http.get("/api/v1/guide/hidden-page")
    assert article.status_code == 200 and article.json()["body"] == "正文 A" and article.json()["hidden"] is True
    assert page.status_code == 200 and page.json()["body"] == "正文 B" and page.json()["hidden"] is True
    assert missing.status_code == 404
    assert public_article.status_code == 404 and public_page.status_code == 404


async def test_accounts_are_listed_by_role_and_text_with_patients_names_masked(server: Server) -> None:
    """ADM-1: the console's account list; a patient's full name never leaves the key ring here."""
    async with server.http(await server.token("admin")) as http:
        doctors = (await http.get("/api/v1/admin/accounts", params={"role": "doctor"})).json()
        patients = (await http.get("/api/v1/admin/accounts", params={"role": "patient"})).json()
        found = (await http.get("/api/v1/admin/accounts", params={"q": "pharm"})).json()
        wild = (await http.get("/api/v1/admin/accounts", params={"q": "%"})).json()
        unknown = await http.get("/api/v1/admin/accounts", params={"role": "wizard"})
    assert [a["login"] for a in doctors["accounts"]] == [f"doctor{i}" for i in range(1, 7)]
    assert all(a["roles"] == ["doctor"] and a["disabled"] is False for a in doctors["accounts"])
    names = {a["login"]: a["name"] for a in patients["accounts"]}
    assert names["patient1"] != "张三" and names["patient1"].startswith("张")
    assert [a["login"] for a in found["accounts"]] == ["pharmacist1"]
    assert wild["accounts"] == []  # LIKE wildcards are searched as text
    assert unknown.status_code == 400 and "没有角色" in unknown.json()["error"]["message"]
    assert "admin" in doctors["roles"] and "partner" in doctors["roles"]


async def test_an_item_taken_off_the_price_list_stays_in_the_admin_list(server: Server) -> None:
    """ADM-6: so an admin can put it back."""
    async with server.http(await server.token("admin")) as http:
        item = {"name": "停用项目", "unit": "次", "price_fen": 500, "active": False}
        assert (await http.put("/api/v1/admin/prices/T-OFF", json=item)).status_code == 200
        admin = (await http.get("/api/v1/admin/prices", params={"q": "T-OFF"})).json()["prices"]
    async with server.http() as http:
        public = (await http.get("/api/v1/prices", params={"q": "T-OFF"})).json()["prices"]
    assert [(p["code"], p["active"]) for p in admin] == [("T-OFF", False)]
    assert public == []


async def test_the_admin_writes_answer_their_declared_shape(server: Server) -> None:
    """The writes the console's forms make: each answer decodes as its ``response=`` schema."""
    specs = {(s.method, s.path): s for s in server.app.router.specs}
    async with server.http(await server.token("admin")) as http:
        hospital = (await http.get("/api/v1/hospital")).json()
        main = (await http.get("/api/v1/campuses")).json()["campuses"][0]
        doctor = await server.account_id("doctor6")
        writes = [
            ("PUT", "/api/v1/admin/hospital", "/api/v1/admin/hospital", {
                "name": hospital["name"], "intro": hospital["intro"], "address": hospital["address"],
                "phone": hospital["phone"], "images": hospital["images"]}),
            ("PUT", "/api/v1/admin/settings", "/api/v1/admin/settings", {"map_url": "https://map.example.cn/x"}),
            ("PUT", "/api/v1/admin/campuses/<campus_id>", f"/api/v1/admin/campuses/{main['id']}", {
                "name": main["name"], "address": main["address"], "phone": main["phone"], "map_url": main["map_url"],
                "sort_order": main["sort_order"],
                "floors": [{"id": f["id"], "building": f["building"], "name": f["name"], "level": f["level"],
                            "plan_url": f["plan_url"]} for f in main["floors"]]}),
            ("POST", "/api/v1/admin/departments", "/api/v1/admin/departments", {"id": "shape", "name": "形状科"}),
            ("PATCH", "/api/v1/admin/departments/<department_id>", "/api/v1/admin/departments/shape",
             {"room": "101"}),
            ("POST", "/api/v1/admin/doctors", "/api/v1/admin/doctors", {
                "login": "doc_shape", "name": "形医生", "department_id": "shape", "title": "医师",
                "specialty": "形状"}),
            ("PUT", "/api/v1/admin/guide/<slug>", "/api/v1/admin/guide/shape", {"title": "形", "body": "状"}),
            ("PUT", "/api/v1/admin/triage/rules/<rule_id>", "/api/v1/admin/triage/rules/shape", {
                "body_part": "头部", "keywords": ["形"], "departments": ["shape"]}),
            ("DELETE", "/api/v1/admin/triage/rules/<rule_id>", "/api/v1/admin/triage/rules/shape", None),
            ("PUT", "/api/v1/admin/prices/<code>", "/api/v1/admin/prices/SHAPE", {
                "name": "形", "unit": "次", "price_fen": 1}),
            ("PUT", "/api/v1/admin/roles/<name>", "/api/v1/admin/roles/shape", {"permissions": ["directory.read"]}),
            ("PUT", "/api/v1/admin/accounts/<account_id>/roles", f"/api/v1/admin/accounts/{doctor}/roles",
             {"roles": ["doctor", "shape"]}),
            ("POST", "/api/v1/admin/accounts/<account_id>/disable", f"/api/v1/admin/accounts/{doctor}/disable", None),
        ]
        for method, route, path, body in writes:
            spec = specs[(method, route)]
            assert spec.response is not None, route
            answer = await http.request(method, path, json=body) if body is not None else await http.request(
                method, path)
            assert answer.status_code in (200, 201), (path, answer.text)
            msgspec.json.decode(answer.content, type=spec.response)

"""The hospital's introduction, campuses, floors and links (PUB-1, PUB-2, PUB-6, ADM-4), as anyone and
as an admin would use them over HTTP."""

from __future__ import annotations

from ..servers import Server
from .helpers import as_admin, audit_actions, error_message

HOSPITAL = {
    "name": "CareHub 示范医院",
    "intro": "一所三级甲等综合医院。",
    "address": "北京市东城区示范路1号",
    "phone": "010-65000000",
    "images": [{"url": "https://cdn.example.cn/new-front.jpg", "caption": "新门诊楼"}],
}

MAIN_FLOORS = [
    {"id": "main-op-1", "building": "门诊楼", "name": "1层", "level": 1},
    {"id": "main-op-2", "building": "门诊楼", "name": "2层", "level": 2},
    {"id": "main-op-3", "building": "门诊楼", "name": "3层", "level": 3},
]


async def test_anyone_sees_the_hospital_introduction_images_campuses_and_map_link(server: Server) -> None:
    """PUB-1, PUB-6: no sign-in needed."""
    async with server.http() as http:
        hospital = (await http.get("/api/v1/hospital")).json()
    assert hospital["name"] == "CareHub 示范医院" and hospital["intro"]
    assert hospital["images"][0]["url"].startswith("https://")
    assert [c["name"] for c in hospital["campuses"]] == ["本部院区", "东院区"]
    assert hospital["map_url"].startswith("https://")


async def test_the_floor_map_shows_each_department_on_its_campus_building_and_floor(server: Server) -> None:
    """PUB-2."""
    async with server.http() as http:
        campuses = (await http.get("/api/v1/campuses")).json()["campuses"]
    east = next(c for c in campuses if c["id"] == "east")
    fourth = next(f for f in east["floors"] if f["name"] == "4层")
    assert fourth["building"] == "外科楼"
    assert [d["name"] for d in fourth["departments"]] == ["骨科"]


async def test_an_admin_replaces_the_introduction_and_images_and_the_change_is_audited(server: Server) -> None:
    """ADM-4, PUB-1."""
    async with await as_admin(server) as http:
        response = await http.put("/api/v1/admin/hospital", json=HOSPITAL)
    assert response.status_code == 200, response.text
    async with server.http() as http:
        hospital = (await http.get("/api/v1/hospital")).json()
    assert hospital["intro"] == "一所三级甲等综合医院。"
    assert hospital["images"] == HOSPITAL["images"]
    entries = await audit_actions(server, "hospital")
    assert [e["action"] for e in entries] == ["hospital.change"]
    assert entries[0]["actor"] == await server.account_id("admin")


async def test_a_department_moved_to_another_floor_shows_its_new_place_to_old_clients_too(server: Server) -> None:
    """PUB-2, ADM-2: the old `campus`/`location` fields follow the floor and room."""
    async with await as_admin(server) as http:
        response = await http.patch("/api/v1/admin/departments/derm", json={"floor_id": "main-op-1", "room": "105室"})
    assert response.status_code == 200, response.text
    async with server.http() as http:
        departments = (await http.get("/api/v1/departments")).json()["departments"]
    derm = next(d for d in departments if d["id"] == "derm")
    assert (derm["campus"], derm["location"]) == ("本部院区", "门诊楼1层105室")
    assert (derm["building"], derm["floor"], derm["room"]) == ("门诊楼", "1层", "105室")


async def test_a_floor_that_still_has_departments_cannot_be_removed(server: Server) -> None:
    """PUB-2: departments on the 3rd floor (cardiology, respiratory) keep it."""
    body = {"name": "本部院区", "address": "北京市东城区示范路1号", "floors": MAIN_FLOORS[:2]}
    async with await as_admin(server) as http:
        response = await http.put("/api/v1/admin/campuses/main", json=body)
    assert response.status_code == 409
    assert "还有科室" in error_message(response)


async def test_renaming_a_building_renames_where_its_departments_are(server: Server) -> None:
    """PUB-2."""
    floors = [{**f, "building": "门诊一号楼"} for f in MAIN_FLOORS]
    body = {"name": "本部院区", "address": "北京市东城区示范路1号", "floors": floors}
    async with await as_admin(server) as http:
        response = await http.put("/api/v1/admin/campuses/main", json=body)
    assert response.status_code == 200, response.text
    async with server.http() as http:
        cardio = (await http.get("/api/v1/departments/cardio")).json()
    assert cardio["location"] == "门诊一号楼3层A区"


async def test_an_admin_sets_the_map_and_triage_links_and_clients_get_them(server: Server) -> None:
    """PUB-6, OUT-1: the links are settings stored in the database."""
    links = {"map_url": "https://map.example.cn/new", "triage_url": "https://ai-triage.example.cn/h/1"}
    async with await as_admin(server) as http:
        response = await http.put("/api/v1/admin/settings", json=links)
    assert response.json() == links
    async with server.http() as http:
        assert (await http.get("/api/v1/hospital")).json()["map_url"] == links["map_url"]
        assert (await http.get("/api/v1/triage")).json()["triage_url"] == links["triage_url"]


async def test_a_link_that_is_not_a_web_address_is_refused_with_a_chinese_message(server: Server) -> None:
    """PUB-6."""
    async with await as_admin(server) as http:
        response = await http.put("/api/v1/admin/settings", json={"map_url": "javascript:alert(1)"})
    assert response.status_code == 422
    assert "网址" in error_message(response)

"""Departments and doctors: the public directory and expert profiles (PUB-2, PUB-4), managed by admins
(ADM-2, ADM-3)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pyotp

from carehub.bots.client import login

from ..servers import Server
from .helpers import as_admin, audit_actions, error_message

NEW_DOCTOR = {
    "login": "doctor_zhou", "name": "周敏", "department_id": "resp", "title": "主任医师", "specialty": "肺结节",
    "intro": "从事呼吸内科临床工作二十年。", "photo_url": "https://cdn.example.cn/doctors/zhou.jpg", "expert": True,
}


async def test_the_department_and_doctor_lists_keep_the_fields_older_clients_read(server: Server) -> None:
    """PUB-2, PUB-4: `departments`/`doctors` with id, name, campus, location / department_id, title, specialty."""
    async with server.http() as http:
        departments = (await http.get("/api/v1/departments")).json()["departments"]
        doctors = (await http.get("/api/v1/doctors", params={"department": "cardio"})).json()["doctors"]
    cardio = next(d for d in departments if d["id"] == "cardio")
    assert {k: cardio[k] for k in ("name", "campus", "location")} == {
        "name": "心血管内科", "campus": "本部院区", "location": "门诊楼3层A区"}
    assert {d["name"] for d in doctors} == {"李建国", "王晓燕"}
    assert {"id", "department_id", "title", "specialty"} <= set(doctors[0])


async def test_a_new_department_appears_in_the_directory_at_its_place(server: Server) -> None:
    """ADM-2, PUB-2."""
    body = {"id": "neuro", "name": "神经内科", "floor_id": "main-op-2", "room": "203室", "intro": "脑血管病诊治"}
    async with await as_admin(server) as http:
        created = await http.post("/api/v1/admin/departments", json=body)
    assert created.status_code == 201, created.text
    async with server.http() as http:
        neuro = (await http.get("/api/v1/departments/neuro")).json()
    assert (neuro["name"], neuro["campus"], neuro["location"]) == ("神经内科", "本部院区", "门诊楼2层203室")
    assert [e["action"] for e in await audit_actions(server, "department/neuro")] == ["department.create"]


async def test_a_department_id_already_in_use_is_refused(server: Server) -> None:
    """ADM-2."""
    async with await as_admin(server) as http:
        response = await http.post("/api/v1/admin/departments", json={"id": "cardio", "name": "心内二科"})
    assert response.status_code == 409 and "已存在" in error_message(response)


async def test_a_disabled_department_leaves_the_public_directory_but_admins_still_see_it(server: Server) -> None:
    """ADM-2."""
    async with await as_admin(server) as http:
        await http.patch("/api/v1/admin/departments/derm", json={"disabled": True})
        everything = (await http.get("/api/v1/admin/directory")).json()
    async with server.http() as http:
        public = (await http.get("/api/v1/departments")).json()["departments"]
        page = await http.get("/api/v1/departments/derm")
    assert "derm" not in [d["id"] for d in public] and page.status_code == 404
    assert next(d for d in everything["departments"] if d["id"] == "derm")["disabled"] is True


async def test_a_doctors_profile_shows_the_introduction_photo_and_specialty_an_admin_wrote(server: Server) -> None:
    """PUB-4, ADM-3."""
    doctor = await server.account_id("doctor3")
    change = {"intro": "擅长慢阻肺的规范化治疗。", "photo_url": "https://cdn.example.cn/d3.jpg", "specialty": "慢阻肺"}
    async with await as_admin(server) as http:
        assert (await http.patch(f"/api/v1/admin/doctors/{doctor}", json=change)).status_code == 200
    async with server.http() as http:
        profile = (await http.get(f"/api/v1/doctors/{doctor}")).json()
    assert {k: profile[k] for k in change} == change
    assert (profile["name"], profile["department"], profile["title"]) == ("张明", "呼吸与危重症医学科", "主任医师")


async def test_experts_can_be_listed_on_their_own(server: Server) -> None:
    """PUB-4: the demo marks chief physicians as experts."""
    async with server.http() as http:
        experts = (await http.get("/api/v1/doctors", params={"expert": "1"})).json()["doctors"]
    assert {d["name"] for d in experts} == {"李建国", "张明"}


async def test_a_disabled_doctor_is_left_out_of_the_directory(server: Server) -> None:
    """ADM-3."""
    doctor = await server.account_id("doctor6")
    async with await as_admin(server) as http:
        await http.patch(f"/api/v1/admin/doctors/{doctor}", json={"disabled": True})
    async with server.http() as http:
        listed = [d["id"] for d in (await http.get("/api/v1/doctors")).json()["doctors"]]
        profile = await http.get(f"/api/v1/doctors/{doctor}")
    assert doctor not in listed and profile.status_code == 404


async def test_a_doctor_cannot_be_moved_to_a_department_that_does_not_exist(server: Server) -> None:
    """ADM-3."""
    doctor = await server.account_id("doctor1")
    async with await as_admin(server) as http:
        response = await http.patch(f"/api/v1/admin/doctors/{doctor}", json={"department_id": "nowhere"})
    assert response.status_code == 422 and "科室" in error_message(response)


async def test_a_new_doctor_signs_in_with_the_password_and_totp_shown_once_to_the_admin(server: Server) -> None:
    """ADM-3: the account is made by Identity.create_accounts, with TOTP enrolment like other staff."""
    async with await as_admin(server) as http:
        created = await http.post("/api/v1/admin/doctors", json=NEW_DOCTOR)
    assert created.status_code == 201, created.text
    shown = created.json()
    secret = parse_qs(urlsplit(shown["totp_enrolment"]).query)["secret"][0]
    token, account = await login(server.base, "doctor_zhou", shown["password"], totp=pyotp.TOTP(secret).now())
    assert token and account["roles"] == ["doctor"]
    async with server.http() as http:
        profile = (await http.get(f"/api/v1/doctors/{shown['id']}")).json()
    assert (profile["name"], profile["expert"], profile["department_id"]) == ("周敏", True, "resp")
    assert re.fullmatch(r"\S{10,}", shown["password"])

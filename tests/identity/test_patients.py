"""Real name and family members (ME-1, ME-2) through the REST API, as a patient would use them."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from carehub.bots.client import CallFailed, connect
from carehub.bots.faceid_sim import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, serve_faceid_sim

from ..servers import Server, run_server
from .test_sign_in import pg_dump

W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number(birth: str, seq: int) -> str:
    """A synthetic resident ID number with a valid GB 11643 check character."""
    body = f"110105{birth}{seq:03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, W, strict=True)) % 11]


async def add(srv: Server, token: str, name: str, number: str, relation: str, **extra: Any) -> httpx.Response:
    async with srv.http(token) as http:
        return await http.post(
            "/api/v1/me/patients", json={"name": name, "id_number": number, "relation": relation, **extra}
        )


async def patients_of(srv: Server, token: str) -> list[dict[str, Any]]:
    async with srv.http(token) as http:
        return list((await http.get("/api/v1/me/patients")).json()["patients"])


async def test_the_sixth_family_member_is_refused(server: Server) -> None:
    token = await server.token("patient2")  # already has herself
    for i in range(4):
        assert (await add(server, token, f"家属{i}", id_number("19700101", 20 + i), "parent")).status_code == 201
    sixth = await add(server, token, "家属九", id_number("19700101", 30), "other")
    assert sixth.status_code == 409
    assert "最多" in sixth.json()["error"]["message"]
    assert len(await patients_of(server, token)) == 5


async def test_a_child_under_14_needs_the_guardians_consent(server: Server) -> None:
    token = await server.token("patient1")
    child = id_number("20200601", 11)
    refused = await add(server, token, "张小宝", child, "child")
    accepted = await add(server, token, "张小宝", child, "child", guardian_consent=True)
    assert refused.status_code == 422 and "监护人" in refused.json()["error"]["message"]
    assert accepted.status_code == 201


async def test_an_id_number_with_a_bad_check_digit_is_refused_with_the_reason(server: Server) -> None:
    number = id_number("19800101", 50)
    wrong = number[:-1] + ("0" if number[-1] != "0" else "1")
    response = await add(server, await server.token("patient1"), "王某", wrong, "parent")
    assert response.status_code == 422 and "校验" in response.json()["error"]["message"]


async def test_family_members_are_shown_masked(server: Server) -> None:
    token = await server.token("patient1")
    number = id_number("19600101", 12)
    await add(server, token, "张大山", number, "parent")
    shown = next(p for p in await patients_of(server, token) if p["relation"] == "parent")
    assert shown["name"] == "张**"
    assert shown["id_number"] == number[:3] + "*" * 11 + number[-4:]


async def test_another_account_cannot_touch_my_family_members(server: Server) -> None:
    mine = await server.token("patient1")
    theirs = await server.token("patient3")
    created = await add(server, mine, "张大山", id_number("19600101", 13), "parent")
    pid = created.json()["id"]
    async with server.http(theirs) as http:
        for method, path in [
            ("DELETE", f"/api/v1/me/patients/{pid}"),
            ("POST", f"/api/v1/me/patients/{pid}/default"),
            ("POST", f"/api/v1/me/patients/{pid}/face"),
            ("PATCH", f"/api/v1/me/patients/{pid}"),
        ]:
            response = await http.request(method, path, json={"relation": "other"})
            assert response.status_code == 404, (method, path)
            assert "张" not in response.text
    assert pid not in [p["id"] for p in await patients_of(server, theirs)]
    assert pid in [p["id"] for p in await patients_of(server, mine)]


async def test_a_person_on_another_account_is_linked_only_after_they_consent(server: Server) -> None:
    holder, asker = await server.token("patient4"), await server.token("patient3")
    holder_self = next(p for p in await patients_of(server, holder) if p["relation"] == "self")
    pending = await add(server, asker, "赵六", "110101195504040103", "parent")
    assert pending.status_code == 201 and pending.json()["consent"] == "pending"
    async with server.http(asker) as http:
        blocked = await http.post(f"/api/v1/me/patients/{holder_self['id']}/default")
    assert blocked.status_code == 409
    async with server.http(holder) as http:
        requests = (await http.get("/api/v1/me/consents")).json()["requests"]
        assert requests == [{"patient_id": holder_self["id"], "requester": await server.account_id("patient3")}]
        await http.post("/api/v1/me/consents", json={**requests[0], "grant": True})
    linked = next(p for p in await patients_of(server, asker) if p["id"] == holder_self["id"])
    assert linked["consent"] == "granted"


async def test_adding_someone_elses_person_does_not_say_whether_they_are_verified(server: Server) -> None:
    """ME-2: 赵六 (patient4's own, verified person) typed in by a stranger looks like a person added new."""
    stranger = await server.token("patient3")
    known = (await add(server, stranger, "赵六", "110101195504040103", "parent")).json()
    new = (await add(server, stranger, "赵七", id_number("19550404", 11), "parent")).json()
    assert known["verified"] is False and known["verified"] == new["verified"]
    assert known["sex"] == "女"  # from the number typed (sequence 010), nothing stored is shown
    listed = next(p for p in await patients_of(server, stranger) if p["id"] == known["id"])
    assert listed["verified"] is False


async def test_an_unverified_patient_cannot_consult_a_doctor(server: Server) -> None:
    admin = await server.token("admin")
    async with server.http(admin) as http:
        made = await http.post(
            "/api/v1/admin/accounts",
            json={"accounts": [{"login": "newcomer", "display_name": "新患者", "roles": ["patient"],
                                "password": "just-arrived-1"}]},
        )
    assert made.status_code == 201
    token, _ = await _login(server, "newcomer", "just-arrived-1")
    me, doctor = made.json()["ids"][0], await server.account_id("doctor1")
    with trio.fail_after(15):
        async with connect(server.base, token) as client:
            with pytest.raises(CallFailed, match="verification_required"):
                await client.call("conversation/" + "~".join(sorted([me, doctor])), "PostMessage", {"text": "医生好"})


async def _login(srv: Server, login: str, password: str) -> tuple[str, dict[str, Any]]:
    from carehub.bots.client import login as do_login

    return await do_login(srv.base, login, password)


@asynccontextmanager
async def with_faceid(database_url: str) -> AsyncIterator[tuple[Server, str]]:
    async with trio.open_nursery() as nursery:
        face = await nursery.start(
            functools.partial(serve_faceid_sim, secret_id=DEFAULT_SECRET_ID, secret_key=DEFAULT_SECRET_KEY)
        )
        async with run_server(
            database_url, faceid_url=face, faceid_secret_id=DEFAULT_SECRET_ID, faceid_secret_key=DEFAULT_SECRET_KEY
        ) as srv:
            yield srv, face
        nursery.cancel_scope.cancel()


async def test_a_face_check_verifies_a_patient_who_may_then_consult(database_url: str) -> None:
    with trio.fail_after(40):
        async with with_faceid(database_url) as (srv, _):
            admin = await srv.token("admin")
            async with srv.http(admin) as http:
                made = await http.post(
                    "/api/v1/admin/accounts",
                    json={"accounts": [{"login": "walkin", "display_name": "散客", "roles": ["patient"],
                                        "password": "walk-in-2026"}]},
                )
            me = made.json()["ids"][0]
            token, _ = await _login(srv, "walkin", "walk-in-2026")
            pid = (await add(srv, token, "孙悟空", id_number("19900909", 77), "self")).json()["id"]
            async with srv.http(token) as http:
                started = (await http.post(f"/api/v1/me/patients/{pid}/face")).json()
                pending = (await http.post(f"/api/v1/me/patients/{pid}/face/result")).json()
                # the patient does the face check on the provider's page, which sends them back
                async with httpx.AsyncClient() as browser:
                    assert (await browser.get(started["url"])).status_code == 302
                done = (await http.post(f"/api/v1/me/patients/{pid}/face/result")).json()
            assert pending["status"] == "pending"
            assert done["status"] == "passed"
            doctor = await srv.account_id("doctor1")
            async with connect(srv.base, token) as client:
                result = await client.call(
                    "conversation/" + "~".join(sorted([me, doctor])), "PostMessage", {"text": "实名后咨询"}
                )
    assert result["n"] == 1


async def test_an_id_photo_is_reviewed_by_an_admin_and_only_images_are_accepted(server: Server) -> None:
    token = await server.token("patient1")
    pid = (await add(server, token, "张老太", id_number("19400101", 15), "parent")).json()["id"]
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
    async with server.http(token) as http:
        fake = await http.post(
            f"/api/v1/me/patients/{pid}/photo", content=b"MZ\x90\x00 not an image",
            headers={"Content-Type": "image/png"},
        )
        sent = await http.post(f"/api/v1/me/patients/{pid}/photo", content=png, headers={"Content-Type": "image/png"})
    assert fake.status_code == 415
    assert sent.status_code == 202
    async with server.http(await server.token("admin")) as http:
        reviews = (await http.get("/api/v1/admin/verifications")).json()["reviews"]
        assert [r["patient_id"] for r in reviews] == [pid]
        assert reviews[0]["name"] == "张**"
        decided = await http.post(f"/api/v1/admin/verifications/{reviews[0]['verification']}/decide",
                                  json={"approve": True})
    assert decided.status_code == 200
    verified = next(p for p in await patients_of(server, token) if p["id"] == pid)
    assert verified["verified"] is True


async def test_a_patient_row_changed_behind_carehubs_back_is_reported_not_served(server: Server) -> None:
    token = await server.token("patient1")
    pid = (await add(server, token, "张二", id_number("19700707", 16), "spouse")).json()["id"]
    other = (await add(server, token, "张三三", id_number("19700708", 17), "other")).json()["id"]
    db = server.app.services.db
    # swap in another person's (valid) ciphertext, as someone with database access might
    await db.execute(
        "UPDATE patients SET name_enc = (SELECT name_enc FROM patients WHERE id = $2) WHERE id = $1", pid, other
    )
    async with server.http(token) as http:
        response = await http.get("/api/v1/me/patients")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "integrity_error"
    assert "张二" not in response.text


def test_a_database_dump_holds_no_plaintext_id_number(database_url: str) -> None:
    dump = subprocess.run([pg_dump(), "--data-only", database_url], capture_output=True, text=True, check=True)
    assert "110101198001010109" not in dump.stdout, "patient1's ID number"
    assert "110101199003030108" not in dump.stdout, "patient3's ID number"

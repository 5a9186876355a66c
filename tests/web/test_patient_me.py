"""我的 in the patient app, in Chromium on a phone (issue 17): family members (ME-2, at most 5),
real-name verification through the FaceID simulator's page (ME-1), and the notice inbox (issue 18:
the server's inbox, live from the delivery stream): a booking's notice live with the unread badge,
read on the server, and whole across a hub restart under the open page (each notice once).
More of the inbox and the notice settings: test_patient_notices.py.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio
from playwright.sync_api import expect

from carehub.http.rest.patients import PatientsView
from carehub.identity.masking import mask_name

from ..outpatient.helpers import beijing_now, open_session, plan
from ..servers import Server
from .browser import PHONE, Chromium
from .test_patient_bills import (
    Hospital,
    free_port,
    open_hospital,
    page_token,
    pay_keys,
    random_id_number,
    run_hospital,
    shots,
    sign_in_at,
    start_sims,
)
from .test_patient_shell import csp_or_script_errors


async def add_person(h: Hospital, token: str, name: str, year: int = 1990, relation: str = "parent") -> dict[str, Any]:
    async with h.server.http(token) as http:
        response = await http.post("/api/v1/me/patients", json={
            "name": name, "id_number": random_id_number(year), "relation": relation})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def book_for_self(server: Server, token: str, day: dt.date, doctor_login: str = "doctor1") -> str:
    """A booking made elsewhere (another phone of the same person): its notice goes to the stream."""
    patient = await self_patient_of(server, token)
    doctor = await server.account_id(doctor_login)
    async with server.http(token) as http:
        response = await http.post("/api/v1/me/bookings", json={
            "patient_id": patient, "doctor_id": doctor, "day": day.isoformat(), "period": "am"})
    assert response.status_code == 201, response.text
    return str(response.json()["booking_id"])


async def self_patient_of(server: Server, token: str) -> str:
    async with server.http(token) as http:
        patients = (await http.get("/api/v1/me/patients")).json()["patients"]
    return str(next(p["id"] for p in patients if p["relation"] == "self"))


async def notices_of(server: Server, token: str, booking_id: str) -> list[str]:
    """The texts of the inbox's notices about one booking, once there is one (the notifier posts it
    after the booking's commit)."""
    async with server.http(token) as http:
        with trio.fail_after(15):
            while True:
                items = (await http.get("/api/v1/me/notices", params={"limit": 100})).json()["items"]
                found = [i["body"] for i in items if (i["link"] or "").split("?")[0] == f"/h5/bookings/{booking_id}"]
                if found:
                    return found
                await trio.sleep(0.05)


@pytest.fixture
async def hospital(database_url: str, built_pages: Path) -> AsyncIterator[Hospital]:
    async with open_hospital(database_url) as h:
        yield h


# ---- family members (ME-2) ---------------------------------------------------------------------------


async def test_a_patient_adds_a_family_member_makes_them_default_removes_one_and_a_sixth_is_refused(
    chromium: Chromium, hospital: Hospital
) -> None:
    page = await chromium.page(**PHONE)
    await sign_in_at(chromium, page, hospital, hospital.base + "/h5/me/patients", "已添加 1 / 5 位就诊人")
    token = await page_token(chromium, page)
    number = random_id_number(1958)

    def add_and_default_and_remove() -> None:
        page.get_by_role("button", name="添加就诊人").click()
        shots(page, "patient-add")
        page.get_by_label("姓名").fill("钱多多")
        page.get_by_label("身份证号").fill(number)
        page.get_by_role("radio", name="父母").click()
        page.get_by_role("button", name="保存").click()
        expect(page.get_by_text("已添加 2 / 5 位就诊人")).to_be_visible()
        card = page.get_by_role("listitem", name=f"就诊人 {mask_name('钱多多')}")
        expect(card).to_contain_text("父母")
        expect(card).to_contain_text("未实名")
        expect(card).to_contain_text(number[:3])
        expect(card).not_to_contain_text(number)  # the ID number is shown masked
        card.get_by_role("button", name="修改关系").click()
        page.get_by_role("button", name="配偶").click()
        expect(card).to_contain_text("配偶")
        card.get_by_role("button", name="设为默认").click()
        expect(card).to_contain_text("默认")
        me = page.get_by_role("listitem", name=f"就诊人 {mask_name('张三')}")
        expect(me.get_by_text("默认", exact=True)).to_have_count(0)
        expect(me.get_by_role("button", name="设为默认")).to_be_visible()
        shots(page, "patients")
        card.get_by_role("button", name="删除").click()
        page.get_by_role("button", name="确认").click()
        expect(card).to_have_count(0)
        expect(page.get_by_text("已添加 1 / 5 位就诊人")).to_be_visible()

    await chromium.run(add_and_default_and_remove)
    for name in ("孙小美", "周大福", "吴天明", "郑成功"):
        await add_person(hospital, token, name)

    def sixth_is_refused() -> None:
        page.reload()
        expect(page.get_by_text("已添加 5 / 5 位就诊人")).to_be_visible()
        page.get_by_role("button", name="添加就诊人").click()
        page.get_by_label("姓名").fill("冯第六")
        page.get_by_label("身份证号").fill(random_id_number(1970))
        page.get_by_role("button", name="保存").click()
        expect(page.get_by_role("alert")).to_have_text("每个账号最多添加 5 位就诊人")
        expect(page.get_by_label("姓名")).to_have_value("冯第六")  # nothing typed is lost
        shots(page, "patient-sixth-refused")

    await chromium.run(sixth_is_refused)
    async with hospital.server.http(token) as http:  # the answer has the shape the OpenAPI document says
        people = msgspec.json.decode((await http.get("/api/v1/me/patients")).content, type=PatientsView).patients
    assert len(people) == 5 and all(p.name != mask_name("钱多多") for p in people)
    assert csp_or_script_errors(chromium) == []


# ---- real-name verification (ME-1) -------------------------------------------------------------------


async def test_real_name_verification_through_the_faceid_page_ends_verified(
    chromium: Chromium, hospital: Hospital
) -> None:
    page = await chromium.page(**PHONE)
    await sign_in_at(chromium, page, hospital, hospital.base + "/h5/me/patients", "已添加 1 / 5 位就诊人")
    token = await page_token(chromium, page)
    person = await add_person(hospital, token, "王小明", 1995, "child")
    assert person["verified"] is False
    went_to: list[str] = []
    page.on("request", lambda request: went_to.append(request.url) if request.is_navigation_request() else None)

    def verify() -> None:
        page.reload()
        card = page.get_by_role("listitem", name=f"就诊人 {person['name']}")
        expect(card).to_contain_text("未实名")
        card.get_by_role("button", name="实名认证").click()
        # the provider's page (the simulator) does the face check and sends the person back
        expect(page.get_by_text(f"{person['name']} 已实名")).to_be_visible(timeout=15_000)
        assert page.url.startswith(hospital.base + "/h5/me/verify?token=")
        shots(page, "verified")
        page.get_by_role("button", name="返回就诊人管理").click()
        expect(card).to_contain_text("已实名")
        expect(card.get_by_role("button", name="实名认证")).to_have_count(0)

    await chromium.run(verify)
    assert any(url.startswith(hospital.sims.face + "/h5/verify") for url in went_to), went_to
    async with hospital.server.http(token) as http:
        people = (await http.get("/api/v1/me/patients")).json()["patients"]
    assert next(p for p in people if p["id"] == person["id"])["verified"] is True
    assert csp_or_script_errors(chromium) == []


async def test_a_failed_face_check_says_why_and_the_person_stays_unverified(
    chromium: Chromium, hospital: Hospital
) -> None:
    page = await chromium.page(**PHONE)
    await sign_in_at(chromium, page, hospital, hospital.base + "/h5/me/patients", "已添加 1 / 5 位就诊人")
    token = await page_token(chromium, page)
    number = random_id_number(1988)
    async with hospital.server.http(token) as http:
        added = await http.post("/api/v1/me/patients",
                                json={"name": "李小红", "id_number": number, "relation": "spouse"})
    assert added.status_code == 201, added.text
    async with httpx.AsyncClient(base_url=hospital.sims.face) as face:  # the person is not who they say
        scripted = await face.post("/_sim/script", json={"id_number": number, "outcome": "liveness_fail"})
    assert scripted.status_code == 200, scripted.text

    def fails() -> None:
        page.reload()
        card = page.get_by_role("listitem", name=f"就诊人 {added.json()['name']}")
        card.get_by_role("button", name="实名认证").click()
        expect(page.get_by_text("未通过实名认证")).to_be_visible(timeout=15_000)
        expect(page.get_by_text("疑似非真人录制")).to_be_visible()
        page.get_by_role("button", name="返回就诊人管理").click()
        expect(card).to_contain_text("未实名")

    await chromium.run(fails)
    assert csp_or_script_errors(chromium) == []


# ---- the notice inbox ---------------------------------------------------------------------------------


async def test_the_inbox_shows_a_new_notice_live_with_an_unread_badge_and_marks_it_read(
    chromium: Chromium, hospital: Hospital
) -> None:
    page = await chromium.page(**PHONE)
    await sign_in_at(chromium, page, hospital, hospital.base + "/h5/me", "就诊人管理")
    token = await page_token(chromium, page)
    day = beijing_now().date() + dt.timedelta(days=1)
    await open_session(hospital.server, "doctor1", plan(day))

    def no_badge() -> None:
        expect(page.get_by_role("button", name=re.compile("消息"))).to_be_visible()
        expect(page.get_by_text("未读")).to_have_count(0)
        page.evaluate("window.notReloaded = true")

    await chromium.run(no_badge)
    booking = await book_for_self(hospital.server, token, day)
    [text] = await notices_of(hospital.server, token, booking)

    def live_then_read() -> None:
        # on 我的, without a reload: the unread badge appears
        expect(page.get_by_label("1 条未读")).to_be_visible(timeout=15_000)
        page.get_by_role("button", name=re.compile("消息")).click()
        notice = page.get_by_role("listitem").filter(has_text=text)
        expect(notice).to_have_count(1)
        expect(notice).to_contain_text("预约与就诊")
        expect(notice).to_contain_text("未读")
        expect(page.get_by_role("status").filter(has_text="条未读")).to_have_text("1 条未读")
        shots(page, "inbox-unread")
        notice.get_by_role("button").click()  # read, and its deep link opens the booking
        expect(page).to_have_url(re.compile(f"/h5/bookings/{booking}"))
        page.go_back()
        expect(notice).to_contain_text("已读")
        expect(notice).not_to_contain_text("未读")
        expect(page.get_by_role("status").filter(has_text="未读")).to_have_text("没有未读消息")
        page.reload()  # read on the server
        expect(page.get_by_role("listitem").filter(has_text=text)).to_contain_text("已读")
        expect(page.get_by_role("status").filter(has_text="未读")).to_have_text("没有未读消息")

    await chromium.run(live_then_read)
    assert csp_or_script_errors(chromium) == []


async def test_a_hub_restart_under_the_open_inbox_reconnects_and_resumes_with_no_lost_notice(
    chromium: Chromium, database_url: str, built_pages: Path
) -> None:
    """Issue 17: a hub restart while the patient app is open: it reconnects and resumes, no notice lost."""
    first_day = beijing_now().date() + dt.timedelta(days=1)
    second_day = first_day + dt.timedelta(days=1)
    page = await chromium.page(**PHONE)
    port = free_port()
    async with trio.open_nursery() as nursery:  # the simulators live on while the hub goes away
        sims = await start_sims(nursery, pay_keys())
        with trio.fail_after(120):
            async with run_hospital(database_url, sims, port) as first:
                await sign_in_at(chromium, page, first, first.base + "/h5/me/notices", "暂无消息")
                token = await page_token(chromium, page)
                await open_session(first.server, "doctor1", plan(first_day))
                await open_session(first.server, "doctor1", plan(second_day))
                before = await book_for_self(first.server, token, first_day)
                [before_text] = await notices_of(first.server, token, before)

                def first_notice_live() -> None:
                    expect(page.get_by_role("listitem").filter(has_text=before_text)).to_have_count(1, timeout=15_000)
                    page.evaluate("window.notReloaded = true")

                await chromium.run(first_notice_live)

            def reconnecting() -> None:  # the hub is gone: the page says so
                expect(page.get_by_text("网络连接中断，正在重新连接…")).to_be_visible(timeout=15_000)

            await chromium.run(reconnecting)

        with trio.fail_after(120):
            async with run_hospital(database_url, sims, port) as again:  # same port, same database
                # a notice sent right after the restart, while the page still waits to reconnect
                after = await book_for_self(again.server, token, second_day)
                [after_text] = await notices_of(again.server, token, after)

                def resumed() -> None:
                    expect(page.get_by_role("listitem").filter(has_text=after_text)).to_have_count(1, timeout=40_000)
                    expect(page.get_by_text("网络连接中断，正在重新连接…")).to_have_count(0)
                    page.wait_for_timeout(1500)  # a repeat would have arrived by now
                    expect(page.get_by_role("listitem").filter(has_text=after_text)).to_have_count(1)
                    expect(page.get_by_role("listitem").filter(has_text=before_text)).to_have_count(1)
                    expect(page.get_by_role("status").filter(has_text="条未读")).to_have_text("2 条未读")
                    assert page.evaluate("window.notReloaded === true"), "the page was reloaded"
                    shots(page, "inbox-after-restart")

                await chromium.run(resumed)
        nursery.cancel_scope.cancel()
    assert csp_or_script_errors(chromium) == []

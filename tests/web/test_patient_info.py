"""The hospital's information pages in the patient app, in Chromium on a phone (issue 17; PUB-1..6,
ADM-5's reading side): what each page shows is what the API holds, a visitor reads them without
signing in (a shared link opens), and a signed-in patient's announcement becomes read.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from playwright.sync_api import expect

from carehub.http.rest.directory import GuidePageView, NewsItemView

from ..servers import Server
from .browser import PHONE, Chromium
from .test_patient_bills import shots
from .test_patient_shell import csp_or_script_errors, sign_in


async def api(hub: Server, path: str, token: str | None = None) -> Any:
    async with hub.http(token) as http:
        response = await http.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_information_pages_show_what_the_api_holds_to_a_visitor_not_signed_in(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    hub, _ = sms_hub
    campuses = (await api(hub, "/api/v1/campuses"))["campuses"]
    experts = (await api(hub, "/api/v1/doctors?expert=1"))["doctors"]
    guide = (await api(hub, "/api/v1/guide"))["pages"]
    news = (await api(hub, "/api/v1/news"))["news"]
    assert campuses and experts and guide and news, "the demo hospital has content"
    first_guide = msgspec.json.decode(
        msgspec.json.encode(await api(hub, f"/api/v1/guide/{guide[0]['slug']}")), type=GuidePageView)
    first_news = msgspec.json.decode(
        msgspec.json.encode(await api(hub, f"/api/v1/news/{news[0]['id']}")), type=NewsItemView)
    page = await chromium.page(**PHONE)

    def read_around() -> None:
        page.goto(hub.base + "/h5/floors")  # not signed in: the page opens anyway
        for campus in campuses:
            section = page.get_by_role("region", name=campus["name"])
            expect(section).to_be_visible()
            for floor in campus["floors"]:
                group = section.get_by_text(f"{floor['building']} {floor['name']}", exact=True)
                expect(group).to_be_visible()
                for department in floor["departments"]:
                    expect(section.get_by_text(department["name"], exact=True)).to_be_visible()
        shots(page, "info-floors")

        page.goto(hub.base + "/h5/experts")
        for doctor in experts:
            expect(page.get_by_role("button", name=re.compile(f"{doctor['name']} · {doctor['title']}"))).to_be_visible()
        shots(page, "info-experts")
        page.get_by_role("button", name=re.compile(experts[0]["name"])).click()
        expect(page.get_by_role("heading", name=re.compile(experts[0]["name"]))).to_be_visible()
        if experts[0]["specialty"]:
            expect(page.get_by_text(experts[0]["specialty"], exact=True)).to_be_visible()

        page.goto(hub.base + "/h5/guide")
        for p in guide:
            expect(page.get_by_role("button", name=re.compile(p["title"]))).to_be_visible()
        page.get_by_role("button", name=re.compile(guide[0]["title"])).click()
        expect(page.get_by_role("heading", name=first_guide.title)).to_be_visible()
        expect(page.get_by_text(first_guide.body.splitlines()[0].strip())).to_be_visible()
        shots(page, "info-guide-page")

        page.goto(hub.base + "/h5/news")
        page.get_by_role("button", name=re.compile(re.escape(news[0]["title"]))).click()
        expect(page.get_by_role("heading", name=first_news.title)).to_be_visible()
        expect(page.get_by_text(first_news.body.splitlines()[0].strip()[:20])).to_be_visible()
        shots(page, "info-news-item")

    await chromium.run(read_around)
    assert csp_or_script_errors(chromium) == []


async def test_the_hospital_page_and_announcements_for_a_signed_in_patient(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    hub, gateway = sms_hub
    hospital = await api(hub, "/api/v1/hospital")
    page = await chromium.page(**PHONE)
    await sign_in(chromium, page, hub, gateway)
    token = await chromium.run(lambda: str(page.evaluate(
        "JSON.parse(localStorage.getItem('carehub.h5.session')).token")))
    announcements = (await api(hub, "/api/v1/announcements", token))["announcements"]
    assert announcements and announcements[0]["read"] is False

    def hospital_page() -> None:
        for tile in ("门诊缴费", "消息", "就医指南"):  # the home page's ways to the new areas
            expect(page.get_by_role("link", name=tile)).to_be_visible()
        shots(page, "home")
        page.get_by_role("link", name="医院介绍").click()
        expect(page.get_by_role("heading", name=hospital["name"])).to_be_visible()
        expect(page.get_by_text(hospital["intro"][:20])).to_be_visible()
        assert hospital["map_url"], "the demo hospital has directions (PUB-6)"
        directions = page.get_by_role("link", name=re.compile("地图导航到医院"))
        expect(directions).to_have_attribute("href", hospital["map_url"])
        for campus in hospital["campuses"]:
            expect(page.get_by_role("button", name=re.compile(campus["name"]))).to_be_visible()
        shots(page, "info-hospital")
        page.get_by_role("button", name=re.compile("医院公告")).click()
        first = page.get_by_role("listitem").filter(has_text=announcements[0]["title"])
        expect(first).to_contain_text("未读")
        shots(page, "info-announcements")
        first.get_by_role("button").click()
        expect(first).to_contain_text(announcements[0]["body"][:20])
        expect(first).not_to_contain_text("未读")

    await chromium.run(hospital_page)
    after = (await api(hub, "/api/v1/announcements", token))["announcements"]
    assert next(a for a in after if a["id"] == announcements[0]["id"])["read"] is True
    assert csp_or_script_errors(chromium) == []

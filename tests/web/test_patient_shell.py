"""The patient app (H5) in Chromium on a phone: sign in by SMS code, the home page in Chinese,
elder mode (长辈版, OUT-9) measured against the MIIT 2021 figures, the live-connection banner.

Issue 17; features PUB-1, PUB-2, OUT-9. Steps find things as a person does: by role and by
visible Chinese text.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from ..servers import Server
from .browser import PHONE, Chromium
from .conftest import sms_code

DEMO_PHONE = "13800138001"  # 张三, a demo patient

#: size, line height, contrast and box of an element, as the browser renders it
MEASURE = """(el) => {
  const parse = (c) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(c)
    if (!m) return { r: 255, g: 255, b: 255, a: 0 }
    const [r, g, b, a = 1] = m[1].split(/[ ,/]+/).filter(Boolean).map(Number)
    return { r, g, b, a }
  }
  const lum = ({ r, g, b }) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4 }
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b)
  }
  let bg = { r: 255, g: 255, b: 255, a: 1 }
  for (let n = el; n; n = n.parentElement) {
    const c = parse(getComputedStyle(n).backgroundColor)
    if (c.a > 0.5) { bg = c; break }
  }
  const style = getComputedStyle(el)
  const [hi, lo] = [lum(parse(style.color)), lum(bg)].sort((x, y) => y - x)
  const box = el.getBoundingClientRect()
  const size = parseFloat(style.fontSize)
  return {
    fontSize: size,
    lineHeight: style.lineHeight === 'normal' ? 1.2 : parseFloat(style.lineHeight) / size,
    contrast: (hi + 0.05) / (lo + 0.05),
    width: box.width,
    height: box.height,
  }
}"""


async def departments(hub: Server) -> list[dict[str, Any]]:
    async with hub.http() as http:
        return list((await http.get("/api/v1/departments")).json()["departments"])


async def sign_in(chromium: Chromium, page: Page, hub: Server, gateway: str, phone: str = DEMO_PHONE) -> None:
    def ask_for_code() -> None:
        page.goto(hub.base + "/")
        expect(page.get_by_role("heading", name="手机号登录")).to_be_visible()
        page.get_by_label("手机号").fill(phone)
        page.get_by_role("button", name="获取验证码").click()
        expect(page.get_by_text("秒后重发")).to_be_visible()

    await chromium.run(ask_for_code)
    code = await sms_code(gateway, phone)

    def enter_code() -> None:
        page.get_by_label("验证码").fill(code)
        page.get_by_role("button", name="登录", exact=True).click()
        expect(page.get_by_role("link", name="科室导航")).to_be_visible()

    await chromium.run(enter_code)


def measure(page: Page, locator: Any) -> dict[str, float]:
    return dict(locator.evaluate(MEASURE))


def csp_or_script_errors(chromium: Chromium) -> list[str]:
    return [p for p in chromium.problems if "Content Security Policy" in p or p.startswith("script error")]


async def test_a_patient_signs_in_with_an_sms_code_and_sees_the_home_page_in_chinese(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    hub, gateway = sms_hub
    page = await chromium.page(**PHONE)
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.on("websocket", lambda ws: urls.append(ws.url))
    await sign_in(chromium, page, hub, gateway)
    names = [d["name"] for d in await departments(hub)]

    def home() -> str:
        expect(page.get_by_text(re.compile("张三，(上午|中午|下午|晚上)好"))).to_be_visible()
        expect(page.get_by_role("heading", name=re.compile("CareHub"))).to_be_visible()
        expect(page.get_by_role("switch", name=re.compile("长辈版"))).to_have_attribute("aria-checked", "false")
        for name in names[:4]:
            expect(page.get_by_role("button", name=re.compile(name))).to_be_visible()
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        return str(page.evaluate("JSON.parse(localStorage.getItem('carehub.h5.session')).token"))

    token = await chromium.run(home)
    assert token and all(token not in url for url in urls), "a token travelled in a URL"
    assert any(url.endswith("/ws") for url in urls), "the page opened its live connection"
    assert csp_or_script_errors(chromium) == []


async def test_a_wrong_sms_code_shows_the_servers_message(chromium: Chromium, sms_hub: tuple[Server, str]) -> None:
    hub, _ = sms_hub
    page = await chromium.page(**PHONE)

    def wrong_code() -> None:
        page.goto(hub.base + "/h5/login")
        page.get_by_label("手机号").fill("13800138002")
        page.get_by_role("button", name="获取验证码").click()
        expect(page.get_by_text("秒后重发")).to_be_visible()
        page.get_by_label("验证码").fill("000000")
        page.get_by_role("button", name="登录", exact=True).click()
        expect(page.get_by_text("验证码错误或已过期")).to_be_visible()

    await chromium.run(wrong_code)


async def test_elder_mode_meets_the_elder_friendly_figures_and_is_remembered(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    hub, gateway = sms_hub
    page = await chromium.page(**PHONE)
    await sign_in(chromium, page, hub, gateway)
    first = (await departments(hub))[0]["name"]
    tiles = ("科室导航", "医院介绍", "我的")

    def normal() -> float:
        return measure(page, page.get_by_text(first, exact=True).first)["fontSize"]

    assert await chromium.run(normal) < 18, "normal mode keeps Vant's ordinary sizes"

    def switch_on() -> None:
        switch = page.get_by_role("switch", name=re.compile("长辈版"))
        switch.click()
        expect(switch).to_have_attribute("aria-checked", "true")

    await chromium.run(switch_on)

    def check() -> None:
        main_text = [
            page.get_by_text(first, exact=True).first,
            page.get_by_text(re.compile("张三，")).first,
            page.get_by_text("长辈版", exact=True).first,
        ]
        body = [measure(page, el) for el in main_text]
        for figures in body:
            assert figures["fontSize"] >= 18, figures
            assert figures["lineHeight"] >= 1.3, figures
            assert figures["contrast"] >= 4.5, figures
        main = measure(page, page.get_by_text(first, exact=True).first)["fontSize"]
        for tile in tiles:
            title = measure(page, page.get_by_role("link", name=tile).get_by_text(tile))
            assert title["fontSize"] > main, (tile, title, main)  # main function titles larger
            assert title["contrast"] >= 4.5, (tile, title)
            box = measure(page, page.get_by_role("link", name=tile))
            assert box["width"] >= 60 and box["height"] >= 60, (tile, box)
        switch_box = measure(page, page.get_by_role("switch", name=re.compile("长辈版")))
        assert switch_box["height"] >= 60, switch_box
        row = measure(page, page.get_by_role("button", name=re.compile(first)).first)
        assert row["height"] >= 60 and row["width"] >= 60, row
        secondary = measure(page, page.get_by_text(re.compile("^今天是")))
        assert secondary["fontSize"] >= 18 and secondary["contrast"] >= 4.5, secondary

    await chromium.run(check)

    def reload_is_still_elder() -> None:
        page.reload()
        expect(page.get_by_role("switch", name=re.compile("长辈版"))).to_have_attribute("aria-checked", "true")
        assert measure(page, page.get_by_text(first, exact=True).first)["fontSize"] >= 18

    await chromium.run(reload_is_still_elder)
    assert csp_or_script_errors(chromium) == []


async def test_a_deep_link_opens_on_reload(chromium: Chromium, sms_hub: tuple[Server, str]) -> None:
    hub, gateway = sms_hub
    page = await chromium.page(**PHONE)
    await sign_in(chromium, page, hub, gateway)
    department = (await departments(hub))[0]

    def deep_link() -> None:
        page.goto(f"{hub.base}/h5/departments/{department['id']}")
        expect(page.get_by_role("heading", name=department["name"])).to_be_visible()
        expect(page.get_by_text("医生", exact=True)).to_be_visible()
        page.goto(f"{hub.base}/h5/no/such/page")
        expect(page.get_by_text("页面不存在或已移动")).to_be_visible()

    await chromium.run(deep_link)


async def test_the_banner_says_when_the_connection_is_down_and_goes_when_it_is_back(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    hub, gateway = sms_hub
    page = await chromium.page(**PHONE)
    await sign_in(chromium, page, hub, gateway)

    def offline_then_online() -> None:
        banner = page.get_by_role("status")
        expect(banner).to_have_text("")
        page.context.set_offline(True)
        expect(banner).to_contain_text("网络已断开")
        page.context.set_offline(False)
        expect(banner).to_have_text("", timeout=20_000)

    await chromium.run(offline_then_online)


async def test_a_signed_out_session_goes_back_to_sign_in(chromium: Chromium, sms_hub: tuple[Server, str]) -> None:
    hub, gateway = sms_hub
    page = await chromium.page(**PHONE)
    await sign_in(chromium, page, hub, gateway)
    token = await chromium.run(
        lambda: str(page.evaluate("JSON.parse(localStorage.getItem('carehub.h5.session')).token"))
    )
    async with httpx.AsyncClient(base_url=hub.base, headers={"Authorization": f"Bearer {token}"}) as http:
        assert (await http.post("/api/v1/auth/logout")).status_code == 200

    def back_to_sign_in() -> None:
        # the hub closes the page's /ws with 4003: the app asks to sign in again, without a reconnect loop
        expect(page.get_by_role("heading", name="手机号登录")).to_be_visible(timeout=15_000)
        expect(page.get_by_text("登录已失效，请重新登录")).to_be_visible()

    await chromium.run(back_to_sign_in)


async def test_the_home_page_loads_at_most_250_kb_of_compressed_javascript_and_css(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    hub, gateway = sms_hub
    page = await chromium.page(**PHONE)
    await sign_in(chromium, page, hub, gateway)
    loaded: list[str] = []

    def home() -> None:
        page.on("request", lambda r: loaded.append(r.url) if r.resource_type in ("script", "stylesheet") else None)
        page.reload()
        expect(page.get_by_role("link", name="科室导航")).to_be_visible()
        page.wait_for_load_state("networkidle")

    await chromium.run(home)
    assert loaded
    total = 0
    async with httpx.AsyncClient(headers={"Accept-Encoding": "gzip"}) as http:
        for url in sorted(set(loaded)):
            async with http.stream("GET", url) as response:
                assert response.status_code == 200, url
                total += len(b"".join([chunk async for chunk in response.aiter_raw()]))
    print(f"home page: {len(set(loaded))} JS/CSS files, {total / 1024:.1f} KB gzip")
    assert total <= 250 * 1024, f"{total / 1024:.1f} KB"

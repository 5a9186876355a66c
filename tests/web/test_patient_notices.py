"""The patient app's notices in Chromium on a phone (issue 18; MSG-1, OUT-15, ME-10, NAV-2): the
inbox is the server's (read on one phone, read on every phone), live while open, paged, filtered
by category (健康宣教 is the education sent to me), with deep links and the indoor-navigation link;
通知设置 saves channels, switched-off categories and quiet hours, and shows the server's refusal.

Notices are published as CareHub's own domains publish them: through the hub's notifier
(``services.messaging.notifier.notify``), which writes the inbox row and the "notice" delivery on
the account's stream. The main phone signs in by SMS code; "another phone" of the same person
signs in with the password (the SMS gateway sends one code a minute per phone).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Page, expect

from carehub.config import Config

from ..servers import Server, eventually
from .browser import PHONE, Chromium
from .conftest import sms_code
from .test_patient_bills import ELDER_KEY, SHOTS, page_token, shots
from .test_patient_shell import DEMO_PHONE, csp_or_script_errors, measure

PATIENT = "patient1"  # 张三, DEMO_PHONE
NAV = Config().nav_url.split("{department}")[0]


# ---- helpers ----------------------------------------------------------------------------------------


async def sign_in_to(chromium: Chromium, page: Page, hub: Server, gateway: str, url: str, arrived: str) -> None:
    """Open ``url`` signed out: the app asks for the SMS code and comes back to ``url``."""

    def ask() -> None:
        page.goto(hub.base + url)
        expect(page.get_by_role("heading", name="手机号登录")).to_be_visible()
        page.get_by_label("手机号").fill(DEMO_PHONE)
        page.get_by_role("button", name="获取验证码").click()
        expect(page.get_by_text("秒后重发")).to_be_visible()

    await chromium.run(ask)
    code = await sms_code(gateway, DEMO_PHONE)

    def enter() -> None:
        page.get_by_label("验证码").fill(code)
        page.get_by_role("button", name="登录", exact=True).click()
        expect(page.get_by_text(arrived).first).to_be_visible()

    await chromium.run(enter)


async def other_phone(chromium: Chromium, hub: Server, url: str) -> Page:
    """The same person on another phone: a browser of its own (no storage shared), its own session."""
    token, account = await hub.login(PATIENT)
    page = await chromium.page(**PHONE)

    def open_it() -> None:
        page.goto(hub.base + "/h5/login")
        page.evaluate("([token, account]) => localStorage.setItem('carehub.h5.session', "
                      "JSON.stringify({ token, account }))", [token, account])
        page.goto(hub.base + url)

    await chromium.run(open_it)
    return page


async def notify(hub: Server, kind: str, values: dict[str, Any]) -> str:
    account = await hub.account_id(PATIENT)
    answer = await hub.app.services.messaging.notifier.notify(account, kind, values)
    return str(answer["notice_id"])


async def api_get(hub: Server, token: str, path: str, **params: Any) -> dict[str, Any]:
    async with hub.http(token) as http:
        response = await http.get(path, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def counts_become(hub: Server, token: str, total: int, unread: int) -> None:
    """The server's counts reach these (a tap shows "已读" at once; its POST may still be on the way)."""
    async def reached() -> bool:
        return await api_get(hub, token, "/api/v1/me/notices/counts") == {"total": total, "unread": unread}

    await eventually(reached)


def report(name: str, department: str = "检验科") -> dict[str, str]:
    return {"patient": "张*三", "report": name, "department": department}


def notice(page: Page, text: str) -> Any:
    return page.get_by_role("list", name="消息列表").get_by_role("listitem").filter(has_text=text)


# ---- the inbox --------------------------------------------------------------------------------------


async def test_a_notice_arrives_live_a_tap_reads_it_on_the_server_and_another_phone_sees_it_read(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    hub, gateway = sms_hub
    page = await chromium.page(**PHONE)
    await sign_in_to(chromium, page, hub, gateway, "/h5/me/notices", "暂无消息")
    token = await page_token(chromium, page)
    other = await other_phone(chromium, hub, "/h5/me")

    def nothing_yet() -> None:
        expect(page.get_by_role("status").filter(has_text="未读")).to_have_text("没有未读消息")
        page.evaluate("window.notReloaded = true")
        expect(other.get_by_role("button", name=re.compile("消息"))).to_be_visible()
        expect(other.get_by_label(re.compile("条未读"))).to_have_count(0)

    await chromium.run(nothing_yet)
    await notify(hub, "report.ready", report("血常规"))

    def live() -> None:
        item = notice(page, "您的血常规报告已出")
        expect(item).to_have_count(1, timeout=15_000)
        expect(item).to_contain_text("检查检验报告已出")  # the title
        expect(item).to_contain_text("未读")
        expect(page.get_by_role("status").filter(has_text="条未读")).to_have_text("1 条未读")
        expect(page.get_by_role("tab", name=re.compile("^未读"))).to_contain_text("1")
        # NAV-2: the department the notice names, on the indoor-navigation page
        expect(item.get_by_role("link", name="院内导航")).to_have_attribute("href", NAV + quote("检验科", safe=""))
        expect(other.get_by_label("1 条未读")).to_be_visible(timeout=15_000)  # 我的 on the other phone, live
        assert page.evaluate("window.notReloaded === true"), "the page was reloaded"

    await chromium.run(live)
    await counts_become(hub, token, 1, 1)

    def tap_reads_it() -> None:
        item = notice(page, "您的血常规报告已出")
        item.get_by_role("button", name=re.compile("检查检验报告已出")).click()
        expect(item).to_contain_text("已读")
        expect(item).not_to_contain_text("未读")
        expect(page.get_by_role("status").filter(has_text="未读")).to_have_text("没有未读消息")
        assert page.url.endswith("/h5/me/notices")  # its link is the inbox: it opens in place

    await chromium.run(tap_reads_it)
    await counts_become(hub, token, 1, 0)

    def read_on_the_other_phone() -> None:
        other.reload()
        expect(other.get_by_role("button", name=re.compile("消息"))).to_be_visible()
        expect(other.get_by_label(re.compile("条未读"))).to_have_count(0)
        other.get_by_role("button", name=re.compile("消息")).click()
        expect(notice(other, "您的血常规报告已出")).to_contain_text("已读")
        expect(other.get_by_role("status").filter(has_text="未读")).to_have_text("没有未读消息")

    await chromium.run(read_on_the_other_phone)

    # deep links: a bill to pay, the payment history, a page this app does not have
    await notify(hub, "bill.due", {"patient": "张*三", "amount": "35.00元", "bill_id": "B-777", "department": "内科"})

    def bill_link() -> None:
        item = notice(page, "35.00元待缴费用")
        expect(item).to_have_count(1, timeout=15_000)
        expect(item).to_contain_text("查看详情")
        item.get_by_role("button", name=re.compile("您有待缴费用")).click()
        expect(page).to_have_url(re.compile(r"/h5/bills\?bill=B-777$"))
        expect(page).to_have_title(re.compile("^门诊缴费 - "))
        page.go_back()
        expect(notice(page, "35.00元待缴费用")).to_contain_text("已读")

    await chromium.run(bill_link)
    await notify(hub, "payment.succeeded", {
        "booking_id": "bk-1", "patient": "张*三", "doctor": "李医生", "time": "12月5日上午", "room": "201",
        "department_id": "cardio", "amount": "25.00元", "item": "挂号费", "order_id": "o-1"})

    def payments_link() -> None:
        item = notice(page, "挂号费25.00元")
        expect(item).to_have_count(1, timeout=15_000)
        item.get_by_role("button", name=re.compile("缴费成功")).click()
        expect(page).to_have_url(re.compile(r"/h5/bills/orders$"))
        expect(page).to_have_title(re.compile("^缴费记录 - "))
        page.go_back()
        expect(notice(page, "挂号费25.00元")).to_contain_text("已读")

    await chromium.run(payments_link)
    await notify(hub, "consultation.accepted", {"patient": "张*三", "doctor": "王晓燕", "consultation_id": "c-9"})
    await notify(hub, "critical.value", {"doctor": "王晓燕", "patient": "张*三", "item": "血钾", "value": "6.9",
                                         "flag": "HH", "department": "检验科", "alert_id": "a-1"})

    def unknown_link_and_critical() -> None:
        item = notice(page, "王晓燕医生已接诊")
        expect(item).to_have_count(1, timeout=15_000)
        expect(item).not_to_contain_text("查看详情")
        item.get_by_role("button", name=re.compile("医生已接诊")).click()
        expect(item).to_contain_text("已读")
        assert page.url.endswith("/h5/me/notices")  # no such page here: only read
        critical = notice(page, "血钾")
        expect(critical).to_have_count(1, timeout=15_000)
        expect(critical).to_contain_text("重要")
        expect(critical).to_have_class(re.compile("notice--critical"))
        expect(page.get_by_role("status").filter(has_text="条未读")).to_have_text("1 条未读")
        shots(page, "notices-inbox")

    await chromium.run(unknown_link_and_critical)

    def elder_figures() -> None:
        page.evaluate(f"localStorage.setItem('{ELDER_KEY}', '1')")
        page.reload()
        item = notice(page, "血钾")
        expect(item).to_have_count(1)
        for target in (item.get_by_role("button").first, page.get_by_role("tab", name="全部"),
                       item.get_by_role("link", name="院内导航"), page.get_by_role("button", name="全部已读")):
            box = measure(page, target)
            assert box["width"] >= 60 and box["height"] >= 60, box
        for text in (item.get_by_text(re.compile("血钾")).first, page.get_by_role("status").filter(has_text="未读")):
            figures = measure(page, text)
            assert figures["fontSize"] >= 18 and figures["lineHeight"] >= 1.3 and figures["contrast"] >= 4.5, figures
        page.evaluate(f"localStorage.setItem('{ELDER_KEY}', '0')")

    await chromium.run(elder_figures)
    assert csp_or_script_errors(chromium) == []


async def test_older_notices_load_page_by_page_and_education_is_under_its_own_tab(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    hub, gateway = sms_hub
    page = await chromium.page(**PHONE)
    await sign_in_to(chromium, page, hub, gateway, "/h5/", "今天是")
    token = await page_token(chromium, page)
    for n in range(1, 26):
        await notify(hub, "report.ready", report(f"检查{n:02d}号"))
    await notify(hub, "education", {"patient": "张*三", "title": "高血压饮食指导",
                                    "content": "少盐少油，每天食盐不超过5克。"})

    def paged() -> None:
        tile = page.get_by_role("link", name=re.compile("消息"))
        expect(tile.get_by_label("26 条未读")).to_be_visible(timeout=15_000)  # the home page's badge, live
        page.screenshot(path=str(SHOTS / "notices-home-badge.png"))
        tile.click()
        items = page.get_by_role("list", name="消息列表").get_by_role("listitem")
        expect(items).to_have_count(20)
        expect(items.nth(0)).to_contain_text("高血压饮食指导")  # newest first
        expect(items.nth(1)).to_contain_text("检查25号")
        expect(items.nth(19)).to_contain_text("检查07号")
        page.get_by_role("button", name="加载更多").click()
        expect(items).to_have_count(26)
        expect(items.nth(25)).to_contain_text("检查01号")
        expect(page.get_by_text("没有更多消息了")).to_be_visible()
        expect(page.get_by_role("button", name="加载更多")).to_have_count(0)

        page.get_by_role("tab", name="健康宣教").click()
        expect(items).to_have_count(1)
        expect(items.first).to_contain_text("少盐少油")
        expect(items.first).to_contain_text("健康宣教")
        shots(page, "notices-education")

        page.get_by_role("tab", name="全部").click()
        expect(items).to_have_count(20)
        page.get_by_role("button", name="全部已读").click()
        expect(page.get_by_role("status").filter(has_text="未读")).to_have_text("没有未读消息")
        expect(items.filter(has_text="未读")).to_have_count(0)
        page.get_by_role("tab", name=re.compile("^未读")).click()
        expect(page.get_by_text("没有未读消息").last).to_be_visible()
        expect(items).to_have_count(0)

        page.goto(page.url.split("/h5/")[0] + "/h5/me")  # ME-10: 我的 leads to the education sent to me
        page.get_by_role("button", name=re.compile("健康宣教")).click()
        expect(page.get_by_role("tab", name="健康宣教")).to_have_attribute("aria-selected", "true")
        expect(items).to_have_count(1)
        page.reload()  # the tab is in the address
        expect(page.get_by_role("tab", name="健康宣教")).to_have_attribute("aria-selected", "true")
        expect(items.first).to_contain_text("高血压饮食指导")

    await chromium.run(paged)
    education = await api_get(hub, token, "/api/v1/me/notices", category="education")
    assert [(i["kind"], i["title"]) for i in education["items"]] == [("education", "高血压饮食指导")]
    await counts_become(hub, token, 26, 0)
    assert csp_or_script_errors(chromium) == []


# ---- 通知设置 (OUT-15) --------------------------------------------------------------------------------


def pick_time(page: Page, cell: str, hour: str, minute: str) -> None:
    """Open a time cell's picker and choose ``hour``:``minute`` (a tap on each column's option)."""
    page.get_by_role("button", name=re.compile(f"^{cell}")).click()
    picker = page.locator(".van-picker")
    expect(picker).to_be_visible()
    columns = picker.locator(".van-picker-column")
    for n, value in enumerate((hour, minute)):
        columns.nth(n).get_by_text(value, exact=True).dispatch_event("click")
        page.wait_for_timeout(400)  # the column settles
    page.screenshot(path=str(SHOTS / f"notice-time-picker-{cell}.png"))
    picker.get_by_role("button", name="确定").click()
    expect(picker).to_be_hidden()


async def test_settings_save_quiet_hours_and_a_switched_off_category_and_show_the_servers_refusal(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    hub, gateway = sms_hub
    page = await chromium.page(**PHONE)
    await sign_in_to(chromium, page, hub, gateway, "/h5/me", "就诊人管理")
    token = await page_token(chromium, page)

    def set_them() -> None:
        page.get_by_role("button", name=re.compile("通知设置")).click()  # from 我的
        expect(page).to_have_title(re.compile("^通知设置 - "))
        expect(page.get_by_role("note")).to_contain_text("危急值等临床警报不受免打扰和关闭影响")
        channels = page.get_by_role("list", name="接收渠道").get_by_role("listitem")
        expect(channels).to_have_count(3)
        expect(channels.nth(0)).to_contain_text("微信")
        expect(page.get_by_role("switch", name="使用支付宝")).to_have_attribute("aria-checked", "false")
        page.get_by_role("button", name="短信上移").click()  # SMS first, then WeChat
        expect(channels.nth(0)).to_contain_text("短信")
        off = page.get_by_role("switch", name="检查检验报告 短信")
        expect(off).to_have_attribute("aria-checked", "true")
        off.click()
        expect(off).to_have_attribute("aria-checked", "false")
        expect(off).to_contain_text("已关闭")
        expect(page.get_by_role("switch", name=re.compile("危急值"))).to_have_count(0)  # never switched off
        quiet = page.get_by_role("switch", name="免打扰时段")
        quiet.click()
        expect(quiet).to_contain_text("每天 22:00 至 07:00")
        pick_time(page, "开始时间", "21", "30")
        expect(quiet).to_contain_text("每天 21:30 至 07:00")
        page.get_by_role("button", name="保存", exact=True).click()
        expect(page.get_by_text("已保存")).to_be_visible()
        shots(page, "notice-preferences")

    await chromium.run(set_them)
    prefs = await api_get(hub, token, "/api/v1/me/notice-preferences")
    assert prefs["channels"] == ["sms", "wechat"]
    assert prefs["off"] == {"report": ["sms"]}
    assert (prefs["quiet_start"], prefs["quiet_end"]) == (21 * 60 + 30, 7 * 60)
    assert "education" in [c["category"] for c in prefs["categories"]]

    def kept_and_refused() -> None:
        page.reload()
        expect(page.get_by_role("switch", name="免打扰时段")).to_contain_text("每天 21:30 至 07:00")
        expect(page.get_by_role("switch", name="检查检验报告 短信")).to_have_attribute("aria-checked", "false")
        expect(page.get_by_role("list", name="接收渠道").get_by_role("listitem").nth(0)).to_contain_text("短信")
        pick_time(page, "结束时间", "21", "30")  # the same as the start
        page.get_by_role("button", name="保存", exact=True).click()
        expect(page.get_by_role("alert")).to_have_text("免打扰时段需要开始和结束两个不同的时间")

    await chromium.run(kept_and_refused)
    assert (await api_get(hub, token, "/api/v1/me/notice-preferences"))["quiet_end"] == 7 * 60  # unchanged

    def elder_targets_and_the_inbox_way_in() -> None:
        page.evaluate(f"localStorage.setItem('{ELDER_KEY}', '1')")
        page.reload()
        targets = [page.get_by_role("switch", name=name) for name in ("检查检验报告 微信", "使用微信", "免打扰时段")]
        targets.append(page.get_by_role("button", name="微信下移"))
        targets.append(page.get_by_role("button", name=re.compile("^开始时间")))
        for target in targets:
            box = measure(page, target)
            assert box["width"] >= 60 and box["height"] >= 60, box
        text = measure(page, page.get_by_role("note"))
        assert text["fontSize"] >= 18 and text["contrast"] >= 4.5, text
        page.evaluate(f"localStorage.setItem('{ELDER_KEY}', '0')")
        page.goto(page.url.replace("/h5/me/notice-preferences", "/h5/me/notices"))
        page.get_by_role("button", name="通知设置").click()  # from the inbox too
        expect(page).to_have_title(re.compile("^通知设置 - "))

    await chromium.run(elder_targets_and_the_inbox_way_in)
    assert csp_or_script_errors(chromium) == []

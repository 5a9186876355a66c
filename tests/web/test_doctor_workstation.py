"""The doctor workstation (PC, Element Plus) in Chromium: the live waiting list with masked names,
sex, age and slot time (DOC-1); call next, skip, recall, seen (OUT-12, the doctor's side); a leave
request listed as pending (DOC-27); a live alert when a message reaches the doctor's stream.

Issue 17. The clinic day is arranged over the hub's REST API as a patient's phone would do it
(book, check in with the visit code); the doctor signs in with password + TOTP in the page.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from playwright.sync_api import Locator, Page, expect

from ..servers import Server, run_server
from .browser import DESKTOP, Chromium
from .conftest import sign_in_staff
from .queue_helpers import book_and_check_in, doctor_id, open_tonight
from .test_display import free_port
from .test_patient_shell import csp_or_script_errors

SHOTS = Path("/tmp/d-shots")
TEXT = "医生您好，我的检查报告出来了"


@pytest.fixture
async def hub(database_url: str, built_pages: Path) -> AsyncIterator[Server]:
    with trio.fail_after(240):
        async with run_server(database_url) as srv:
            yield srv


def waiting_rows(page: Page) -> Locator:
    """The rows of the 候诊患者 table."""
    return page.locator(".el-card").filter(has_text="候诊患者").locator("tbody tr")


async def test_the_doctor_runs_the_waiting_list_live(chromium: Chromium, hub: Server) -> None:
    day = await open_tonight(hub, "doctor1")
    for login in ("patient1", "patient4"):
        await book_and_check_in(hub, login, "doctor1", day)
    page = await chromium.page(**DESKTOP)

    def waiting_list() -> None:
        SHOTS.mkdir(exist_ok=True)
        sign_in_staff(page, hub.base + "/doctor/", "doctor1")
        tonight = page.get_by_role("row").filter(has_text="今天")
        expect(tonight).to_contain_text("夜间")
        expect(tonight).to_contain_text("心内科3诊室")
        expect(tonight).to_contain_text("2 / 20")
        page.screenshot(path=str(SHOTS / "doctor-home.png"))
        tonight.get_by_role("link", name="进入叫号").click()
        waiting = waiting_rows(page)
        expect(waiting).to_have_count(2)
        # DOC-1: masked name, sex, age, slot time; never the full name
        expect(waiting.nth(0)).to_contain_text("张*")
        expect(waiting.nth(0)).to_contain_text("女")
        expect(waiting.nth(0)).to_contain_text(re.compile(r"\d+岁"))
        expect(waiting.nth(0)).to_contain_text(re.compile(r"\d\d:\d\d"))
        expect(waiting.nth(1)).to_contain_text("赵*")
        expect(page.get_by_test_id("calling")).to_have_text("暂无")
        assert "张三" not in page.content() and "赵六" not in page.content()
        page.screenshot(path=str(SHOTS / "doctor-queue-waiting.png"))

    await chromium.run(waiting_list)

    def call_next() -> None:
        page.get_by_role("button", name="叫下一位").click()
        expect(page.get_by_test_id("calling")).to_contain_text("张*")
        waiting = waiting_rows(page)
        expect(waiting).to_have_count(1)
        expect(waiting.nth(0)).to_contain_text("赵*")

    await chromium.run(call_next)

    # a patient checks in at the kiosk meanwhile: the list shows them without a reload
    await book_and_check_in(hub, "patient2", "doctor1", day)

    def live_and_skip_recall_seen() -> None:
        waiting = waiting_rows(page)
        expect(waiting).to_have_count(2)
        expect(waiting.nth(1)).to_contain_text("李*")
        page.screenshot(path=str(SHOTS / "doctor-queue-calling.png"))
        # 过号: the called patient moves back into the line, marked
        page.get_by_role("button", name="过号").click()
        expect(page.get_by_test_id("calling")).to_have_text("暂无")
        expect(waiting).to_have_count(3)
        skipped = waiting.filter(has_text="张*")
        expect(skipped).to_contain_text("过号1次")
        # 叫号 on that row: recalled at once, out of turn
        skipped.get_by_role("button", name="叫号").click()
        expect(page.get_by_test_id("calling")).to_contain_text("张*")
        expect(waiting).to_have_count(2)
        # 就诊完成
        page.get_by_role("button", name="就诊完成").click()
        expect(page.get_by_test_id("calling")).to_have_text("暂无")
        expect(page.get_by_text("已就诊 1 人")).to_be_visible()
        # 优先: 李* moves ahead of 赵*
        waiting.filter(has_text="李*").get_by_role("button", name="优先").click()
        expect(waiting.nth(0)).to_contain_text("李*")
        expect(waiting.nth(0)).to_contain_text("优先")

    await chromium.run(live_and_skip_recall_seen)
    assert csp_or_script_errors(chromium) == []


async def test_a_message_to_the_doctor_pops_up_as_an_alert(chromium: Chromium, hub: Server) -> None:
    page = await chromium.page(**DESKTOP)
    await chromium.run(sign_in_staff, page, hub.base + "/doctor/", "doctor1")

    def connected() -> None:
        expect(page.get_by_role("heading", name="我的出诊（今天及未来 7 天）")).to_be_visible()
        page.wait_for_function("() => !document.querySelector('.staff-shell__connection')")

    await chromium.run(connected)
    await trio.sleep(0.5)  # the welcome has set this device's stream point
    doctor = await doctor_id(hub, "doctor1")
    patient = await hub.account_id("patient1")
    conversation = "~".join(sorted([doctor, patient]))
    async with hub.http(await hub.token("patient1")) as http:
        posted = await http.post("/api/v1/call", json={
            "to": f"conversation/{conversation}", "type": "PostMessage", "body": {"text": TEXT}})
        assert posted.status_code == 200, posted.text

    def alert() -> None:
        note = page.locator(".doctor-alert")
        expect(note).to_be_visible(timeout=5000)
        expect(note).to_contain_text("新消息")
        expect(note).to_contain_text(TEXT)
        page.wait_for_timeout(500)  # the notification's slide-in, for the picture
        page.screenshot(path=str(SHOTS / "doctor-alert.png"))
        # no session today: the queue page says so instead of an empty table
        page.get_by_role("menuitem", name="候诊叫号").click()
        expect(page.get_by_text("今天没有出诊安排")).to_be_visible()

    await chromium.run(alert)
    assert csp_or_script_errors(chromium) == []


async def test_the_doctor_asks_for_leave_and_sees_it_pending_then_decided(chromium: Chromium, hub: Server) -> None:
    page = await chromium.page(**DESKTOP)
    day = (dt.date.today() + dt.timedelta(days=10)).isoformat()

    def ask_for_leave() -> None:
        sign_in_staff(page, hub.base + "/doctor/roster", "doctor3")
        expect(page.get_by_role("heading", name="提交申请")).to_be_visible()
        expect(page.get_by_role("table", name="我的申请").or_(page.get_by_text("还没有申请"))).to_be_visible()
        page.get_by_role("button", name="提交申请").click()
        expect(page.get_by_text("请选择日期")).to_be_visible()  # refused here, with a reason
        picker = page.get_by_placeholder("选择日期")
        picker.fill(day)
        picker.press("Enter")
        page.get_by_label("原因").fill("参加学术会议")
        page.get_by_role("button", name="提交申请").click()
        expect(page.get_by_text("已提交，等待审批")).to_be_visible()
        row = page.locator(".el-card").filter(has_text="我的申请").locator("tbody tr").first
        expect(row).to_contain_text("请假")
        expect(row).to_contain_text(day)
        expect(row).to_contain_text("参加学术会议")
        expect(row).to_contain_text("待审批")
        page.screenshot(path=str(SHOTS / "doctor-roster.png"))

    await chromium.run(ask_for_leave)
    async with hub.http(await hub.token("admin")) as http:
        pending = (await http.get("/api/v1/admin/rosters", params={"status": "submitted"})).json()["rosters"]
        (mine,) = [r for r in pending if r["kind"] == "leave" and r["sessions"][0]["day"] == day]
        decided = await http.post(f"/api/v1/admin/rosters/{mine['id']}/decide",
                                  json={"approve": False, "reason": "当天门诊量大，请改期"})
        assert decided.status_code == 200, decided.text

    def decision_shown() -> None:
        page.get_by_role("menuitem", name="我的出诊").click()
        page.get_by_role("menuitem", name="我的排班").click()
        row = page.locator(".el-card").filter(has_text="我的申请").locator("tbody tr").first
        expect(row).to_contain_text("已驳回")
        expect(row).to_contain_text("当天门诊量大，请改期")

    await chromium.run(decision_shown)
    assert csp_or_script_errors(chromium) == []


#: notes each live alert the page shows (``window.__alerts``: their texts), however long it stays up
COUNT_ALERTS = """() => {
  window.__alerts = []
  new MutationObserver((changes) => {
    for (const change of changes) {
      for (const node of change.addedNodes) {
        if (node.nodeType === 1 && node.classList.contains('doctor-alert')) window.__alerts.push(node.textContent)
      }
    }
  }).observe(document.body, { childList: true, subtree: true })
  window.__sameDocument = true
}"""


async def tell_the_doctor(hub: Server, text: str) -> None:
    """patient1 writes to doctor1 (the conversation the doctor's stream carries)."""
    doctor = await doctor_id(hub, "doctor1")
    patient = await hub.account_id("patient1")
    conversation = "~".join(sorted([doctor, patient]))
    async with hub.http(await hub.token("patient1")) as http:
        posted = await http.post("/api/v1/call", json={
            "to": f"conversation/{conversation}", "type": "PostMessage", "body": {"text": text}})
        assert posted.status_code == 200, posted.text


async def test_the_open_workstation_carries_on_after_a_hub_restart(
    chromium: Chromium, database_url: str, built_pages: Path
) -> None:
    """Issue 17: a hub restart under the open queue page: it says it is reconnecting, then, without a
    reload, shows a patient who checks in after the restart (OUT-12) and pops up a new message once,
    the one from before the restart not again."""
    port = free_port()
    page = await chromium.page(**DESKTOP)
    before, after = "重启前的消息：我到医院了", "重启后的消息：我的检查报告出来了"
    with trio.fail_after(240):
        async with run_server(database_url, port=port) as hub:
            day = await open_tonight(hub, "doctor1")
            await book_and_check_in(hub, "patient1", "doctor1", day)

            def queue_open() -> None:
                SHOTS.mkdir(exist_ok=True)
                sign_in_staff(page, hub.base + "/doctor/queue", "doctor1")
                expect(waiting_rows(page)).to_have_count(1)
                expect(waiting_rows(page).nth(0)).to_contain_text("张*")
                page.wait_for_function("() => !document.querySelector('.staff-shell__connection')")
                page.evaluate(COUNT_ALERTS)

            await chromium.run(queue_open)
            await trio.sleep(0.5)  # the welcome has set this device's stream point
            await tell_the_doctor(hub, before)

            def first_alert() -> None:
                expect(page.locator(".doctor-alert").filter(has_text=before)).to_be_visible(timeout=5000)

            await chromium.run(first_alert)

        def reconnecting() -> None:
            banner = page.get_by_role("status").filter(has_text="正在重连")
            expect(banner).to_be_visible(timeout=15_000)
            expect(banner).to_have_text("连接已断开，正在重连…")
            expect(waiting_rows(page)).to_have_count(1)  # the list stays on screen meanwhile
            page.screenshot(path=str(SHOTS / "doctor-queue-reconnecting.png"))

        await chromium.run(reconnecting)

        async with run_server(database_url, port=port) as hub:  # same port, same database

            def reconnected() -> None:
                expect(page.locator(".staff-shell__connection")).to_have_count(0, timeout=30_000)

            await chromium.run(reconnected)
            await trio.sleep(1)  # the page's re-read on reconnecting is done: only the live topic can tell it now
            await book_and_check_in(hub, "patient4", "doctor1", day)

            def the_new_patient_shows() -> None:
                waiting = waiting_rows(page)
                expect(waiting).to_have_count(2, timeout=10_000)
                expect(waiting.nth(1)).to_contain_text("赵*")

            await chromium.run(the_new_patient_shows)
            await trio.sleep(0.5)
            await tell_the_doctor(hub, after)

            def alerted_once() -> list[str]:
                expect(page.locator(".doctor-alert").filter(has_text=after)).to_be_visible(timeout=10_000)
                page.wait_for_timeout(2000)  # a repeat would come right behind
                page.screenshot(path=str(SHOTS / "doctor-queue-after-restart.png"))
                assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
                return list(page.evaluate("window.__alerts"))

            alerts = await chromium.run(alerted_once)
    assert len([a for a in alerts if after in a]) == 1, alerts
    assert len([a for a in alerts if before in a]) == 1, alerts  # not shown again after the resume
    assert csp_or_script_errors(chromium) == []

"""The ops dashboard's 消息中心 section in Chromium (issue 18, MSG-1, ADM-8).

A notice whose only channel (SMS) refuses it becomes a dead letter through the real path: the SMS
gateway simulator answers isv.MOBILE_NUMBER_ILLEGAL once (a fault of its admin API), the message
center falls back, has no other channel, and dead-letters it. The ops person sees it listed with
that reason, presses 重发, and it goes out over SMS and leaves the list; the channel circuits are
shown beside it.
"""

from __future__ import annotations

import re

import httpx
import pyotp
import trio
from playwright.sync_api import expect

from ..servers import Server
from .browser import DESKTOP, Chromium
from .conftest import STAFF_TOTP_SECRET
from .test_admin_content import shot
from .test_admin_messaging import VALUES
from .test_patient_shell import csp_or_script_errors


async def test_ops_see_a_dead_letter_with_its_reason_and_resend_it(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    hub, gateway = sms_hub
    page = await chromium.page(**DESKTOP)

    def sign_in() -> str:
        page.goto(hub.base + "/ops")
        page.fill("#login-name", "ops")
        page.fill("#login-password", "carehub-demo")
        page.fill("#login-totp", pyotp.TOTP(STAFF_TOTP_SECRET).now())
        page.click("#login-submit")
        section = page.get_by_role("region", name=re.compile("消息中心"))
        expect(section).to_be_visible(timeout=15_000)
        circuits = section.get_by_role("table", name="渠道熔断状态")
        expect(circuits.get_by_role("row", name=re.compile("短信.*正常"))).to_be_visible()
        expect(circuits.get_by_role("row", name=re.compile("微信.*未配置"))).to_be_visible()
        expect(section.get_by_role("table", name="死信")).to_contain_text("没有死信")
        return str(page.evaluate("() => sessionStorage.getItem('carehub.ops.token')"))

    token = await chromium.run(sign_in)

    # the gateway refuses the next SMS as a number it does not send to: SMS falls back, nothing is left
    async with httpx.AsyncClient(base_url=gateway) as sim:
        fault = {"kind": "error", "code": "isv.MOBILE_NUMBER_ILLEGAL", "count": 1, "action": "SendSms"}
        assert (await sim.post("/_sim/faults", json=fault)).status_code == 200
    patient = await hub.account_id("patient1")
    posted = await hub.app.services.messaging.notifier.notify(
        patient, "booking.confirmed", VALUES, notice_id="n-dead-1", channels=["sms"])
    assert posted["plan"] == ["sms"], posted
    async with hub.http(token) as http:
        with trio.fail_after(10):
            while not (dead := (await http.get("/api/v1/ops/notices/dead-letters")).json()["items"]):
                await trio.sleep(0.05)
    assert [d["id"] for d in dead] == ["n-dead-1"]

    def resend() -> None:
        row = page.get_by_role("table", name="死信").get_by_role("row").filter(has_text="预约成功")
        expect(row).to_contain_text("MOBILE_NUMBER_ILLEGAL", timeout=10_000)
        expect(row).to_contain_text(patient)
        shot(page, "ops-dead-letters")
        row.get_by_role("button", name="重发").click()
        # it goes out over SMS this time (the row says 发送中 until the next refresh): it leaves the list
        expect(page.get_by_role("table", name="死信")).to_contain_text("没有死信", timeout=10_000)
        circuits = page.get_by_role("table", name="渠道熔断状态")
        expect(circuits.get_by_role("row", name=re.compile("短信"))).to_contain_text("MOBILE_NUMBER_ILLEGAL")
        shot(page, "ops-messages")

    await chromium.run(resend)
    async with hub.http(token) as http:
        assert (await http.get("/api/v1/ops/notices/dead-letters")).json()["items"] == []
        counts = (await http.get("/api/v1/ops/notices/channels")).json()["notices"]
    assert counts.get("dead", 0) == 0 and counts.get("sent", 0) >= 1

    # MSG-7: an open clinical alert is on the dashboard with who has it and how long it is open
    await hub.app.services.messaging.alerts.raise_alert(
        "A-ops-1", "critical.value", await hub.account_id("doctor1"), patient="张*三", item="血钾",
        value="6.8 mmol/L", flag="HH")

    def open_alert() -> None:
        alerts = page.locator("#open-alerts")
        expect(alerts).to_contain_text("血钾 6.8 mmol/L (HH)", timeout=10_000)
        expect(alerts).to_contain_text("第 1 级")
        expect(alerts).to_contain_text(re.compile(r"已开 \d+ 秒"))

    await chromium.run(open_alert)
    assert csp_or_script_errors(chromium) == []


async def test_the_ops_channel_view_is_for_ops_only(sms_hub: tuple[Server, str]) -> None:
    hub, _ = sms_hub
    async with hub.http(await hub.token("ops")) as http:
        answer = await http.get("/api/v1/ops/notices/channels")
    assert answer.status_code == 200
    assert {c["channel"] for c in answer.json()["channels"]} >= {"sms"}
    async with hub.http(await hub.token("patient1")) as http:
        assert (await http.get("/api/v1/ops/notices/channels")).status_code == 403

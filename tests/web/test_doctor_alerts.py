"""Clinical alerts on the doctor workstation in Chromium (MSG-7, DOC-19): a critical value posted by
the LIS (a signed FHIR DiagnosticReport) shows on the doctor's open workstation without a reload and
stays until 确认收到; the acknowledgement (who, when, which device) is stored; an alert nobody
acknowledges in time shows up on the on-call doctor's screen, and their ack clears it everywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from playwright.sync_api import Page, expect

from ..http.test_clinical_alerts import patient_id, post_report, report
from ..identity.test_partners import issue_key
from ..servers import Server, run_server
from .browser import DESKTOP, Chromium
from .conftest import sign_in_staff
from .queue_helpers import doctor_id
from .test_patient_shell import csp_or_script_errors

SHOTS = Path("/tmp/d-shots")


@pytest.fixture
async def hub(database_url: str, built_pages: Path) -> AsyncIterator[Server]:
    with trio.fail_after(240):
        async with run_server(database_url) as srv:
            yield srv


async def open_workstation(chromium: Chromium, hub: Server, login: str) -> Page:
    page = await chromium.page(**DESKTOP)

    def signed_in() -> None:
        sign_in_staff(page, hub.base + "/doctor/", login)
        expect(page.get_by_role("heading", name="我的出诊（今天及未来 7 天）")).to_be_visible()
        page.wait_for_function("() => !document.querySelector('.staff-shell__connection')")

    await chromium.run(signed_in)
    return page


async def test_a_critical_value_stays_on_screen_until_acknowledged_and_escalates_to_on_call(
        chromium: Chromium, hub: Server) -> None:
    doctor1 = await open_workstation(chromium, hub, "doctor1")
    doctor2 = await open_workstation(chromium, hub, "doctor2")
    await trio.sleep(0.5)  # the welcome has set each device's stream point
    key = await issue_key(hub, ["alerts.raise"])
    patient, doctor1_id = await patient_id(hub), await doctor_id(hub, "doctor1")
    posted = await post_report(hub, key, report(patient, doctor1_id, report_id="LIS-100"))
    assert posted.status_code == 202, posted.text
    (first,) = posted.json()["alert_ids"]

    def shown_live_then_acknowledged() -> str:
        banner = doctor1.locator(".alert-banner")
        expect(banner).to_be_visible(timeout=10000)
        expect(banner).to_contain_text("血钾")
        expect(banner).to_contain_text("6.8 mmol/L")
        expect(banner).to_contain_text("第 1/3 级，当前：李建国")
        expect(doctor2.locator(".alert-banner")).to_have_count(0)  # the on-call doctor is not alerted yet
        # it stays on every page
        doctor1.get_by_role("menuitem", name="我的排班").click()
        expect(banner).to_be_visible()
        SHOTS.mkdir(exist_ok=True)
        doctor1.screenshot(path=str(SHOTS / "doctor-critical-alert.png"))
        device = str(doctor1.evaluate("() => localStorage.getItem('carehub.device')"))
        banner.get_by_role("button", name="确认收到").click()
        expect(doctor1.get_by_text("已确认收到")).to_be_visible()
        expect(banner).to_have_count(0)
        return device

    device = await chromium.run(shown_live_then_acknowledged)
    assert device.startswith("doctor-")
    # the doctors' TOTP codes are spent on the browsers' sign-in: read the stored proof directly
    proof = await hub.app.services.messaging.alerts.one(first)
    assert (proof["status"], proof["acked_by"], proof["ack_device"]) == ("acknowledged", doctor1_id, device)
    assert proof["acked_at"] and proof["steps"][-1]["action"] == "acknowledged"

    # nobody answers the next one in time (3 s per contact): it escalates to the on-call doctor
    await hub.app.services.messaging.alerts.store.set_ack_minutes("critical.value", 0.05)
    posted = await post_report(hub, key, report(patient, doctor1_id, report_id="LIS-101"))
    (second,) = posted.json()["alert_ids"]

    def escalated_to_on_call_and_cleared_everywhere() -> None:
        expect(doctor1.locator(".alert-banner")).to_be_visible(timeout=10000)
        banner = doctor2.locator(".alert-banner")
        expect(banner).to_be_visible(timeout=15000)
        expect(banner).to_contain_text("第 2/3 级，当前：王晓燕")
        expect(banner).to_contain_text("已升级")
        expect(doctor1.locator(".alert-banner")).to_contain_text("当前：王晓燕")  # the first doctor sees the step
        doctor2.screenshot(path=str(SHOTS / "doctor-alert-escalated.png"))
        banner.get_by_role("button", name="确认收到").click()
        expect(banner).to_have_count(0)
        expect(doctor1.locator(".alert-banner")).to_have_count(0, timeout=10000)

    await chromium.run(escalated_to_on_call_and_cleared_everywhere)
    proof = await hub.app.services.messaging.alerts.one(second)
    assert proof["acked_by"] == await doctor_id(hub, "doctor2")
    assert [s["action"] for s in proof["steps"]][:4] == ["raised", "notified", "escalated", "notified"]
    assert csp_or_script_errors(chromium) == []


async def test_the_alerts_page_lists_the_steps_and_a_notice_link_opens_one_alert(
        chromium: Chromium, hub: Server) -> None:
    key = await issue_key(hub, ["alerts.raise"])
    patient, doctor1_id = await patient_id(hub), await doctor_id(hub, "doctor1")
    (alert_id,) = (await post_report(hub, key, report(patient, doctor1_id, report_id="LIS-200"))).json()["alert_ids"]
    page = await open_workstation(chromium, hub, "doctor1")

    def pages() -> None:
        page.get_by_role("menuitem", name="危急值警报").click()
        card = page.locator(".alerts-page .alert-card")
        expect(card).to_have_count(1)
        expect(card).to_contain_text("触发")
        expect(card).to_contain_text("已通知 李建国")
        page.goto(hub.base + f"/doctor/alerts/{alert_id}")
        one = page.locator(".alert-page .alert-card")
        expect(one).to_contain_text("血钾")
        one.get_by_role("button", name="确认收到").click()
        expect(one).to_contain_text("李建国 于")
        expect(one).to_contain_text("确认收到")
        expect(page.locator(".alert-banner")).to_have_count(0)

    await chromium.run(pages)
    assert csp_or_script_errors(chromium) == []

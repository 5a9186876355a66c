"""The doctor chooses their alert channels and quiet hours on the workstation (DOC-19, OUT-15; issue 18)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from playwright.sync_api import expect

from ..servers import Server, run_server
from .browser import DESKTOP, Chromium
from .conftest import sign_in_staff
from .test_patient_shell import csp_or_script_errors


def flip(page: Any, name: str) -> None:
    """Click an Element Plus switch (its input is hidden; the switch itself takes the click)."""
    page.locator(".el-switch", has=page.get_by_role("switch", name=name)).click()


@pytest.fixture
async def hub(database_url: str, built_pages: Path) -> AsyncIterator[Server]:
    with trio.fail_after(240):
        async with run_server(database_url) as srv:
            yield srv


async def test_the_doctor_orders_alert_channels_switches_one_off_and_sets_quiet_hours(
    chromium: Chromium, hub: Server,
) -> None:
    page = await chromium.page(**DESKTOP)

    def choose_settings() -> str:
        sign_in_staff(page, hub.base + "/doctor/settings/notices", "doctor2")
        expect(page.get_by_role("heading", name="提醒渠道")).to_be_visible()
        expect(page.get_by_text("危急值等临床警报总会通过全部渠道")).to_be_visible()
        channels = page.get_by_label("提醒渠道顺序").locator("li")
        expect(channels).to_have_count(2)
        expect(channels.nth(0)).to_contain_text("1. 微信")
        expect(channels.nth(1)).to_contain_text("2. 短信")
        page.get_by_role("button", name="短信上移").click()  # SMS first
        expect(channels.first).to_contain_text("1. 短信")
        flip(page, "工作提醒微信提醒")  # no work items by WeChat
        flip(page, "开启免打扰")
        page.get_by_role("button", name="保存").click()
        expect(page.get_by_text("通知设置已保存")).to_be_visible()
        # the page's own session (a second sign-in would need the next TOTP step)
        return str(page.evaluate("() => JSON.parse(sessionStorage.getItem('carehub.doctor.session')).token"))

    token = await chromium.run(choose_settings)
    async with hub.http(token) as http:
        prefs = (await http.get("/api/v1/me/notice-preferences")).json()
    assert prefs["channels"] == ["sms", "wechat"]
    assert prefs["off"] == {"work": ["wechat"]}
    assert (prefs["quiet_start"], prefs["quiet_end"]) == (22 * 60, 7 * 60)
    assert csp_or_script_errors(chromium) == []

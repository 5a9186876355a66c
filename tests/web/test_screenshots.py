"""A screenshot of every main page, for review by eye (``./scripts/shots [FOLDER]`` keeps them).

The patient app on a phone in normal and elder mode, the doctor workstation, the admin console
and a hall display on a PC. As a test it checks that every page renders its Chinese heading with
no script error or CSP violation; ``CAREHUB_SHOTS_DIR`` says where the pictures go (else a
temporary folder).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from ..servers import Server
from .browser import DESKTOP, PHONE, Chromium
from .conftest import sign_in_staff
from .test_patient_shell import csp_or_script_errors, departments, sign_in


def shots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CAREHUB_SHOTS_DIR") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def test_every_main_page_renders_for_a_screenshot(
    chromium: Chromium, sms_hub: tuple[Server, str], tmp_path: Path
) -> None:
    hub, gateway = sms_hub
    folder = shots_dir(tmp_path)
    department = (await departments(hub))[0]
    phone = await chromium.page(**PHONE)

    def shot(page: Page, name: str, *, idle: bool = True) -> None:
        if idle:  # the hall screen long-polls its calls: it never goes network-idle
            page.wait_for_load_state("networkidle")
        page.wait_for_timeout(300)  # transitions settle
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    def sign_in_page() -> None:
        phone.goto(hub.base + "/h5/login")
        expect(phone.get_by_role("heading", name="手机号登录")).to_be_visible()
        shot(phone, "h5-1-sign-in")

    await chromium.run(sign_in_page)
    await sign_in(chromium, phone, hub, gateway)

    def patient_pages(elder: bool) -> None:
        suffix = "elder" if elder else "normal"
        phone.goto(hub.base + "/h5/")
        switch = phone.get_by_role("switch", name=re.compile("长辈版"))
        if (switch.get_attribute("aria-checked") == "true") != elder:
            switch.click()
        expect(switch).to_have_attribute("aria-checked", "true" if elder else "false")
        phone.wait_for_timeout(2500)  # the sign-in toast is gone
        shot(phone, f"h5-2-home-{suffix}")
        phone.goto(f"{hub.base}/h5/departments/{department['id']}")
        expect(phone.get_by_role("heading", name=department["name"])).to_be_visible()
        shot(phone, f"h5-3-department-{suffix}")
        phone.goto(hub.base + "/h5/hospital")
        expect(phone.get_by_role("heading", name=re.compile("CareHub"))).to_be_visible()
        shot(phone, f"h5-4-hospital-{suffix}")
        for n, (path, title) in enumerate([
            ("/h5/booking", "预约挂号"), ("/h5/triage", "智能导诊"), ("/h5/bookings", "我的预约"),
            ("/h5/bills", "门诊缴费"), ("/h5/me/patients", "就诊人管理"), ("/h5/me/notices", "消息"),
            ("/h5/floors", "楼层导航"), ("/h5/me/notice-preferences", "通知设置"),
        ], start=5):
            phone.goto(hub.base + path)
            expect(phone).to_have_title(re.compile(f"^{title} - "))
            shot(phone, f"h5-{n}-{path.rsplit('/', 1)[-1]}-{suffix}")

    await chromium.run(patient_pages, False)
    await chromium.run(patient_pages, True)

    pc = await chromium.page(**DESKTOP)

    def staff_pages() -> None:
        pc.goto(hub.base + "/doctor/")
        expect(pc.get_by_role("heading", name="员工登录")).to_be_visible()
        shot(pc, "doctor-0-sign-in")
        sign_in_staff(pc, hub.base + "/doctor/", "doctor1")
        expect(pc.get_by_role("heading", name="医生工作站")).to_be_visible()
        shot(pc, "doctor-1-home")
        for n, (path, title) in enumerate([("/doctor/queue", "候诊叫号"), ("/doctor/roster", "我的排班")], start=2):
            pc.goto(hub.base + path)
            expect(pc).to_have_title(re.compile(f"^{title} - "))
            shot(pc, f"doctor-{n}-{path.rsplit('/', 1)[-1]}")
        sign_in_staff(pc, hub.base + "/admin/", "admin")
        expect(pc.get_by_role("heading", name="各科室医生数")).to_be_visible()
        expect(pc.get_by_role("img", name="各科室医生数")).to_be_visible()
        shot(pc, "admin-1-home")
        for n, (path, title) in enumerate([
            ("/admin/statistics", "预约与支付统计"), ("/admin/outpatient/rosters", "排班审批"),
            ("/admin/outpatient/bookings", "预约记录"), ("/admin/content/departments", "科室管理"),
            ("/admin/content/doctors", "医生管理"), ("/admin/system/audit", "审计日志"),
            ("/admin/messaging/templates", "消息模板"), ("/admin/messaging/channels", "消息渠道"),
            ("/admin/messaging/publish-rules", "推送权限"),
        ], start=2):
            pc.goto(hub.base + path)
            expect(pc).to_have_title(re.compile(f"^{title} - "))
            shot(pc, f"admin-{n}-{path.strip('/').replace('/', '-')}")
        pc.goto(f"{hub.base}/display/{department['id']}")
        expect(pc.get_by_role("heading", name=department["name"])).to_be_visible()
        expect(pc.get_by_role("region", name="当前叫号")).to_be_visible()
        shot(pc, "display-1-department", idle=False)

    await chromium.run(staff_pages)
    assert csp_or_script_errors(chromium) == []
    assert len(list(folder.glob("*.png"))) >= 33

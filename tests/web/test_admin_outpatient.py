"""The admin console's 门诊管理 pages in Chromium on a PC (issue 17): roster approvals, a session a
doctor cannot come to, booking records, the blacklist and the no-show rule.

SCH-3..7, SCH-10, SCH-12, DOC-27. Steps find things as a person does (by role, label and visible
Chinese text); what the page says is checked against the database and the patient's side.
Screenshots (1366 x 900) go to ``CAREHUB_SHOTS_DIR`` or /tmp/a2-shots.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

import trio
from playwright.sync_api import Page, expect

from carehub.actors.slot_pool import BEIJING, CloseSession, pool_address
from carehub.demo import DEMO_PASSWORD

from ..outpatient.helpers import beijing_now, book, self_patient
from ..outpatient.test_schedule_and_blacklist import approve_roster, free_clinic
from ..servers import Server
from .browser import DESKTOP, PHONE, Chromium
from .test_patient_shell import csp_or_script_errors, sign_in

SHOTS = Path(os.environ.get("CAREHUB_SHOTS_DIR") or "/tmp/a2-shots")


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(400)  # transitions settle
    page.screenshot(path=str(SHOTS / f"admin-outpatient-{name}.png"), full_page=True)


def sign_in_admin(page: Page, url: str, code: str) -> None:
    """``sign_in_staff`` with a TOTP code of the test's own source (``Server.totp``): the API calls of a
    test sign the admin in too, and the hub takes each 30-second step's code once."""
    page.goto(url)
    page.get_by_label("账号").fill("admin")
    page.get_by_label("密码", exact=True).fill(DEMO_PASSWORD)
    page.get_by_label("动态验证码").fill(code)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("button", name="退出")).to_be_visible(timeout=15_000)


def row(page: Page, *texts: str) -> Any:
    """The table row that shows every one of ``texts``."""
    found = page.locator(".el-table__body tr.el-table__row")
    for text in texts:
        found = found.filter(has_text=text)
    return found


def choose(page: Page, select: Any, option: str) -> None:
    """Pick ``option`` in an Element Plus select (its list opens in a layer of its own)."""
    select.click()
    page.locator(".el-select-dropdown__item:visible", has_text=option).first.click()


async def submit_roster(hub: Server, login: str, day: dt.date, room: str) -> dict[str, Any]:
    async with hub.http(await hub.token(login)) as http:
        response = await http.post("/api/v1/doctor/rosters", json={
            "kind": "extra", "reason": "夜间加诊",
            "sessions": [{"day": day.isoformat(), "period": "night", "room": room}]})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_admin_approves_a_roster_and_the_new_slots_appear_in_the_patient_app(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    """The acceptance point of issue 17; a rejection needs a reason and the doctor reads it (SCH-3, DOC-27)."""
    hub, gateway = sms_hub
    day = beijing_now().date() + dt.timedelta(days=3)
    doctor = await hub.account_id("doctor2")
    await submit_roster(hub, "doctor2", day, "夜诊2诊室")
    await submit_roster(hub, "doctor3", day, "夜诊5诊室")
    phone = await chromium.page(**PHONE)
    await sign_in(chromium, phone, hub, gateway)
    day_tab = re.compile(rf"{day.month}\/{day.day}$")  # the doctor page's day tabs read e.g. "周一 12/7"

    def open_the_doctors_day() -> Any:
        """The patient opens the doctor's page in the patient app and taps that day's tab."""
        phone.goto(hub.base + f"/h5/doctors/{doctor}")
        expect(phone.get_by_role("region", name="医生名片")).to_contain_text("王晓燕")
        phone.get_by_role("tab", name=day_tab).click()
        expect(phone.get_by_role("tab", name=day_tab)).to_have_attribute("aria-selected", "true")
        expect(phone).to_have_url(re.compile(rf"day={day.isoformat()}"))
        expect(phone.get_by_text("加载中…")).to_have_count(0)
        return phone.get_by_role("region", name="夜间门诊")

    def no_night_session_yet() -> None:
        night = open_the_doctors_day()
        expect(phone.get_by_role("region", name="上午门诊").or_(phone.get_by_role("region", name="下午门诊"))
               .or_(phone.get_by_text("这一天没有出诊"))).not_to_have_count(0)
        expect(night).to_have_count(0)
        assert "夜诊2诊室" not in phone.content()

    await chromium.run(no_night_session_yet)
    pc = await chromium.page(**DESKTOP)
    code = await hub.totp("admin")

    def approve() -> None:
        sign_in_admin(pc, hub.base + "/admin/outpatient/rosters", code)
        expect(pc.get_by_role("heading", name="排班审批")).to_be_visible()
        expect(pc.get_by_role("menuitem", name="排班审批")).to_be_visible()
        request = row(pc, "王晓燕")
        expect(request).to_contain_text(f"{day.isoformat()} 夜间 夜诊2诊室")
        expect(request).to_contain_text("待审批")
        shot(pc, "1-rosters")
        request.get_by_role("button", name="通过").click()
        pc.get_by_role("dialog").get_by_role("button", name="通过").click()
        expect(pc.get_by_text("已通过，已开放 1 个出诊时段")).to_be_visible()
        expect(row(pc, "王晓燕")).to_have_count(0)

    await chromium.run(approve)
    # what the slot pool now offers that day (the same answer the page reads)
    async with hub.http() as http:
        listed = (await http.get("/api/v1/sessions", params={
            "doctor": doctor, "from": day.isoformat(), "days": "1"})).json()["sessions"]
        pool = (await http.get(f"/api/v1/doctors/{doctor}/days/{day.isoformat()}")).json()
    night_listed = [s for s in listed if s["period"] == "night"]
    assert len(night_listed) == 1 and night_listed[0]["room"] == "夜诊2诊室"
    assert night_listed[0]["free"] == night_listed[0]["capacity"] > 0
    evening = next(s for s in pool["sessions"] if s["period"] == "night")
    assert evening["open_now"] and len(evening["free_slots"]) == evening["free"] == night_listed[0]["free"]
    times = [dt.datetime.fromisoformat(s["at"]).astimezone(BEIJING).strftime("%H:%M") for s in evening["free_slots"]]

    def the_night_session_with_its_free_times() -> None:
        night = open_the_doctors_day()
        expect(night).to_be_visible()
        expect(night.get_by_role("heading")).to_contain_text("夜诊2诊室")
        free = night.get_by_role("group", name="夜间可预约时间").get_by_role("button")
        expect(free).to_have_count(len(times))
        expect(free).to_have_text(times)
        shot(phone, "6-patient-night-session")
        # a free time can be chosen: the booking sheet names that time and room
        free.first.click()
        sheet = phone.locator(".confirm")
        expect(sheet).to_contain_text(f"{day.isoformat()} 夜间 {times[0]} · 夜诊2诊室")
        expect(sheet.get_by_role("button", name="确认预约")).to_be_visible()

    await chromium.run(the_night_session_with_its_free_times)

    def reject() -> None:
        request = row(pc, "张明")
        request.get_by_role("button", name="驳回").click()
        dialog = pc.get_by_role("dialog", name="驳回排班申请")
        dialog.get_by_role("button", name="确认驳回").click()
        expect(dialog.get_by_role("alert")).to_contain_text("请填写驳回原因")
        dialog.get_by_label("驳回原因").fill("夜诊诊室不足")
        shot(pc, "2-reject-with-reason")
        dialog.get_by_role("button", name="确认驳回").click()
        expect(dialog).to_be_hidden()
        pc.locator(".el-radio-button", has_text="已驳回").click()
        expect(row(pc, "张明")).to_contain_text("驳回原因：夜诊诊室不足")
        pc.locator(".el-radio-button", has_text="已通过").click()
        expect(row(pc, "王晓燕")).to_contain_text("已通过")

    await chromium.run(reject)
    async with hub.http(await hub.token("doctor3")) as http:
        mine = (await http.get("/api/v1/doctor/rosters")).json()["rosters"]
    assert (mine[0]["status"], mine[0]["decision_reason"]) == ("rejected", "夜诊诊室不足")
    assert csp_or_script_errors(chromium) == []


async def test_cancelling_a_session_says_how_many_patients_were_told(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    """SCH-6, SCH-12: the count on the page is the number of bookings cancelled and told; a substitute too."""
    hub, _ = sms_hub
    day = beijing_now().date() + dt.timedelta(days=2)
    for login, period, room, patients in (("doctor4", "am", "儿科3诊室", ["patient1", "patient2", "patient3"]),
                                           ("doctor1", "pm", "心内科1诊室", ["patient4", "patient2"])):
        await free_clinic(hub, login)
        await approve_roster(hub, login, [{"day": day.isoformat(), "period": period, "room": room}])
        for patient in patients:
            assert (await book(hub, patient, login, day, period)).status_code == 201
    cancelled_session = f"{await hub.account_id('doctor4')}:{day.isoformat()}:am"
    pc = await chromium.page(**DESKTOP)
    code = await hub.totp("admin")

    def cancel() -> str:
        sign_in_admin(pc, hub.base + "/admin/outpatient/sessions", code)
        expect(pc.get_by_role("heading", name="停诊与替诊")).to_be_visible()
        session = row(pc, "陈静", "儿科3诊室")
        expect(session).to_contain_text("3 / ")
        shot(pc, "3-sessions")
        session.get_by_role("button", name="停诊").click()
        dialog = pc.get_by_role("dialog", name="停诊")
        expect(dialog).to_contain_text("已有 3 位患者预约")
        dialog.get_by_role("button", name="确认停诊").click()
        expect(dialog.get_by_role("alert").filter(has_text="请填写停诊原因")).to_be_visible()
        dialog.get_by_label("停诊原因").fill("医生临时生病")
        shot(pc, "4-cancel-dialog")
        dialog.get_by_role("button", name="确认停诊").click()
        told = pc.get_by_role("status").filter(has_text="已停诊")
        expect(told).to_contain_text(re.compile(r"已通知 \d+ 位患者"))
        expect(row(pc, "陈静", "儿科3诊室")).to_contain_text("已停诊")
        shot(pc, "5-cancelled")
        return told.inner_text()

    text = await chromium.run(cancel)
    match = re.search(r"已通知 (\d+) 位患者", text)
    assert match is not None
    cancelled = await hub.app.services.db.fetchval(
        "SELECT count(*) FROM bookings WHERE session_id = $1 AND status = 'cancelled'", cancelled_session)
    assert int(match.group(1)) == cancelled == 3
    assert "医生临时生病" in (await hub.notices("patient3", "booking.cancelled"))[0]["body"]

    def substitute() -> str:
        session = row(pc, "李建国", "心内科1诊室")
        session.get_by_role("button", name="替诊").click()
        dialog = pc.get_by_role("dialog", name="替诊")
        expect(dialog).to_contain_text("已有 2 位患者预约")
        choose(pc, dialog.locator(".el-select"), "王晓燕")
        dialog.get_by_label("替诊原因").fill("外出会诊")
        dialog.get_by_role("button", name="确认替诊").click()
        told = pc.get_by_role("status").filter(has_text="替诊")
        expect(told).to_contain_text("已改由王晓燕医生替诊，已通知 2 位患者")
        expect(row(pc, "李建国", "心内科1诊室")).to_contain_text("王晓燕 替诊")
        return told.inner_text()

    await chromium.run(substitute)
    assert "王晓燕" in (await hub.notices("patient4", "booking.substituted"))[0]["body"]
    assert csp_or_script_errors(chromium) == []


async def test_booking_records_filter_by_doctor_and_day_and_match_the_database(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    """SCH-7: the records the page lists for a doctor and a visit day are those in the database."""
    hub, _ = sms_hub
    day = beijing_now().date() + dt.timedelta(days=1)
    later = day + dt.timedelta(days=3)
    await free_clinic(hub, "doctor5")
    await free_clinic(hub, "doctor6")
    await approve_roster(hub, "doctor5", [{"day": d.isoformat(), "period": "am"} for d in (day, later)])
    await approve_roster(hub, "doctor6", [{"day": day.isoformat(), "period": "am"}])
    bookings = [("patient1", "doctor5", day), ("patient2", "doctor5", day), ("patient3", "doctor5", day),
                ("patient4", "doctor5", later), ("patient4", "doctor6", day)]
    for login, doctor, when in bookings:
        assert (await book(hub, login, doctor, when)).status_code == 201
    doctor_id = await hub.account_id("doctor5")
    rows = await hub.app.services.db.fetch(
        "SELECT patient_id FROM bookings WHERE doctor_id = $1 AND day = $2", doctor_id, day)
    pc = await chromium.page(**DESKTOP)
    code = await hub.totp("admin")

    def search() -> list[str]:
        sign_in_admin(pc, hub.base + "/admin/outpatient/bookings", code)
        expect(pc.get_by_role("heading", name="预约记录")).to_be_visible()
        expect(pc.get_by_role("status")).to_contain_text("共 5 条预约记录")
        choose(pc, pc.locator(".el-form-item", has_text="医生").locator(".el-select"), "刘洋")
        start = pc.get_by_placeholder("开始日期")
        start.fill(day.isoformat())
        end = pc.get_by_placeholder("结束日期")
        end.fill(day.isoformat())
        end.press("Enter")
        pc.get_by_role("button", name="查询").click()
        expect(pc.get_by_role("status")).to_contain_text("共 3 条预约记录")
        listed = row(pc, day.isoformat())
        expect(listed).to_have_count(3)
        expect(row(pc, "赵丽")).to_have_count(0)
        shot(pc, "6-bookings")
        return [r.inner_text() for r in listed.all()]

    texts = await chromium.run(search)
    assert all("刘洋" in t and "已预约" in t for t in texts)
    assert sorted(name for t in texts for name in ("张*", "李*", "王*") if name in t) == ["张*", "李*", "王*"]
    assert sorted(next(p for p in (r["patient_id"] for r in rows) if p in t) for t in texts) == sorted(
        r["patient_id"] for r in rows)

    def by_patient() -> str:
        first = row(pc, day.isoformat()).first
        patient = first.get_by_role("button").inner_text()
        first.get_by_role("button").click()  # the patient's id: only their bookings (with the doctor and day)
        expect(pc.get_by_role("status")).to_contain_text("共 1 条预约记录")
        expect(row(pc, patient)).to_have_count(1)
        return patient

    assert await chromium.run(by_patient) in {r["patient_id"] for r in rows}
    assert csp_or_script_errors(chromium) == []


async def test_lifting_a_blacklist_entry_asks_for_a_reason_and_the_current_no_show_rule_is_shown(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    """SCH-10: the rule in force is on the page and can be changed; lifting needs a reason (kept)."""
    hub, _ = sms_hub
    await free_clinic(hub, "doctor5")
    async with hub.http(await hub.token("admin")) as admin:
        assert (await admin.put("/api/v1/admin/no-show-rule", json={
            "max_no_shows": 1, "window_days": 60, "ban_days": 20})).status_code == 200
    day = beijing_now().date() + dt.timedelta(days=1)
    await approve_roster(hub, "doctor5", [{"day": day.isoformat(), "period": "am"}])
    assert (await book(hub, "patient1", "doctor5", day)).status_code == 201
    closed = await hub.app.services.hub.ask(pool_address(await hub.account_id("doctor5"), day), CloseSession("am"))
    assert len(closed["no_shows"]) == 1
    patient = await self_patient(hub, "patient1")
    with trio.fail_after(10):
        while not await hub.app.services.outpatient.bookings.blacklisted(patient, dt.datetime.now(dt.UTC)):
            await trio.sleep(0.1)
    pc = await chromium.page(**DESKTOP)
    code = await hub.totp("admin")

    def lift() -> None:
        sign_in_admin(pc, hub.base + "/admin/outpatient/blacklist", code)
        expect(pc.get_by_role("heading", name="爽约规则")).to_be_visible()
        expect(pc.get_by_text("当前规则：60 天内爽约 1 次，限制预约 20 天")).to_be_visible()
        entry = row(pc, patient)
        expect(entry).to_contain_text("限制中")
        expect(entry).to_contain_text("张*")  # 张三, masked
        shot(pc, "7-blacklist")
        entry.get_by_role("button", name="解除").click()
        box = pc.get_by_role("dialog", name="解除黑名单")
        expect(box).to_contain_text("请填写解除原因")
        box.get_by_role("button", name="解除").click()
        expect(box.locator(".el-message-box__errormsg")).to_have_text("请填写解除原因")
        box.get_by_role("textbox").fill("患者已说明情况")
        shot(pc, "8-lift-reason")
        box.get_by_role("button", name="解除").click()
        expect(pc.get_by_text("已解除，该患者可以再次预约")).to_be_visible()
        expect(row(pc, patient)).to_have_count(0)
        pc.get_by_text("含已解除和已到期").click()
        expect(pc.get_by_role("switch", name="含已解除和已到期")).to_be_checked()
        expect(row(pc, patient)).to_contain_text("已解除")
        expect(row(pc, patient)).to_contain_text("患者已说明情况")
        counts = pc.locator(".el-form-item", has_text="爽约次数").locator("input")
        counts.fill("2")
        counts.press("Tab")
        pc.get_by_role("button", name="保存规则").click()
        expect(pc.get_by_text("当前规则：60 天内爽约 2 次，限制预约 20 天")).to_be_visible()

    await chromium.run(lift)
    entry = await hub.app.services.db.fetchrow("SELECT removed_at, removal_reason FROM blacklist WHERE patient_id = $1",
                                               patient)
    assert entry["removed_at"] is not None and entry["removal_reason"] == "患者已说明情况"
    assert not await hub.app.services.outpatient.bookings.blacklisted(patient, dt.datetime.now(dt.UTC))
    rule = await hub.app.services.db.fetchrow("SELECT max_no_shows, window_days FROM no_show_rule")
    assert (rule["max_no_shows"], rule["window_days"]) == (2, 60)
    assert csp_or_script_errors(chromium) == []


async def test_a_slot_rule_set_in_the_console_shapes_the_sessions_of_a_roster_submitted_and_approved_there(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    """SCH-2, SCH-3: the rule saved on 号源规则 (15-minute slots, ¥30) gives the slots of the roster an admin
    submits for the doctor on 排班审批 and approves."""
    hub, _ = sms_hub
    day = beijing_now().date() + dt.timedelta(days=4)
    doctor = await hub.account_id("doctor2")
    pc = await chromium.page(**DESKTOP)
    code = await hub.totp("admin")

    def set_rule_and_submit() -> None:
        sign_in_admin(pc, hub.base + "/admin/outpatient/slot-rules", code)
        expect(pc.get_by_role("heading", name="号源规则")).to_be_visible()
        choose(pc, pc.locator(".panel__bar .el-select"), "王晓燕")
        slot = pc.locator(".el-form-item", has_text="每号时长").locator(".el-select")
        expect(slot).to_contain_text("10 分钟")
        choose(pc, slot, "15 分钟")
        fee = pc.locator(".el-form-item", has_text="挂号费").locator("input")
        fee.fill("30")
        fee.press("Tab")
        shot(pc, "9-slot-rule")
        pc.get_by_role("button", name="保存").click()
        expect(pc.get_by_text("已保存王晓燕的号源规则")).to_be_visible()

        pc.get_by_role("menuitem", name="排班审批").click()
        pc.get_by_role("button", name="为医生提交排班").click()
        dialog = pc.get_by_role("dialog", name="为医生提交排班")
        dialog.get_by_role("button", name="提交").click()
        expect(dialog.get_by_role("alert")).to_contain_text("请选择医生")
        choose(pc, dialog.locator(".el-form-item", has_text="医生").locator(".el-select").first, "王晓燕")
        when = dialog.locator(".sessions__day input")
        when.fill(day.isoformat())
        when.press("Enter")
        dialog.get_by_placeholder("诊室").fill("5诊室")
        shot(pc, "10-submit-roster")
        dialog.get_by_role("button", name="提交").click()
        expect(pc.get_by_text("排班申请已提交，待审批")).to_be_visible()
        request = row(pc, "王晓燕", f"{day.isoformat()} 上午 5诊室")
        expect(request).to_contain_text("常规排班")
        request.get_by_role("button", name="通过").click()
        pc.get_by_role("dialog").get_by_role("button", name="通过").click()
        expect(pc.get_by_text("已通过，已开放 1 个出诊时段")).to_be_visible()

    await chromium.run(set_rule_and_submit)
    async with hub.http() as http:
        pool = (await http.get(f"/api/v1/doctors/{doctor}/days/{day.isoformat()}")).json()
    morning = next(s for s in pool["sessions"] if s["period"] == "am")
    assert (morning["slot_minutes"], morning["capacity"], morning["fee_fen"]) == (15, 16, 3000)  # 4 hours of 15 min
    assert morning["room"] == "5诊室"
    assert csp_or_script_errors(chromium) == []


async def test_an_approval_the_slot_pool_refuses_shows_the_servers_message_and_the_request_stays_pending(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    """A failed call shows the server's Chinese message (SCH-3): an extra session smaller than the one
    already open cannot be approved; the request stays 待审批 to be rejected or approved later."""
    hub, _ = sms_hub
    day = beijing_now().date() + dt.timedelta(days=5)
    await approve_roster(hub, "doctor3", [{"day": day.isoformat(), "period": "am", "capacity": 20}])
    async with hub.http(await hub.token("doctor3")) as http:
        response = await http.post("/api/v1/doctor/rosters", json={
            "kind": "extra", "sessions": [{"day": day.isoformat(), "period": "am", "capacity": 5}]})
    assert response.status_code == 201, response.text
    pc = await chromium.page(**DESKTOP)
    code = await hub.totp("admin")

    def approve() -> None:
        sign_in_admin(pc, hub.base + "/admin/outpatient/rosters", code)
        request = row(pc, "张明", f"{day.isoformat()} 上午")
        request.get_by_role("button", name="通过").click()
        pc.get_by_role("dialog").get_by_role("button", name="通过").click()
        expect(pc.locator(".el-message--error")).to_contain_text("审批未完成")
        shot(pc, "11-approval-refused")
        expect(row(pc, "张明", f"{day.isoformat()} 上午")).to_contain_text("待审批")

    await chromium.run(approve)
    status = await hub.app.services.db.fetchval("SELECT status FROM rosters WHERE id = $1", response.json()["id"])
    assert status == "submitted"
    assert csp_or_script_errors(chromium) == []

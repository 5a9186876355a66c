"""The booking journey in the patient app (H5) on a phone, against a hub with the SMS and WeChat Pay
simulators: sign in by SMS -> find a doctor -> book -> pay -> the visit code -> check in -> a doctor
(a second browser context: the doctor workstation's buttons) calls the next patient and the
patient's place moves on screen without a reload -> seen. Also: cancelling from my bookings, a
refused booking's Chinese message, and the triage picker leading to a department.

Issue 17; features OUT-1, OUT-2, OUT-3, OUT-6, OUT-8, OUT-11, OUT-12, ME-5. The clinic session of
the visit day is opened as roster approval opens one (a system message to the doctor's slot pool,
as tests/outpatient do), starting a few minutes from now so that check-in is inside its window.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio
from playwright.sync_api import Page, expect

from carehub.actors.slot_pool import BEIJING, OpenSession, pool_address
from carehub.bots.pay_gateway import GatewayHandle, serve_pay_gateway

from ..identity.test_sign_in import hospital
from ..outpatient.conftest import SETTINGS
from ..outpatient.helpers import plan
from ..servers import Server
from .browser import DESKTOP, PHONE, Chromium
from .conftest import sign_in_staff, sms_code
from .test_patient_shell import csp_or_script_errors, measure, sign_in

SHOTS = Path("/tmp/p1-shots")
FEE_FEN = 500


@dataclasses.dataclass
class Hospital:
    hub: Server
    sms: str
    pay: GatewayHandle


@pytest.fixture
async def booking_hub(database_url: str, built_pages: Path, nursery: trio.Nursery) -> AsyncIterator[Hospital]:
    """CareHub serving the pages, with the SMS gateway and the WeChat Pay simulators."""
    pay: GatewayHandle = await nursery.start(functools.partial(serve_pay_gateway, port=0, settings=SETTINGS))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with trio.fail_after(240):
        async with hospital(
            database_url, port=port, pay_url=pay.base_url, pay_mchid=pay.mchid, pay_appid=pay.appid,
            pay_merchant_serial=pay.merchant_serial, pay_merchant_key_pem=pay.merchant_private_key_pem,
            pay_platform_key_id=pay.platform_key_id, pay_platform_public_key_pem=pay.platform_public_key_pem,
            pay_apiv3_key=pay.apiv3_key, pay_notify_url=f"http://127.0.0.1:{port}/api/v1/payments/wechat/notify",
        ) as (hub, sms):
            yield Hospital(hub, sms, pay)


# ---- arranging the hospital -------------------------------------------------------------------


async def doctor_id(hub: Server, name: str) -> str:
    """A demo doctor's account id from the public directory (no sign-in: it would spend a TOTP step)."""
    async with hub.http() as http:
        doctors = (await http.get("/api/v1/doctors")).json()["doctors"]
    return str(next(d["id"] for d in doctors if d["name"] == name))


async def open_clinic(hub: Server, doctor: str, name: str, start: dt.datetime, *, period: str, capacity: int = 20,
                      fee_fen: int = FEE_FEN, department: str = "cardio", room: str = "心内科3诊室") -> None:
    """Open a session as roster approval does (a system message to the doctor's slot pool)."""
    planned = plan(start.date(), period=period, start=start, capacity=capacity, fee_fen=fee_fen)
    session = msgspec.structs.replace(planned, department_id=department, room=room)
    await hub.app.services.hub.ask(pool_address(doctor, start.date()), OpenSession(session, doctor_name=name))


def soon(minutes: int) -> dt.datetime:
    start = (dt.datetime.now(BEIJING) + dt.timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    if start.date() != dt.datetime.now(BEIJING).date():
        pytest.skip("too close to midnight in Beijing for a same-day session")
    return start


async def self_patient(hub: Server, token: str) -> str:
    async with hub.http(token) as http:
        patients = (await http.get("/api/v1/me/patients")).json()["patients"]
    return str(next(p["id"] for p in patients if p["relation"] == "self"))


async def api_book(hub: Server, login: str, doctor: str, day: dt.date, period: str) -> httpx.Response:
    token = await hub.token(login)
    patient = await self_patient(hub, token)
    async with hub.http(token) as http:
        return await http.post("/api/v1/me/bookings", json={
            "patient_id": patient, "doctor_id": doctor, "day": day.isoformat(), "period": period})


async def pay_in_wechat(pay: GatewayHandle, out_trade_no: str) -> None:
    """The patient confirms the payment in WeChat (the simulator's stand-in for its cashier page)."""
    async with httpx.AsyncClient(base_url=pay.base_url) as sim:
        response = await sim.post(f"/_sim/orders/{out_trade_no}/pay", json={"outcome": "SUCCESS"})
        assert response.status_code == 200, response.text


async def booking_status(hub: Server, token: str, booking_id: str) -> dict[str, Any]:
    async with hub.http(token) as http:
        return dict((await http.get(f"/api/v1/me/bookings/{booking_id}")).json())


async def checked_in_ahead(hub: Server, pay: GatewayHandle, doctor: str, day: dt.date, period: str) -> str:
    """李四 (patient2) books the first slot, pays and checks in: the patient on screen waits behind."""
    token = await hub.token("patient2")
    booked = await api_book(hub, "patient2", doctor, day, period)
    assert booked.status_code == 201, booked.text
    booking_id = booked.json()["booking_id"]
    async with hub.http(token) as http:
        started = await http.post(f"/api/v1/me/bookings/{booking_id}/pay", json={"method": "self"})
        assert started.status_code == 200, started.text
    await pay_in_wechat(pay, started.json()["order"]["out_trade_no"])
    with trio.fail_after(15):
        while (booking := await booking_status(hub, token, booking_id))["status"] != "booked":
            await trio.sleep(0.1)
    async with hub.http(token) as http:
        checked = await http.post(f"/api/v1/me/bookings/{booking_id}/check-in", json={"code": booking["visit_code"]})
        assert checked.status_code == 200, checked.text
    return str(booking_id)


# ---- the doctor (a second browser context, a PC) ------------------------------------------------


def doctor_opens_the_queue(doctor: Page, base: str, day: dt.date, period: str) -> None:
    """On the browser thread: the doctor signs in to the workstation (password + TOTP) and opens the session's queue."""
    sign_in_staff(doctor, f"{base}/doctor/queue?day={day.isoformat()}&period={period}", "doctor1")
    expect(doctor.get_by_test_id("calling")).to_be_visible(timeout=15_000)


def doctor_presses(doctor: Page, button: str, now_calling: str) -> None:
    """On the browser thread: the doctor presses 叫下一位 / 就诊完成 and the workstation shows who is now seen."""
    doctor.get_by_role("button", name=button).click()
    expect(doctor.get_by_test_id("calling")).to_contain_text(now_calling, timeout=10_000)


# ---- the tests ------------------------------------------------------------------------------------


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def no_reload_marker(page: Page) -> None:
    page.evaluate("window.__sameDocument = true")


def same_document(page: Page) -> bool:
    return bool(page.evaluate("window.__sameDocument === true"))


async def test_a_patient_books_pays_checks_in_and_follows_the_queue_live(
    chromium: Chromium, booking_hub: Hospital
) -> None:
    hub, pay = booking_hub.hub, booking_hub.pay
    lee = await doctor_id(hub, "李建国")
    start = soon(10)
    period = "night"
    await open_clinic(hub, lee, "李建国", start, period=period)
    await checked_in_ahead(hub, pay, lee, start.date(), period)

    page = await chromium.page(**PHONE)
    await sign_in(chromium, page, hub, booking_hub.sms)

    def find_and_book() -> None:
        shot(page, "01-home")
        page.get_by_role("link", name="预约挂号").click()
        page.get_by_placeholder("搜索医生姓名或擅长疾病").fill("李建国")
        page.get_by_placeholder("搜索医生姓名或擅长疾病").press("Enter")
        doctor = page.get_by_role("link", name=re.compile("李建国"))
        expect(doctor).to_contain_text("夜间 余号 19")
        shot(page, "02-search")
        doctor.click()
        expect(page.get_by_role("heading", name=re.compile("李建国"))).to_be_visible()
        slots = page.get_by_role("group", name="夜间可预约时间").get_by_role("button")
        expect(slots.first).to_have_text((start + dt.timedelta(minutes=10)).strftime("%H:%M"))
        shot(page, "03-doctor-day")
        slots.first.click()
        sheet = page.get_by_role("dialog", name="确认预约")
        expect(sheet.get_by_text("张*", exact=True)).to_be_visible()
        expect(sheet.get_by_role("radio").first).to_have_attribute("aria-checked", "true")  # the default patient
        shot(page, "04-confirm")
        sheet.get_by_role("button", name="确认预约").click()
        expect(page.get_by_text("待支付", exact=True)).to_be_visible()
        page.get_by_role("button", name="去支付").click()
        expect(page.get_by_text("等待支付结果…")).to_be_visible()
        shot(page, "05-paying")

    await chromium.run(find_and_book)
    token = await chromium.run(lambda: str(page.evaluate(
        "JSON.parse(localStorage.getItem('carehub.h5.session')).token")))
    booking_id = await chromium.run(lambda: page.url.rsplit("/", 1)[-1])
    order = (await booking_status(hub, token, booking_id))["order"]
    assert order["method"] == "self" and order["total_fen"] == FEE_FEN
    await pay_in_wechat(pay, order["out_trade_no"])

    def paid_and_checked_in() -> None:
        expect(page.get_by_text("已预约", exact=True)).to_be_visible(timeout=15_000)
        qr = page.get_by_role("img", name="就诊二维码")
        expect(qr).to_be_visible()
        assert str(qr.get_attribute("src")).startswith("data:image/svg+xml")
        assert qr.evaluate("(img) => img.naturalWidth") > 0, "the QR image did not render"
        shot(page, "06-visit-code")
        page.get_by_role("button", name="我已到院，签到").click()
        queue = page.get_by_role("region", name="候诊队列")
        expect(queue).to_contain_text("您排在第 2 位", timeout=10_000)
        expect(queue).to_contain_text("预计等待约")
        # "near your turn" comes through the delivery stream (3 places ahead or fewer)
        expect(queue.get_by_role("alert")).to_contain_text("前面还有 1 位")
        expect(page.get_by_text("已签到", exact=True)).to_be_visible()
        shot(page, "07-queue-2")
        no_reload_marker(page)

    await chromium.run(paid_and_checked_in)

    doctor = await chromium.page(**DESKTOP)
    await chromium.run(doctor_opens_the_queue, doctor, hub.base, start.date(), period)
    await chromium.run(doctor_presses, doctor, "叫下一位", "李*")  # 李四, checked in ahead

    def moved_up() -> None:
        queue = page.get_by_role("region", name="候诊队列")
        expect(queue).to_contain_text("您排在第 1 位", timeout=10_000)
        assert same_document(page), "the page was reloaded"
        shot(page, "08-queue-1")

    await chromium.run(moved_up)

    def offline() -> None:
        page.context.set_offline(True)
        expect(page.get_by_role("status").first).to_contain_text("网络已断开")

    await chromium.run(offline)
    # called while the phone is offline: back online, the page reads what moved meanwhile
    await chromium.run(doctor_presses, doctor, "叫下一位", "张*")  # the patient on the phone

    def called_in() -> None:
        queue = page.get_by_role("region", name="候诊队列")
        expect(queue).to_contain_text("您排在第 1 位")  # what it knew stays on screen
        page.context.set_offline(False)
        expect(page.get_by_role("status").first).to_have_text("", timeout=20_000)
        expect(queue).to_contain_text("请到 心内科3诊室 就诊", timeout=10_000)
        assert same_document(page), "the page was reloaded"
        shot(page, "09-called")

    await chromium.run(called_in)
    await chromium.run(doctor_presses, doctor, "就诊完成", "暂无")

    def seen() -> None:
        expect(page.get_by_role("region", name="候诊队列")).to_contain_text("已就诊", timeout=10_000)
        expect(page.get_by_text("已就诊", exact=True).first).to_be_visible()
        pathway = page.get_by_role("region", name="就诊流程")
        expect(pathway).to_contain_text("请查看并缴纳检查、药品费用", timeout=10_000)
        assert same_document(page), "the page was reloaded"
        shot(page, "10-seen")

    await chromium.run(seen)

    def elder_mode() -> None:
        page.evaluate("localStorage.setItem('carehub.h5.elder', '1')")
        page.reload()
        expect(page.get_by_role("region", name="候诊队列")).to_contain_text("已就诊")
        assert measure(page, page.get_by_text(re.compile("^就诊时间")))["fontSize"] >= 18
        shot(page, "11-seen-elder")
        page.goto(f"{hub.base}/h5/doctors/{lee}")
        expect(page.get_by_role("heading", name=re.compile("李建国"))).to_be_visible()
        shot(page, "12-doctor-elder")
        page.goto(f"{hub.base}/h5/bookings")
        expect(page.get_by_role("link", name=re.compile("李建国医生"))).to_be_visible()
        shot(page, "13-my-bookings-elder")
        page.goto(f"{hub.base}/h5/booking")
        expect(page.get_by_role("link", name=re.compile("李建国"))).to_be_visible()
        shot(page, "14-search-elder")
        page.goto(f"{hub.base}/h5/bookings")
        page.get_by_role("button", name="今日就诊助手").click()
        visit = page.get_by_role("region", name="李建国医生")
        expect(visit).to_contain_text("下一步：请查看并缴纳检查、药品费用")
        shot(page, "16-visits-today-elder")

    await chromium.run(elder_mode)
    assert csp_or_script_errors(chromium) == []

    # the answers the pages read are the shapes their routes declare (OpenAPI response=)
    specs = {(s.method, s.path): s.response for s in hub.app.router.specs if s.response is not None}
    day = start.date().isoformat()
    async with hub.http(token) as http:
        for path, route in [
            (f"/api/v1/sessions?doctor={lee}", "/api/v1/sessions"),
            (f"/api/v1/doctors/{lee}/days/{day}", "/api/v1/doctors/<doctor_id>/days/<day>"),
            (f"/api/v1/doctors/{lee}/card", "/api/v1/doctors/<doctor_id>/card"),
            ("/api/v1/me/bookings", "/api/v1/me/bookings"),
            (f"/api/v1/me/bookings/{booking_id}", "/api/v1/me/bookings/<booking_id>"),
            (f"/api/v1/me/bookings/{booking_id}/queue", "/api/v1/me/bookings/<booking_id>/queue"),
            ("/api/v1/me/visits/today", "/api/v1/me/visits/today"),
        ]:
            answer = await http.get(path)
            assert answer.status_code == 200, (path, answer.text)
            msgspec.json.decode(answer.content, type=specs[("GET", route)])


async def test_a_patient_pays_with_medical_insurance_and_cash(chromium: Chromium, booking_hub: Hospital) -> None:
    """OUT-6 mixed: the 医保电子凭证 authorization and the HIS pre-settlement come back to the booking
    page (payAuthNo, payOrdId, insFen in its address); the patient pays the rest in WeChat."""
    hub, pay = booking_hub.hub, booking_hub.pay
    chen = await doctor_id(hub, "陈静")
    tomorrow = dt.datetime.combine(dt.datetime.now(BEIJING).date() + dt.timedelta(days=1), dt.time(8, 0), BEIJING)
    await open_clinic(hub, chen, "陈静", tomorrow, period="am", fee_fen=1000, department="peds", room="儿科1诊室")
    booked = await api_book(hub, "patient1", chen, tomorrow.date(), "am")
    assert booked.status_code == 201 and booked.json()["status"] == "held", booked.text
    booking_id = booked.json()["booking_id"]
    async with httpx.AsyncClient(base_url=pay.base_url) as sim:
        auth = (await sim.post("/_sim/nhsa/auth", json={})).json()["pay_auth_no"]
        pre = (await sim.post("/_sim/nhsa/presettle", json={
            "pay_auth_no": auth, "total_fee": 1000, "med_ins_gov_fee": 600, "med_ins_self_fee": 0,
            "med_ins_other_fee": 0, "med_ins_cash_fee": 400})).json()
    page = await chromium.page(**PHONE)
    await sign_in(chromium, page, hub, booking_hub.sms)

    def pay_mixed() -> None:
        page.goto(f"{hub.base}/h5/bookings/{booking_id}?payAuthNo={auth}&payOrdId={pre['pay_order_id']}&insFen=600")
        expect(page.get_by_text("待支付", exact=True)).to_be_visible()
        page.get_by_text("医保 + 自费").click()
        expect(page.get_by_text("医保 ¥6.00 + 自费 ¥4.00")).to_be_visible()
        shot(page, "15-mixed")
        page.get_by_role("button", name="去支付").click()
        expect(page.get_by_text("等待支付结果…")).to_be_visible()

    await chromium.run(pay_mixed)
    token = await hub.token("patient1")
    order = (await booking_status(hub, token, booking_id))["order"]
    assert (order["method"], order["insurance_fen"], order["cash_fen"]) == ("mixed", 600, 400)
    await pay_in_wechat(pay, order["out_trade_no"])

    def confirmed() -> None:
        expect(page.get_by_text("已预约", exact=True)).to_be_visible(timeout=15_000)
        expect(page.get_by_role("img", name="就诊二维码")).to_be_visible()

    await chromium.run(confirmed)
    assert csp_or_script_errors(chromium) == []


async def test_a_patient_cancels_a_booking_from_my_bookings(chromium: Chromium, booking_hub: Hospital) -> None:
    """ME-5: a booking of tomorrow is cancelled after a confirmation; one whose visit time has come
    cannot be, and the server's Chinese reason is shown."""
    hub = booking_hub.hub
    zhang, liu = await doctor_id(hub, "张明"), await doctor_id(hub, "刘洋")
    tomorrow = dt.datetime.combine(dt.datetime.now(BEIJING).date() + dt.timedelta(days=1), dt.time(8, 0), BEIJING)
    await open_clinic(hub, zhang, "张明", tomorrow, period="am", fee_fen=0, department="resp", room="呼吸科2诊室")
    booked = await api_book(hub, "patient1", zhang, tomorrow.date(), "am")
    assert booked.status_code == 201 and booked.json()["status"] == "booked", booked.text
    # a visit starting at the next full minute: booked now, its time has come by the time the patient cancels
    now = dt.datetime.now(BEIJING)
    starts = (now + dt.timedelta(seconds=70)).replace(second=0, microsecond=0)
    if starts.date() != now.date():
        pytest.skip("too close to midnight in Beijing for a same-day session")
    await open_clinic(hub, liu, "刘洋", starts, period="pm", fee_fen=0, department="ortho", room="骨科1诊室")
    due = await api_book(hub, "patient1", liu, starts.date(), "pm")
    assert due.status_code == 201, due.text
    page = await chromium.page(**PHONE)
    await sign_in(chromium, page, hub, booking_hub.sms)

    def cancel() -> None:
        page.get_by_role("link", name="预约记录").click()
        item = page.get_by_role("listitem", name=re.compile("张明医生"))
        expect(item).to_contain_text("已预约")
        item.get_by_role("button", name="取消预约").click()
        dialog = page.get_by_role("dialog").filter(has_text="确定取消")
        expect(dialog).to_contain_text("张明医生")
        shot(page, "20-cancel-confirm")
        dialog.get_by_role("button", name="取消预约").click()
        expect(item).to_contain_text("已取消")
        expect(item.get_by_role("button", name="取消预约")).to_have_count(0)
        shot(page, "21-cancelled")

    await chromium.run(cancel)
    token = await hub.token("patient1")
    assert (await booking_status(hub, token, booked.json()["booking_id"]))["status"] == "cancelled"
    with trio.fail_after(90):
        while dt.datetime.now(BEIJING) < starts + dt.timedelta(seconds=1):
            await trio.sleep(0.5)

    def too_late() -> None:
        item = page.get_by_role("listitem", name=re.compile("刘洋医生"))
        item.get_by_role("button", name="取消预约").click()
        page.get_by_role("dialog").filter(has_text="确定取消").get_by_role("button", name="取消预约").click()
        refusal = page.get_by_role("dialog").filter(has_text="无法取消")
        expect(refusal).to_contain_text("就诊时间已到, 不能取消")
        expect(refusal).not_to_contain_text("too late")  # the operators' English stays out
        shot(page, "22-too-late")
        refusal.get_by_role("button", name="确认").click()
        expect(item).to_contain_text("已预约")

    await chromium.run(too_late)
    assert csp_or_script_errors(chromium) == []


async def test_a_shared_doctor_card_opens_without_sign_in_and_booking_asks_to_sign_in_first(
    chromium: Chromium, booking_hub: Hospital
) -> None:
    """The card link (GET /api/v1/doctors/<id>/card gives /doctors/<id>) opens the doctor's page for
    anyone; choosing a time asks to sign in and comes back to the same doctor and day."""
    hub = booking_hub.hub
    zhao = await doctor_id(hub, "赵丽")
    tomorrow = dt.datetime.combine(dt.datetime.now(BEIJING).date() + dt.timedelta(days=1), dt.time(8, 0), BEIJING)
    await open_clinic(hub, zhao, "赵丽", tomorrow, period="am", department="derm", room="皮肤科1诊室")
    async with hub.http() as http:
        card = (await http.get(f"/api/v1/doctors/{zhao}/card")).json()
    assert card["link"] == f"/doctors/{zhao}"
    page = await chromium.page(**PHONE)
    phone = "13800138001"

    def open_link() -> None:
        page.goto(f"{hub.base}/h5{card['link']}?day={tomorrow.date().isoformat()}")
        expect(page.get_by_role("region", name="医生名片")).to_contain_text("皮肤科")
        expect(page.get_by_role("region", name="医生名片")).to_contain_text("本周余号 20")
        page.get_by_role("group", name="上午可预约时间").get_by_role("button").first.click()
        expect(page.get_by_role("heading", name="手机号登录")).to_be_visible()
        page.get_by_label("手机号").fill(phone)
        page.get_by_role("button", name="获取验证码").click()
        expect(page.get_by_text("秒后重发")).to_be_visible()

    await chromium.run(open_link)
    code = await sms_code(booking_hub.sms, phone)

    def back_to_the_doctor() -> None:
        page.get_by_label("验证码").fill(code)
        page.get_by_role("button", name="登录", exact=True).click()
        expect(page.get_by_role("heading", name=re.compile("赵丽"))).to_be_visible()
        expect(page.get_by_role("tab", selected=True)).to_contain_text("明天")

    await chromium.run(back_to_the_doctor)
    assert csp_or_script_errors(chromium) == []


async def test_a_refused_booking_shows_the_servers_chinese_message(chromium: Chromium, booking_hub: Hospital) -> None:
    """The last slot goes to someone else while the patient looks at it: the tap says it is full."""
    hub = booking_hub.hub
    wang = await doctor_id(hub, "王晓燕")
    tomorrow = dt.datetime.combine(dt.datetime.now(BEIJING).date() + dt.timedelta(days=1), dt.time(14, 0), BEIJING)
    await open_clinic(hub, wang, "王晓燕", tomorrow, period="pm", capacity=1)
    page = await chromium.page(**PHONE)
    await sign_in(chromium, page, hub, booking_hub.sms)

    def look() -> None:
        page.goto(f"{hub.base}/h5/doctors/{wang}?day={tomorrow.date().isoformat()}")
        expect(page.get_by_role("group", name="下午可预约时间").get_by_role("button")).to_have_text("14:00")

    await chromium.run(look)
    taken = await api_book(hub, "patient2", wang, tomorrow.date(), "pm")
    assert taken.status_code == 201, taken.text

    def tap() -> None:
        page.get_by_role("group", name="下午可预约时间").get_by_role("button").click()
        sheet = page.get_by_role("dialog", name="确认预约")
        sheet.get_by_role("button", name="确认预约").click()
        expect(sheet.get_by_role("alert")).to_have_text(re.compile("号源已约满|该号已被预约"))
        shot(page, "30-refused")
        # the day is read again behind the sheet: nothing left to book
        expect(page.get_by_role("region", name="下午门诊").get_by_text("号源已约满")).to_be_visible()

    await chromium.run(tap)
    assert csp_or_script_errors(chromium) == []


async def test_a_booking_retried_after_a_lost_answer_books_once(chromium: Chromium, booking_hub: Hospital) -> None:
    """OUT-2: the server books but the answer is lost on the way; the patient taps again and the same
    client_ref finds the same booking instead of a second one (or a 'duplicate' refusal)."""
    hub = booking_hub.hub
    liu = await doctor_id(hub, "刘洋")
    tomorrow = dt.datetime.combine(dt.datetime.now(BEIJING).date() + dt.timedelta(days=1), dt.time(14, 0), BEIJING)
    await open_clinic(hub, liu, "刘洋", tomorrow, period="pm", department="ortho", room="骨科1诊室")
    page = await chromium.page(**PHONE)
    await sign_in(chromium, page, hub, booking_hub.sms)
    lost: list[str] = []

    def lose_the_first_answer(route: Any) -> None:
        if route.request.method == "POST" and not lost:
            lost.append(route.fetch().text())  # the hub did book
            route.abort("connectionreset")
        else:
            route.continue_()

    def tap_twice() -> None:
        page.route("**/api/v1/me/bookings", lose_the_first_answer)
        page.goto(f"{hub.base}/h5/doctors/{liu}?day={tomorrow.date().isoformat()}")
        page.get_by_role("group", name="下午可预约时间").get_by_role("button").first.click()
        sheet = page.get_by_role("dialog", name="确认预约")
        sheet.get_by_role("button", name="确认预约").click()
        expect(sheet.get_by_role("alert")).to_contain_text("网络连接失败")
        sheet.get_by_role("button", name="确认预约").click()
        expect(page.get_by_text("待支付", exact=True)).to_be_visible()

    await chromium.run(tap_twice)
    first = msgspec.json.decode(lost[0])
    async with hub.http(await hub.token("patient1")) as http:
        mine = (await http.get("/api/v1/me/bookings")).json()["bookings"]
    assert [b["booking_id"] for b in mine if b["doctor_id"] == liu] == [first["booking_id"]]
    assert await chromium.run(lambda: page.url.endswith(f"/h5/bookings/{first['booking_id']}"))
    assert csp_or_script_errors(chromium) == []


async def test_the_triage_picker_leads_to_a_department(chromium: Chromium, booking_hub: Hospital) -> None:
    hub = booking_hub.hub
    async with hub.http() as http:
        picker = (await http.get("/api/v1/triage")).json()
        part = next(p for p in picker["body_parts"] if p["symptoms"])
        symptom = part["symptoms"][0]
        top = (await http.post("/api/v1/triage", json={"body_part": part["name"], "symptoms": [symptom]})).json()
    department = top["recommendations"][0]["department"]
    page = await chromium.page(**PHONE)
    await sign_in(chromium, page, hub, booking_hub.sms)

    def triage() -> None:
        page.get_by_role("link", name="智能导诊").click()
        page.get_by_role("group", name="身体部位").get_by_role("button", name=part["name"], exact=True).click()
        picked = page.get_by_role("group", name="症状").get_by_role("button", name=symptom, exact=True)
        picked.click()
        # offline: the banner says so, the ask fails with a message, and the picks stay
        page.context.set_offline(True)
        expect(page.get_by_role("status").first).to_contain_text("网络已断开")
        page.get_by_role("button", name="推荐科室").click()
        expect(page.get_by_role("alert").filter(has_text="网络连接失败")).to_be_visible()
        expect(picked).to_have_attribute("aria-pressed", "true")
        page.context.set_offline(False)
        expect(page.get_by_role("status").first).to_have_text("", timeout=20_000)
        page.get_by_role("button", name="推荐科室").click()
        recommended = page.get_by_role("region", name="推荐科室")
        expect(recommended).to_contain_text(department["name"])
        shot(page, "40-triage")
        recommended.get_by_role("button", name=re.compile(department["name"])).first.click()
        expect(page).to_have_url(re.compile(f"/h5/booking\\?department={department['id']}"))
        chip = page.get_by_role("group", name="科室").get_by_role("button", name=department["name"], exact=True)
        expect(chip).to_have_attribute("aria-pressed", "true")
        shot(page, "41-department")

    await chromium.run(triage)
    assert csp_or_script_errors(chromium) == []

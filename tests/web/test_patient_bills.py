"""The patient app's bills in Chromium on a phone (issue 17; OUT-7, OUT-13, ME-6): pending bills paid
through WeChat Pay's JSAPI page flow, the payment in the history with its fee details, and the page
a printed slip's QR code opens.

The hub runs with the simulators a hospital's outside systems stand for: SMS (sign-in), WeChat Pay
(the payment gateway), the HIS (where the doctors' charges are) and FaceID. WeChat's in-app browser
is played by a ``WeixinJSBridge`` injected into the page: as WeChat's cashier does, it checks the
``paySign`` of the pay parameters with the merchant's key, then the person "pays" at the gateway
simulator (``/_sim/orders/<no>/pay``); the page then learns the outcome from CareHub only.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import random
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
import trio
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from playwright.sync_api import Page, expect

from carehub.bots.faceid_sim import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, check_digit, serve_faceid_sim
from carehub.bots.his_sim import HisHandle, serve_his
from carehub.bots.pay_gateway import GatewayHandle, GatewaySettings, SimKeys, generate_keys, serve_pay_gateway
from carehub.bots.sms_gateway import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, serve_sms_gateway
from carehub.http.rest.bills import BillOrdersView, BillsView, VisitFeesListView

from ..servers import Server, run_server
from .browser import PHONE, Chromium
from .conftest import sms_code
from .test_patient_shell import DEMO_PHONE, csp_or_script_errors

SHOTS = Path("/tmp/p2-shots")
HIS_TOKEN = "h5-bills-test-token"
ELDER_KEY = "carehub.h5.elder"


# ---- a hospital with every outside system simulated --------------------------------------------------


@dataclasses.dataclass
class Sims:
    sms: str
    pay: GatewayHandle
    his: HisHandle
    face: str


@dataclasses.dataclass
class Hospital:
    server: Server
    sims: Sims
    port: int

    @property
    def base(self) -> str:
        return self.server.base


@functools.cache
def pay_keys() -> SimKeys:
    """The payment simulator's keys, made once per run (RSA key generation takes a moment)."""
    return generate_keys()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_sims(nursery: trio.Nursery, keys: SimKeys) -> Sims:
    sms = await nursery.start(functools.partial(
        serve_sms_gateway, access_key_id=DEFAULT_ACCESS_KEY_ID, access_key_secret=DEFAULT_ACCESS_KEY_SECRET))
    pay = await nursery.start(functools.partial(
        serve_pay_gateway, port=0, settings=GatewaySettings(refund_seconds=0.2, notify_time_scale=0.01), keys=keys))
    his = await nursery.start(functools.partial(serve_his, port=0, token=HIS_TOKEN, hang_seconds=5))
    face = await nursery.start(functools.partial(
        serve_faceid_sim, secret_id=DEFAULT_SECRET_ID, secret_key=DEFAULT_SECRET_KEY))
    return Sims(sms, pay, his, face)


@asynccontextmanager
async def run_hospital(database_url: str, sims: Sims, port: int) -> AsyncIterator[Hospital]:
    """CareHub on ``port`` wired to the simulators (run it again on the same port and database: a restart)."""
    base = f"http://127.0.0.1:{port}"
    pay = sims.pay
    async with run_server(
        database_url, port=port,
        sms_url=sims.sms, sms_access_key_id=DEFAULT_ACCESS_KEY_ID, sms_access_key_secret=DEFAULT_ACCESS_KEY_SECRET,
        his_url=sims.his.base_url, his_token=sims.his.token,
        pay_url=pay.base_url, pay_mchid=pay.mchid, pay_appid=pay.appid, pay_merchant_serial=pay.merchant_serial,
        pay_merchant_key_pem=pay.merchant_private_key_pem, pay_platform_key_id=pay.platform_key_id,
        pay_platform_public_key_pem=pay.platform_public_key_pem, pay_apiv3_key=pay.apiv3_key,
        pay_notify_url=f"{base}/api/v1/payments/wechat/notify",
        faceid_url=sims.face, faceid_secret_id=DEFAULT_SECRET_ID, faceid_secret_key=DEFAULT_SECRET_KEY,
        faceid_redirect_url=f"{base}/h5/me/verify",
    ) as server:
        yield Hospital(server, sims, port)


@asynccontextmanager
async def open_hospital(database_url: str) -> AsyncIterator[Hospital]:
    async with trio.open_nursery() as nursery:
        sims = await start_sims(nursery, pay_keys())
        with trio.fail_after(240):
            async with run_hospital(database_url, sims, free_port()) as h:
                yield h
        nursery.cancel_scope.cancel()


@pytest.fixture
async def hospital(database_url: str, built_pages: Path) -> AsyncIterator[Hospital]:
    async with open_hospital(database_url) as h:
        yield h


# ---- steps a person takes ----------------------------------------------------------------------------


async def sign_in_at(chromium: Chromium, page: Page, h: Hospital, url: str, arrived: str,
                     phone: str = DEMO_PHONE) -> None:
    """Open ``url`` signed out: the app asks to sign in by SMS code, then comes back to ``url``."""

    def ask_for_code() -> None:
        page.goto(url)
        expect(page.get_by_role("heading", name="手机号登录")).to_be_visible()
        page.get_by_label("手机号").fill(phone)
        page.get_by_role("button", name="获取验证码").click()
        expect(page.get_by_text("秒后重发")).to_be_visible()

    await chromium.run(ask_for_code)
    code = await sms_code(h.sims.sms, phone)

    def enter_code() -> None:
        page.get_by_label("验证码").fill(code)
        page.get_by_role("button", name="登录", exact=True).click()
        expect(page.get_by_text(arrived).first).to_be_visible()

    await chromium.run(enter_code)


#: in elder mode: visible text smaller than 16 px, and buttons lower than 60 px (MIIT 2021: main text
#: >= 18 px, the smallest secondary text 16 px; main tap targets >= 60 px)
ELDER_MISFITS = """() => {
  const out = []
  for (const el of document.querySelectorAll('main *')) {
    if (!el.getClientRects().length || getComputedStyle(el).visibility === 'hidden') continue
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())
    if (own && parseFloat(getComputedStyle(el).fontSize) < 16) out.push(`${el.textContent.trim()}: small text`)
    const low = el.matches('.van-button') && el.getBoundingClientRect().height < 60
    if (low) out.push(`${el.textContent.trim()}: low button`)
  }
  return out
}"""


def shots(page: Page, name: str) -> None:
    """Screenshots of the page as it is, in normal and in elder mode (then back to normal); in elder
    mode nothing on the page is smaller than the elder-friendly figures allow."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    expect(page.locator(".van-toast:visible")).to_have_count(0, timeout=4000)  # toasts gone
    page.wait_for_timeout(300)  # transitions settled
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.evaluate(f"localStorage.setItem('{ELDER_KEY}', '1')")
    page.reload()
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.classList.contains('elder')")
    assert page.evaluate(ELDER_MISFITS) == [], name
    page.screenshot(path=str(SHOTS / f"{name}-elder.png"), full_page=True)
    page.evaluate(f"localStorage.setItem('{ELDER_KEY}', '0')")
    page.reload()
    page.wait_for_load_state("networkidle")


#: WeChat's in-app browser, as far as a page sees it: WeixinJSBridge.invoke('getBrandWCPayRequest', ...)
WECHAT_BRIDGE = """
window.WeixinJSBridge = {
  invoke(name, params, callback) {
    window.wechatCashier(name, params).then((errMsg) => callback({ err_msg: errMsg }))
  },
}
"""


def wechat_cashier(page: Page, gateway: GatewayHandle, paid: list[str]) -> None:
    """Play WeChat's cashier in ``page``: check the pay parameters' signature as WeChat does, and pay."""
    merchant = serialization.load_pem_public_key(gateway.merchant_public_key_pem.encode())
    assert isinstance(merchant, rsa.RSAPublicKey)

    def cashier(name: str, params: dict[str, str]) -> str:
        assert name == "getBrandWCPayRequest"
        message = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
        merchant.verify(base64.b64decode(params["paySign"]), message.encode(), padding.PKCS1v15(), hashes.SHA256())
        assert params["appId"] == gateway.appid and params["signType"] == "RSA"
        prepay_id = params["package"].removeprefix("prepay_id=")
        with httpx.Client(base_url=gateway.base_url, timeout=10) as sim:
            [order] = [o for o in sim.get("/_sim/orders").json()["orders"] if o["prepay_id"] == prepay_id]
            answer = sim.post(f"/_sim/orders/{order['out_trade_no']}/pay", json={})
            assert answer.status_code == 200, answer.text
        paid.append(order["out_trade_no"])
        return "get_brand_wcpay_request:ok"

    page.expose_function("wechatCashier", cashier)
    page.add_init_script(WECHAT_BRIDGE)


async def self_patient(h: Hospital, token: str) -> str:
    async with h.server.http(token) as http:
        patients = (await http.get("/api/v1/me/patients")).json()["patients"]
    return str(next(p["id"] for p in patients if p["relation"] == "self"))


async def page_token(chromium: Chromium, page: Page) -> str:
    return await chromium.run(lambda: str(page.evaluate(
        "JSON.parse(localStorage.getItem('carehub.h5.session')).token")))


async def seed_charges(h: Hospital, patient_id: str, *items: tuple[str, str, int, str], **where: str) -> None:
    """What the doctors ordered, at the HIS: (code, name, fen, category), owed."""
    async with httpx.AsyncClient(base_url=h.sims.his.admin_url, timeout=30) as his:
        response = await his.post("/_sim/charges", json={"patient_id": patient_id, **where, "items": [
            {"code": code, "name": name, "amount_fen": fen, "category": category}
            for code, name, fen, category in items]})
    assert response.status_code == 201, response.text


def random_id_number(year: int) -> str:
    """A made-up resident ID number (Beijing Dongcheng, born ``year``) with a valid check digit."""
    first17 = f"110101{year}0{random.randint(1, 9)}1{random.randint(0, 9)}{random.randint(100, 999)}"
    return first17 + check_digit(first17)


# ---- the tests -------------------------------------------------------------------------------------


async def test_a_patient_pays_pending_bills_and_finds_the_payment_in_the_history_with_its_fee_details(
    chromium: Chromium, hospital: Hospital
) -> None:
    """OUT-7 pay online, ME-6 payment history, OUT-13 fee details."""
    page = await chromium.page(**PHONE)
    paid: list[str] = []
    await chromium.run(wechat_cashier, page, hospital.sims.pay, paid)
    await sign_in_at(chromium, page, hospital, hospital.base + "/h5/me", "就诊人管理")
    token = await page_token(chromium, page)
    me = await self_patient(hospital, token)
    await seed_charges(hospital, me, ("CT01", "胸部CT平扫", 28000, "imaging"), ("LAB1", "血常规", 2500, "lab"),
                       visit_id="V-outside-1")

    def pay_them() -> None:
        page.get_by_role("button", name=re.compile("门诊缴费")).click()
        expect(page.get_by_text("胸部CT平扫", exact=True)).to_be_visible()
        expect(page.get_by_text("血常规", exact=True)).to_be_visible()
        expect(page.get_by_label("待缴费合计")).to_contain_text("¥305.00")
        shots(page, "bills-pending")
        group = page.get_by_label(re.compile("的费用$"))
        expect(group).to_contain_text("张*（本人）")
        expect(group).to_contain_text("合计 ¥305.00")
        group.get_by_role("button", name="立即缴费").click()
        # the gateway's notification reaches CareHub; the page shows what CareHub says
        expect(page.get_by_role("heading", name="支付成功")).to_be_visible(timeout=20_000)
        details = page.get_by_label("费用明细")
        expect(details).to_contain_text("胸部CT平扫")
        expect(details).to_contain_text("¥280.00")
        expect(details).to_contain_text("血常规")
        expect(details).to_contain_text("¥25.00")
        expect(details).to_contain_text("已缴费")
        shots(page, "bill-order-paid")

        page.get_by_role("button", name="查看缴费记录").click()
        history = page.get_by_role("button", name=re.compile("胸部CT平扫、血常规"))
        expect(history).to_contain_text("¥305.00")
        expect(history).to_contain_text("已支付")
        shots(page, "bill-orders")
        history.click()
        expect(page.get_by_role("heading", name="支付成功")).to_be_visible()

        page.goto(hospital.base + "/h5/bills/fees")
        visit = page.get_by_label(re.compile("^\\d{4}-\\d{2}-\\d{2}"))
        expect(visit).to_contain_text("胸部CT平扫")
        expect(visit).to_contain_text("已缴 ¥305.00 · 待缴 ¥0.00")
        shots(page, "bill-fees")

        page.goto(hospital.base + "/h5/bills")
        expect(page.get_by_text("暂无待缴费用")).to_be_visible()

    await chromium.run(pay_them)
    assert len(paid) == 1
    async with hospital.server.http(token) as http:  # what the page showed is what the server holds
        orders = msgspec.json.decode((await http.get("/api/v1/me/bill-orders")).content, type=BillOrdersView).orders
        visits = msgspec.json.decode((await http.get("/api/v1/me/bills/visits")).content, type=VisitFeesListView).visits
    assert [(o.out_trade_no, o.status, o.total_fen) for o in orders] == [(paid[0], "paid", 30500)]
    assert {(i.name, i.status) for v in visits for i in v.items} == {("胸部CT平扫", "paid"), ("血常规", "paid")}
    assert csp_or_script_errors(chromium) == []


async def test_a_slip_qr_code_opens_the_page_listing_that_slips_bills(
    chromium: Chromium, hospital: Hospital
) -> None:
    """OUT-7 scan the QR on an exam slip: its URL opens that slip's bills (after signing in)."""
    page = await chromium.page(**PHONE)
    async with hospital.server.http(await hospital.server.token("patient1")) as http:
        me = str(next(p["id"] for p in (await http.get("/api/v1/me/patients")).json()["patients"]
                      if p["relation"] == "self"))
    await seed_charges(hospital, me, ("US02", "腹部彩超", 16000, "imaging"), ("ECG", "心电图", 2500, "exam"),
                       slip="ServiceRequest/SR77")
    await seed_charges(hospital, me, ("RX1", "阿莫西林胶囊", 3200, "drug"), slip="MedicationRequest/MR5")
    async with hospital.server.http(await hospital.server.token("admin")) as http:
        printed = (await http.post("/api/v1/admin/slip-codes",
                                   json={"patient_id": me, "slip": "ServiceRequest/SR77"})).json()
    assert printed["path"] == f"/h5/slip/{printed['code']}"

    # the phone's camera opens the QR code's address; the patient is not signed in yet
    await sign_in_at(chromium, page, hospital, hospital.base + printed["path"], "检查检验单")

    def slip_page() -> None:
        expect(page.get_by_role("heading", name="检查检验单")).to_be_visible()
        expect(page.get_by_text("待缴费 ¥185.00 · 共 2 项")).to_be_visible()
        expect(page.get_by_text("腹部彩超", exact=True)).to_be_visible()
        expect(page.get_by_text("心电图", exact=True)).to_be_visible()
        expect(page.get_by_text("阿莫西林胶囊", exact=True)).to_have_count(0)  # another slip's bill
        assert page.url == hospital.base + printed["path"]
        shots(page, "slip")
        # an altered code says so, in Chinese
        page.goto(hospital.base + printed["path"][:-3] + "abc")
        expect(page.get_by_role("alert")).to_contain_text("单据二维码")

    await chromium.run(slip_page)
    async with hospital.server.http(await page_token(chromium, page)) as http:
        slip = msgspec.json.decode(
            (await http.get("/api/v1/me/bills", params={"slip": printed["code"]})).content, type=BillsView)
    assert sorted(b.name for b in slip.bills) == ["心电图", "腹部彩超"] and slip.slip == "ServiceRequest/SR77"
    assert csp_or_script_errors(chromium) == []


async def test_a_patient_orders_a_self_service_test_and_pays_it(chromium: Chromium, hospital: Hospital) -> None:
    """OUT-14: a catalogue test ordered for oneself becomes a bill, paid at once through the same flow."""
    async with hospital.server.http(await hospital.server.token("admin")) as http:
        response = await http.put("/api/v1/admin/tests/HBA1C", json={
            "name": "糖化血红蛋白", "category": "lab", "price_fen": 6500, "notice": "无需空腹"})
    assert response.status_code == 200, response.text
    page = await chromium.page(**PHONE)
    paid: list[str] = []
    await chromium.run(wechat_cashier, page, hospital.sims.pay, paid)
    await sign_in_at(chromium, page, hospital, hospital.base + "/h5/tests", "糖化血红蛋白")

    def order_and_pay() -> None:
        expect(page.get_by_role("radio", name=re.compile("张"))).to_have_attribute("aria-checked", "true")
        expect(page.get_by_text("¥65.00")).to_be_visible()
        shots(page, "tests")
        page.get_by_role("button", name="开单", exact=True).click()
        expect(page.get_by_text(re.compile("为 张\\* 开具「糖化血红蛋白」，费用 ¥65.00"))).to_be_visible()
        page.get_by_role("button", name="开单并缴费").click()
        expect(page.get_by_role("heading", name="支付成功")).to_be_visible(timeout=20_000)
        expect(page.get_by_label("费用明细")).to_contain_text("糖化血红蛋白")
        expect(page.get_by_label("费用明细")).to_contain_text("¥65.00")

    await chromium.run(order_and_pay)
    assert len(paid) == 1
    assert csp_or_script_errors(chromium) == []

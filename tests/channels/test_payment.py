"""The WeChat Pay adapter against the payment-gateway simulator, over the network.

The simulator (carehub/bots/pay_gateway.py) implements WeChat Pay's side of the protocol on its
own (signatures, encryption, order and refund state machines, the med-ins mixed order and a
minimal NHSA); tests drive it through its admin API (``/_sim/...``) the way a patient's phone
would, and receive its notifications on a small HTTP endpoint that plays CareHub's notify_url.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
import orjson
import pytest
import trio
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from carehub.bots.pay_gateway import GatewayHandle, GatewaySettings, SimKeys, generate_keys, serve_pay_gateway
from carehub.channels.payment import (
    BEIJING,
    NOTIFICATION_ACK_STATUS,
    MixedOrderRequest,
    NhsaRefused,
    Notification,
    NotificationRejected,
    OrderAlreadyExists,
    OrderPaid,
    PaymentError,
    PaymentProviderDown,
    PaymentTimeout,
    RuleLimit,
    UnverifiedAnswer,
    WeChatPay,
    WeChatPayConfig,
    authorization,
    encrypt_sensitive,
    id_digest,
    load_private_key,
    load_public_key,
    notification_refusal,
    open_wechat_pay,
)

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
SETTINGS = GatewaySettings(refund_seconds=0.2, notify_time_scale=0.001, notify_timeout_seconds=2.0)


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One POST the simulator made to our notify_url, and what we answered."""

    headers: dict[str, str]
    body: bytes
    status: int
    notification: Notification | None
    reason: str | None


@dataclasses.dataclass
class Receiver:
    """CareHub's notify_url: verifies with the adapter; answers 500 to the first ``refuse``."""

    url: str
    deliveries: trio.MemoryReceiveChannel[Delivery]
    refuse: int = 0
    verify: Callable[[Mapping[str, str], bytes], Notification] | None = None

    async def next(self, event_type: str) -> Delivery:
        """The next accepted notification of ``event_type`` (others are skipped)."""
        while True:
            delivery = await self.deliveries.receive()
            if delivery.notification is not None and delivery.notification.event_type == event_type:
                return delivery


@pytest.fixture(scope="session")
def keys() -> SimKeys:
    return generate_keys()


@pytest.fixture
async def gateway(nursery: trio.Nursery, keys: SimKeys) -> GatewayHandle:
    handle: GatewayHandle = await nursery.start(
        functools.partial(serve_pay_gateway, port=0, settings=SETTINGS, keys=keys)
    )
    return handle


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> Receiver:
    send_deliveries, deliveries = trio.open_memory_channel[Delivery](100)
    state = Receiver("", deliveries)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (event := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        notification, reason = None, None
        if state.refuse > 0:
            state.refuse -= 1
            status, answer = 500, notification_refusal("busy")
        else:
            assert state.verify is not None
            try:
                notification = state.verify(headers, body)
                status, answer = NOTIFICATION_ACK_STATUS, b""
            except NotificationRejected as rejected:
                reason = rejected.reason
                status, answer = 401, notification_refusal(rejected.reason)
        send_deliveries.send_nowait(Delivery(headers, body, status, notification, reason))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": answer})

    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    asgi: Any = app
    binds = await nursery.start(functools.partial(hypercorn_serve, asgi, config))
    state.url = binds[0] + "/pay/notify"
    return state


def config_for(gateway: GatewayHandle, notify_url: str, **changes: Any) -> WeChatPayConfig:
    config = WeChatPayConfig(
        base_url=gateway.base_url,
        mchid=gateway.mchid,
        appid=gateway.appid,
        merchant_private_key_pem=gateway.merchant_private_key_pem,
        merchant_serial=gateway.merchant_serial,
        platform_public_key_pem=gateway.platform_public_key_pem,
        platform_key_id=gateway.platform_key_id,
        apiv3_key=gateway.apiv3_key,
        notify_url=notify_url,
    )
    return dataclasses.replace(config, **changes)


@pytest.fixture
async def pay(gateway: GatewayHandle, receiver: Receiver) -> AsyncIterator[WeChatPay]:
    async with open_wechat_pay(config_for(gateway, receiver.url)) as client:
        receiver.verify = client.parse_notification
        yield client


@pytest.fixture
async def admin(gateway: GatewayHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=5) as http:
        yield http


async def sim(admin: httpx.AsyncClient, path: str, body: dict[str, Any] | None = None) -> Any:
    response = await (admin.post(path, json=body or {}) if body is not None else admin.get(path))
    assert response.is_success, response.text
    return response.json()


async def pay_in_wechat(admin: httpx.AsyncClient, out_trade_no: str, **outcome: str) -> Any:
    return await sim(admin, f"/_sim/orders/{out_trade_no}/pay", outcome)


async def paid_order(pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver, out_trade_no: str) -> Delivery:
    await pay.create_order(out_trade_no, "门诊缴费", 5000, OPENID)
    await pay_in_wechat(admin, out_trade_no)
    return await receiver.next("TRANSACTION.SUCCESS")


def split(total: int = 10000, gov: int = 6000, own: int = 1500, other: int = 0, cash: int = 2500) -> dict[str, int]:
    return {
        "total_fee": total,
        "med_ins_gov_fee": gov,
        "med_ins_self_fee": own,
        "med_ins_other_fee": other,
        "med_ins_cash_fee": cash,
    }


async def presettled(admin: httpx.AsyncClient, fees: Mapping[str, int]) -> tuple[str, str]:
    """The NHSA side: the patient authorizes, the hospital pre-settles; (pay_auth_no, pay_order_id)."""
    auth = await sim(admin, "/_sim/nhsa/auth", {})
    order = await sim(admin, "/_sim/nhsa/presettle", {"pay_auth_no": auth["pay_auth_no"], **fees})
    return auth["pay_auth_no"], order["pay_order_id"]


def mixed_request(
    out_trade_no: str, pay_auth_no: str, pay_order_id: str, prepay_id: str | None, fees: Mapping[str, int], **more: Any
) -> MixedOrderRequest:
    return MixedOrderRequest(
        out_trade_no=out_trade_no,
        mix_pay_type="CASH_AND_INSURANCE",
        order_type="REG_PAY",
        openid=OPENID,
        payer_name="张三",
        payer_id_number="11010519491231002x",
        serial_no=f"MED{out_trade_no}",
        pay_order_id=pay_order_id,
        pay_auth_no=pay_auth_no,
        city_id="440300",
        med_inst_name="智慧医院",
        med_inst_no="H44030500001",
        med_ins_order_create_time=dt.datetime(2026, 3, 2, 9, 30, tzinfo=BEIJING),
        total_fee=fees["total_fee"],
        med_ins_gov_fee=fees["med_ins_gov_fee"],
        med_ins_self_fee=fees["med_ins_self_fee"],
        med_ins_other_fee=fees["med_ins_other_fee"],
        med_ins_cash_fee=fees["med_ins_cash_fee"],
        wechat_pay_cash_fee=fees["med_ins_cash_fee"],
        prepay_id=prepay_id,
        **more,
    )


async def mixed_order(pay: WeChatPay, admin: httpx.AsyncClient, out_trade_no: str) -> MixedOrderRequest:
    """A CASH_AND_INSURANCE order: pre-settled at the NHSA, its cash part ordered, then the mixed order."""
    fees = split()
    pay_auth_no, pay_order_id = await presettled(admin, fees)
    prepay = await pay.create_order(f"{out_trade_no}C", "挂号费（自付部分）", fees["med_ins_cash_fee"], OPENID)
    request = mixed_request(out_trade_no, pay_auth_no, pay_order_id, prepay.prepay_id, fees)
    await pay.create_mixed_order(request)
    return request


def test_the_authorization_header_signs_the_documented_five_line_message(keys: SimKeys) -> None:
    body = b'{"mchid":"1900009191","description":"\xe6\x8c\x82\xe5\x8f\xb7"}'
    header = authorization(
        method="POST",
        path_and_query="/v3/pay/transactions/jsapi",
        body=body,
        mchid="1900009191",
        serial_no="408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB",
        private_key=load_private_key(keys.merchant_private_key_pem),
        timestamp="1554208460",
        nonce="593BEC0C930BF1AFEB40B4A08C8FB242",
    )
    match = re.fullmatch(
        r'WECHATPAY2-SHA256-RSA2048 mchid="1900009191",nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",'
        r'timestamp="1554208460",serial_no="408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB",signature="([^"]+)"',
        header,
    )
    assert match is not None
    public = serialization.load_pem_public_key(keys.merchant_public_key_pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    message = b"POST\n/v3/pay/transactions/jsapi\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n" + body + b"\n"
    public.verify(base64.b64decode(match.group(1)), message, padding.PKCS1v15(), hashes.SHA256())


def test_the_id_digest_is_the_md5_of_the_upper_cased_id_number() -> None:
    assert id_digest("11010519491231002x") == id_digest("11010519491231002X")
    assert re.fullmatch(r"[0-9a-f]{32}", id_digest("11010519491231002x"))


async def test_the_payment_parameters_are_signed_with_the_merchant_key(pay: WeChatPay, keys: SimKeys) -> None:
    with trio.fail_after(10):
        prepay = await pay.create_order("REG20260302001", "挂号费", 5000, OPENID)
    params = prepay.request_payment()
    assert params["package"] == f"prepay_id={prepay.prepay_id}"
    assert params["signType"] == "RSA"
    public = serialization.load_pem_public_key(keys.merchant_public_key_pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    message = f"{prepay.app_id}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n".encode()
    public.verify(base64.b64decode(params["paySign"]), message, padding.PKCS1v15(), hashes.SHA256())


async def test_an_order_paid_in_wechat_is_notified_verified_and_decrypted(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        await pay.create_order("REG20260302001", "挂号费", 5000, OPENID, attach="appointment:42")
        assert (await pay.query("REG20260302001")).trade_state == "NOTPAY"
        await pay_in_wechat(admin, "REG20260302001")
        delivery = await receiver.next("TRANSACTION.SUCCESS")
        queried = await pay.query("REG20260302001")
    assert delivery.status == NOTIFICATION_ACK_STATUS
    assert delivery.notification is not None
    paid = delivery.notification.transaction()
    assert (paid.out_trade_no, paid.trade_state, paid.total_fen, paid.payer_total_fen) == (
        "REG20260302001",
        "SUCCESS",
        5000,
        5000,
    )
    assert paid.attach == "appointment:42"
    assert paid.transaction_id and paid.success_time is not None
    assert queried.trade_state == "SUCCESS"
    assert queried.transaction_id == paid.transaction_id


async def test_a_notification_whose_body_was_tampered_with_is_rejected(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        genuine = await paid_order(pay, admin, receiver, "REG20260302002")
    tampered = genuine.body.replace(b'"summary":"', b'"summary":"X')
    assert tampered != genuine.body
    with pytest.raises(NotificationRejected, match="signature does not verify"):
        pay.parse_notification(genuine.headers, tampered)


async def test_a_signtest_probe_is_rejected_and_the_simulator_sees_the_rejection(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        await paid_order(pay, admin, receiver, "REG20260302003")
        await sim(admin, "/_sim/notifications/signtest", {"out_trade_no": "REG20260302003"})
        probe = await receiver.deliveries.receive()
        while True:
            [latest, *_] = (await sim(admin, "/_sim/notifications"))["notifications"]
            if latest["outcome"] != "pending":
                break
            await trio.sleep(0.02)
    assert probe.headers["wechatpay-signature"].startswith("WECHATPAY/SIGNTEST/")
    assert probe.status == 401
    assert probe.reason is not None and "SIGNTEST" in probe.reason
    assert (latest["kind"], latest["outcome"]) == ("signtest", "rejected")


async def test_a_notification_dated_more_than_five_minutes_ago_is_rejected(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        genuine = await paid_order(pay, admin, receiver, "REG20260302004")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6)
    with pytest.raises(NotificationRejected, match="5 minutes"):
        pay.parse_notification(genuine.headers, genuine.body, now=later)


async def test_a_request_signed_with_another_merchant_key_gets_sign_error(
    gateway: GatewayHandle, receiver: Receiver, keys: SimKeys
) -> None:
    impostor = generate_keys().merchant_private_key_pem
    async with open_wechat_pay(config_for(gateway, receiver.url, merchant_private_key_pem=impostor)) as wrong:
        with trio.fail_after(10), pytest.raises(PaymentError) as refused:
            await wrong.create_order("REG20260302005", "挂号费", 5000, OPENID)
    assert (refused.value.code, refused.value.status) == ("SIGN_ERROR", 401)
    assert not refused.value.retryable


async def test_an_answer_signed_with_another_platform_key_is_not_trusted(
    gateway: GatewayHandle, receiver: Receiver
) -> None:
    other = generate_keys().platform_public_key_pem
    async with open_wechat_pay(config_for(gateway, receiver.url, platform_public_key_pem=other)) as fooled:
        with trio.fail_after(10), pytest.raises(UnverifiedAnswer):
            await fooled.create_order("REG20260302006", "挂号费", 5000, OPENID)


async def test_reposting_an_identical_order_returns_the_same_prepay_id(pay: WeChatPay) -> None:
    with trio.fail_after(10):
        first = await pay.create_order("REG20260302007", "挂号费", 5000, OPENID)
        again = await pay.create_order("REG20260302007", "挂号费", 5000, OPENID)
    assert again.prepay_id == first.prepay_id


async def test_reusing_an_out_trade_no_for_a_different_order_raises_order_already_exists(pay: WeChatPay) -> None:
    with trio.fail_after(10):
        await pay.create_order("REG20260302008", "挂号费", 5000, OPENID)
        with pytest.raises(OrderAlreadyExists) as refused:
            await pay.create_order("REG20260302008", "挂号费", 6000, OPENID)
    assert refused.value.code == "OUT_TRADE_NO_USED"


async def test_closing_a_paid_order_raises_order_paid(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        await paid_order(pay, admin, receiver, "REG20260302009")
        with pytest.raises(OrderPaid):
            await pay.close("REG20260302009")


async def test_a_closed_order_is_reported_closed(pay: WeChatPay) -> None:
    with trio.fail_after(10):
        await pay.create_order("REG20260302010", "挂号费", 5000, OPENID)
        await pay.close("REG20260302010")
        assert (await pay.query("REG20260302010")).trade_state == "CLOSED"


async def test_a_notification_is_delivered_again_after_carehub_answered_500(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.refuse = 2
    with trio.fail_after(10):
        await pay.create_order("REG20260302011", "挂号费", 5000, OPENID)
        await pay_in_wechat(admin, "REG20260302011")
        refused = [await receiver.deliveries.receive(), await receiver.deliveries.receive()]
        accepted = await receiver.next("TRANSACTION.SUCCESS")
        [log] = (await sim(admin, "/_sim/notifications"))["notifications"]
    assert [d.status for d in refused] == [500, 500]
    assert accepted.notification is not None
    assert {orjson.loads(d.body)["id"] for d in refused} == {accepted.notification.id}
    assert [a["status"] for a in log["attempts"]] == [500, 500, 204]
    assert log["outcome"] == "delivered"


async def test_a_duplicate_notification_carries_the_same_id(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        first = await paid_order(pay, admin, receiver, "REG20260302012")
        await sim(admin, "/_sim/notifications/REG20260302012/repeat", {})
        duplicate = await receiver.next("TRANSACTION.SUCCESS")
    assert first.notification is not None and duplicate.notification is not None
    assert duplicate.notification.id == first.notification.id


async def test_a_refund_is_processing_then_succeeds_with_a_refund_notification(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        await paid_order(pay, admin, receiver, "REG20260302013")
        accepted = await pay.refund("REG20260302013", "RF20260302013", 2000, 5000, "退号")
        delivery = await receiver.next("REFUND.SUCCESS")
        queried = await pay.query_refund("RF20260302013")
        order = await pay.query("REG20260302013")
    assert accepted.status == "PROCESSING"
    assert delivery.notification is not None
    notified = delivery.notification.refund()
    assert (notified.out_refund_no, notified.status, notified.refund_fen, notified.total_fen) == (
        "RF20260302013",
        "SUCCESS",
        2000,
        5000,
    )
    assert queried.status == "SUCCESS" and queried.refund_id == accepted.refund_id
    assert order.trade_state == "REFUND"


async def test_a_refund_retried_with_the_same_out_refund_no_is_the_same_refund(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        await paid_order(pay, admin, receiver, "REG20260302014")
        first = await pay.refund("REG20260302014", "RF20260302014", 5000, 5000, "退号")
        retry = await pay.refund("REG20260302014", "RF20260302014", 5000, 5000, "退号")
        [order] = (await sim(admin, "/_sim/orders?out_trade_no=REG20260302014"))["orders"]
    assert retry.refund_id == first.refund_id
    assert len(order["refunds"]) == 1


async def test_refunds_beyond_the_order_total_are_refused(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        await paid_order(pay, admin, receiver, "REG20260302015")
        await pay.refund("REG20260302015", "RF20260302015A", 3000, 5000, "部分退费")
        with pytest.raises(PaymentError) as refused:
            await pay.refund("REG20260302015", "RF20260302015B", 2001, 5000, "部分退费")
    assert refused.value.code == "NOTENOUGH"
    assert not refused.value.retryable


async def test_a_gateway_system_error_is_a_retryable_provider_down(pay: WeChatPay, admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await sim(admin, "/_sim/faults", {"kind": "500", "count": 1})
        with pytest.raises(PaymentProviderDown) as failed:
            await pay.create_order("REG20260302016", "挂号费", 5000, OPENID)
        prepay = await pay.create_order("REG20260302016", "挂号费", 5000, OPENID)
    assert (failed.value.code, failed.value.status, failed.value.retryable) == ("SYSTEM_ERROR", 500, True)
    assert prepay.prepay_id


async def test_throttling_is_a_retryable_provider_down(pay: WeChatPay, admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await sim(admin, "/_sim/faults", {"kind": "429", "count": 1})
        with pytest.raises(PaymentProviderDown) as failed:
            await pay.query("REG20260302017")
    assert (failed.value.code, failed.value.status, failed.value.retryable) == ("FREQUENCY_LIMITED", 429, True)


async def test_a_hanging_gateway_raises_payment_timeout_and_query_then_tells_the_truth(
    gateway: GatewayHandle, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    config = config_for(gateway, receiver.url, timeout_seconds=0.3)
    with trio.fail_after(10):
        await sim(admin, "/_sim/faults", {"kind": "hang", "count": 1, "accept": True})
        async with open_wechat_pay(config) as impatient:
            with pytest.raises(PaymentTimeout) as failed:
                await impatient.create_order("REG20260302018", "挂号费", 5000, OPENID)
            truth = await impatient.query("REG20260302018")
    assert failed.value.retryable
    assert truth.trade_state == "NOTPAY"  # the order was created although no answer came


async def test_mixed_amounts_that_break_the_formula_raise_rule_limit_before_sending(
    pay: WeChatPay, admin: httpx.AsyncClient
) -> None:
    fees = split()
    with trio.fail_after(10):
        pay_auth_no, pay_order_id = await presettled(admin, fees)
        request = mixed_request("MIX20260302001", pay_auth_no, pay_order_id, "wx-unused", fees)
        with pytest.raises(RuleLimit, match="total_fee"):
            await pay.create_mixed_order(dataclasses.replace(request, total_fee=10001))
        orders = await sim(admin, "/_sim/orders")
    assert orders["mixed_orders"] == []


async def test_the_gateway_itself_refuses_mixed_amounts_that_break_the_formula(
    pay: WeChatPay, admin: httpx.AsyncClient
) -> None:
    # the adapter checks first, so this request is made without it
    platform_key = load_public_key(pay.config.platform_public_key_pem)
    body: dict[str, Any] = {
        "mix_pay_type": "INSURANCE_ONLY",
        "appid": pay.config.appid,
        "out_trade_no": "MIX20260302002",
    }
    body |= {"order_type": "REG_PAY", "openid": OPENID, "serial_no": "S1", "pay_order_id": "P1", "pay_auth_no": "A1"}
    body |= {"city_id": "440300", "med_inst_name": "智慧医院", "med_inst_no": "H1", "callback_url": "http://x/n"}
    body |= split(total=9000, cash=0) | {"wechat_pay_cash_fee": 0}
    body["payer"] = {
        "name": encrypt_sensitive(platform_key, "张三"),
        "id_digest": encrypt_sensitive(platform_key, id_digest("11010519491231002x")),
    }
    with trio.fail_after(10):
        with pytest.raises(RuleLimit) as refused:
            await pay.call("POST", "/v3/med-ins/orders", body, headers={"Wechatpay-Serial": pay.config.platform_key_id})
    assert refused.value.status == 403


async def test_a_paid_mixed_order_is_notified_with_its_insurance_and_cash_split(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        await mixed_order(pay, admin, "MIX20260302003")
        assert (await pay.query_mixed("MIX20260302003")).mix_pay_status == "MIX_PAY_CREATED"
        await pay_in_wechat(admin, "MIX20260302003")
        delivery = await receiver.next("MEDICAL_INSURANCE.SUCCESS")
        cash = await pay.query("MIX20260302003C")
    assert delivery.notification is not None
    mixed = delivery.notification.mixed()
    assert mixed.mix_pay_status == "MIX_PAY_SUCCESS"
    assert (mixed.med_ins_pay_status, mixed.self_pay_status) == ("MED_INS_PAY_SUCCESS", "SELF_PAY_SUCCESS")
    assert (mixed.total_fee, mixed.med_ins_gov_fee, mixed.med_ins_self_fee, mixed.wechat_pay_cash_fee) == (
        10000,
        6000,
        1500,
        2500,
    )
    assert mixed.paid_time is not None
    assert cash.trade_state == "SUCCESS"


async def test_insurance_settled_but_cash_failed_shows_in_query_mixed(pay: WeChatPay, admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await mixed_order(pay, admin, "MIX20260302004")
        await pay_in_wechat(admin, "MIX20260302004", insurance="SUCCESS", cash="FAIL")
        mixed = await pay.query_mixed("MIX20260302004")
        cash = await pay.query("MIX20260302004C")
    assert mixed.mix_pay_status == "MIX_PAY_FAIL"
    assert (mixed.med_ins_pay_status, mixed.self_pay_status) == ("MED_INS_PAY_SUCCESS", "SELF_PAY_FAIL")
    assert cash.trade_state == "PAYERROR"


async def test_a_mixed_order_with_an_expired_pay_auth_no_is_refused(pay: WeChatPay, admin: httpx.AsyncClient) -> None:
    fees = split(total=9000, cash=1500)
    with trio.fail_after(10):
        pay_auth_no, pay_order_id = await presettled(admin, fees)
        prepay = await pay.create_order("MIX20260302005C", "挂号费（自付部分）", 1500, OPENID)
        await sim(admin, "/_sim/clock", {"advance_seconds": 3600})
        with pytest.raises(PaymentError) as refused:
            await pay.create_mixed_order(
                mixed_request("MIX20260302005", pay_auth_no, pay_order_id, prepay.prepay_id, fees)
            )
    assert refused.value.code == "INVALID_REQUEST"
    assert "过期" in refused.value.message


async def test_with_auto_pay_an_order_pays_itself_without_the_trigger(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        await sim(admin, "/_sim/config", {"auto_pay_seconds": 0.05})
        await pay.create_order("REG20260302019", "挂号费", 5000, OPENID)
        delivery = await receiver.next("TRANSACTION.SUCCESS")
    assert delivery.notification is not None
    assert delivery.notification.transaction().out_trade_no == "REG20260302019"


async def test_reposting_an_identical_mixed_order_returns_the_same_mix_trade_no(
    pay: WeChatPay, admin: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        request = await mixed_order(pay, admin, "MIX20260302006")
        first = await pay.query_mixed("MIX20260302006")
        again = await pay.create_mixed_order(request)
    assert again.mix_trade_no == first.mix_trade_no


# ---- refunding a mixed order: cash through WeChat, insurance through the NHSA (6203) (OUT-7) ----


async def paid_mixed_order(pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver, out_trade_no: str) -> str:
    """A paid CASH_AND_INSURANCE order (6000 统筹, 1500 个账, 2500 cash); its pay_order_id."""
    request = await mixed_order(pay, admin, out_trade_no)
    await pay_in_wechat(admin, out_trade_no)
    await receiver.next("MEDICAL_INSURANCE.SUCCESS")
    return request.pay_order_id


async def test_a_mixed_order_is_mix_pay_refund_once_the_cash_and_the_insurance_part_are_back(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    """OUT-7: cash refund, 6203 at the NHSA, then the med-ins refund notify with the same refund number."""
    with trio.fail_after(10):
        pay_order_id = await paid_mixed_order(pay, admin, receiver, "MIX20260302101")
        await pay.refund("MIX20260302101C", "MIX20260302101R", 2500, 2500, "退号")
        await receiver.next("REFUND.SUCCESS")
        assert (await pay.query_mixed("MIX20260302101")).mix_pay_status == "MIX_PAY_SUCCESS"
        nhsa = await pay.nhsa_refund(pay_order_id, "MIX20260302101R", fund_fen=6000, psn_acct_fen=1500)
        mix_trade_no = (await pay.query_mixed("MIX20260302101")).mix_trade_no
        told = await pay.notify_med_ins_refund(mix_trade_no, out_refund_no="MIX20260302101R", gov_fen=6000,
                                               self_fen=1500, other_fen=0, refund_time=nhsa.refund_time)
        queried = await pay.query_mixed("MIX20260302101")
        [presettlement] = (await sim(admin, "/_sim/orders"))["nhsa"]["presettlements"]
    assert (nhsa.total_fen, nhsa.fund_fen, nhsa.psn_acct_fen, nhsa.cash_fen) == (7500, 6000, 1500, 0)
    assert told.mix_pay_status == queried.mix_pay_status == "MIX_PAY_REFUND"
    assert (queried.med_ins_pay_status, queried.self_pay_status) == ("MED_INS_PAY_REFUND", "SELF_PAY_REFUND")
    assert presettlement["status"] == "REFUNDED"


async def test_the_med_ins_refund_notify_is_refused_before_the_nhsa_has_refunded(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        await paid_mixed_order(pay, admin, receiver, "MIX20260302102")
        await pay.refund("MIX20260302102C", "MIX20260302102R", 2500, 2500, "退号")
        mix_trade_no = (await pay.query_mixed("MIX20260302102")).mix_trade_no
        with pytest.raises(PaymentError) as refused:
            await pay.notify_med_ins_refund(mix_trade_no, out_refund_no="MIX20260302102R", gov_fen=6000,
                                            self_fen=1500, other_fen=0, refund_time=dt.datetime.now(dt.UTC))
    assert (refused.value.code, refused.value.retryable) == ("INVALID_REQUEST", False)
    assert "6203" in refused.value.message


async def test_the_med_ins_refund_notify_must_carry_the_cash_refunds_out_refund_no(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        pay_order_id = await paid_mixed_order(pay, admin, receiver, "MIX20260302103")
        await pay.refund("MIX20260302103C", "MIX20260302103R", 2500, 2500, "退号")
        nhsa = await pay.nhsa_refund(pay_order_id, "MIX20260302103X", fund_fen=6000, psn_acct_fen=1500)
        mix_trade_no = (await pay.query_mixed("MIX20260302103")).mix_trade_no
        with pytest.raises(PaymentError) as refused:
            await pay.notify_med_ins_refund(mix_trade_no, out_refund_no="MIX20260302103X", gov_fen=6000,
                                            self_fen=1500, other_fen=0, refund_time=nhsa.refund_time)
    assert refused.value.code == "INVALID_REQUEST"
    assert "out_refund_no" in refused.value.message


async def test_a_repeated_nhsa_refund_and_notify_change_nothing(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    """What a retried refund effect does: the same 6203 and notify again, after they succeeded."""
    with trio.fail_after(10):
        pay_order_id = await paid_mixed_order(pay, admin, receiver, "MIX20260302104")
        await pay.refund("MIX20260302104C", "MIX20260302104R", 2500, 2500, "退号")
        first = await pay.nhsa_refund(pay_order_id, "MIX20260302104R", fund_fen=6000, psn_acct_fen=1500)
        mix_trade_no = (await pay.query_mixed("MIX20260302104")).mix_trade_no
        for _ in range(2):
            await pay.notify_med_ins_refund(mix_trade_no, out_refund_no="MIX20260302104R", gov_fen=6000,
                                            self_fen=1500, other_fen=0, refund_time=first.refund_time)
        again = await pay.nhsa_refund(pay_order_id, "MIX20260302104R", fund_fen=6000, psn_acct_fen=1500)
        orders = await sim(admin, "/_sim/orders")
    assert (again.trx_sn, again.refund_time) == (first.trx_sn, first.refund_time)
    assert len(orders["nhsa"]["presettlements"][0]["refunds"]) == 1
    assert len(orders["mixed_orders"][0]["med_ins_refunds"]) == 1


async def test_the_nhsa_refuses_to_refund_more_than_was_settled(
    pay: WeChatPay, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        pay_order_id = await paid_mixed_order(pay, admin, receiver, "MIX20260302105")
        await pay.nhsa_refund(pay_order_id, "MIX20260302105A", fund_fen=6000, psn_acct_fen=0)
        with pytest.raises(NhsaRefused) as refused:
            await pay.nhsa_refund(pay_order_id, "MIX20260302105B", fund_fen=1, psn_acct_fen=1500)
    assert not refused.value.retryable
    assert "超过" in refused.value.message


async def test_the_nhsa_refuses_a_refund_of_an_unsettled_pre_settlement(
    pay: WeChatPay, admin: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        _, pay_order_id = await presettled(admin, split())
        with pytest.raises(NhsaRefused) as refused:
            await pay.nhsa_refund(pay_order_id, "RF20260302106", fund_fen=6000, psn_acct_fen=1500)
    assert "未结算" in refused.value.message


async def test_an_unreachable_nhsa_is_a_retryable_provider_down(gateway: GatewayHandle, receiver: Receiver) -> None:
    config = config_for(gateway, receiver.url, nhsa_url="http://127.0.0.1:9/_sim/nhsa")
    with trio.fail_after(10):
        async with open_wechat_pay(config) as pay:
            with pytest.raises(PaymentProviderDown) as failed:
                await pay.nhsa_refund("ORD1", "RF20260302107", fund_fen=100, psn_acct_fen=0)
    assert failed.value.retryable

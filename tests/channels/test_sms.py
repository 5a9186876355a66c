"""The SMS adapter against the SMS-gateway simulator, over the network.

The simulator (carehub/bots/sms_gateway.py) implements Aliyun's side of the protocol on its
own; requests the adapter would never make (bad signatures, replays) are crafted here with httpx.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from carehub.bots.sms_gateway import DEFAULT_TEMPLATES, GatewaySettings, serve_sms_gateway
from carehub.channels.sms import (
    BEIJING,
    RECEIPT_ACCEPTED,
    TEMPLATES,
    InvalidReceipt,
    SmsBadNumber,
    SmsChannel,
    SmsConfig,
    SmsProviderDown,
    SmsRateLimited,
    SmsStatus,
    SmsTemplateError,
    SmsTimeout,
    acs3_headers,
    canonical_query,
    open_sms_channel,
    parse_receipts,
    percent_encode,
)

KEY_ID = "LTAI5tSmsTestKey"
KEY_SECRET = "sms-test-secret-0123456789"
SIGN = "智慧医院"
LOGIN = TEMPLATES["login_code"]
NOTICE = TEMPLATES["notice"]
PHONE = "13800138000"


@pytest.fixture
async def gateway(nursery: trio.Nursery) -> str:
    settings = GatewaySettings(receipt_delay=0.05, push_retry_seconds=(0.05, 0.05, 0.05))
    serve = functools.partial(
        serve_sms_gateway, port=0, access_key_id=KEY_ID, access_key_secret=KEY_SECRET, settings=settings
    )
    url: str = await nursery.start(serve)
    return url


@pytest.fixture
async def channel(gateway: str) -> AsyncIterator[SmsChannel]:
    async with open_sms_channel(SmsConfig(gateway, KEY_ID, KEY_SECRET, SIGN, timeout=5)) as sms:
        yield sms


@pytest.fixture
async def admin(gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway, timeout=5) as http:
        yield http


async def messages(admin: httpx.AsyncClient, phone: str) -> list[dict[str, Any]]:
    response = await admin.get("/_sim/messages", params={"phone": phone})
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["messages"]
    return found


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    while not await check():
        await trio.sleep(0.02)


def signed_request(
    gateway: str,
    query: dict[str, str],
    *,
    action: str = "SendSms",
    secret: str = KEY_SECRET,
    date: dt.datetime | None = None,
    nonce: str | None = None,
) -> tuple[str, dict[str, str]]:
    """A V3-signed request as the adapter would make it, for tests that then spoil one part."""
    headers = acs3_headers(
        action=action,
        host=httpx.URL(gateway).netloc.decode(),
        query=query,
        access_key_id=KEY_ID,
        access_key_secret=secret,
        date=date or dt.datetime.now(dt.UTC),
        nonce=nonce or secrets.token_hex(16),
    )
    return f"{gateway}/?{canonical_query(query.items())}", headers


def login_query(phone: str = PHONE, code: str = "482916") -> dict[str, str]:
    return {
        "PhoneNumbers": phone,
        "SignName": SIGN,
        "TemplateCode": LOGIN.code,
        "TemplateParam": orjson.dumps({"code": code}).decode(),
        "OutId": "login-1",
    }


@dataclasses.dataclass
class Receiver:
    """A tiny HTTP endpoint that takes receipt pushes, refusing the first ``refuse`` of them."""

    url: str
    bodies: trio.MemoryReceiveChannel[bytes]
    refuse: int = 0


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> Receiver:
    send_bodies, bodies = trio.open_memory_channel[bytes](100)
    state = Receiver("", bodies)

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
        if state.refuse > 0:
            state.refuse -= 1
            status, answer = 500, b"busy"
        else:
            send_bodies.send_nowait(body)
            status, answer = 200, RECEIPT_ACCEPTED
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": answer})

    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    asgi: Any = app
    binds = await nursery.start(functools.partial(hypercorn_serve, asgi, config))
    state.url = binds[0] + "/sms/receipts"
    return state


def test_the_signer_reproduces_aliyuns_published_v3_example() -> None:
    # the worked example of help.aliyun.com "V3 request structure and signature"
    headers = acs3_headers(
        action="RunInstances",
        host="ecs.cn-shanghai.aliyuncs.com",
        query={"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd", "RegionId": "cn-shanghai"},
        access_key_id="YourAccessKeyId",
        access_key_secret="YourAccessKeySecret",
        date=dt.datetime(2023, 10, 26, 9, 1, 1, tzinfo=dt.UTC),
        nonce="d410180a5abf7fe235dd9b74aca91fc0",
        version="2014-05-26",
    )
    assert headers["Authorization"] == (
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,"
        "SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"
        "Signature=e521358f7776c97df52e6b2891a8bc73026794a071b50c3323388c4e0df64804"
    )


def test_the_simulator_has_approved_every_template_carehub_sends() -> None:
    approved = {t.code: (t.kind, t.content) for t in DEFAULT_TEMPLATES}
    assert {t.code: (t.kind, t.content) for t in TEMPLATES.values()}.items() <= approved.items()


async def test_a_sent_sign_in_code_arrives_and_is_readable_in_the_simulator(
    channel: SmsChannel, admin: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        result = await channel.send(PHONE, LOGIN.code, {"code": "482916"}, out_id="login-1")
        [message] = await messages(admin, PHONE)
    assert message["biz_id"] == result.biz_id
    assert message["params"] == {"code": "482916"}
    assert message["content"] == "【智慧医院】您的验证码为482916，5分钟内有效，请勿泄露。"
    assert message["out_id"] == "login-1"


async def test_a_request_signed_with_the_wrong_secret_is_refused(gateway: str, admin: httpx.AsyncClient) -> None:
    url, headers = signed_request(gateway, login_query(), secret="not-the-secret")
    with trio.fail_after(10):
        response = await admin.post(url, headers=headers)
        assert await messages(admin, PHONE) == []
    assert response.status_code == 400
    assert response.json()["Code"] == "SignatureDoesNotMatch"


async def test_a_request_whose_parameters_were_changed_after_signing_is_refused(
    gateway: str, admin: httpx.AsyncClient
) -> None:
    url, headers = signed_request(gateway, login_query(code="482916"))
    tampered = url.replace("482916", "000000")
    with trio.fail_after(10):
        response = await admin.post(tampered, headers=headers)
    assert response.status_code == 400
    assert response.json()["Code"] == "SignatureDoesNotMatch"


async def test_a_request_dated_more_than_15_minutes_ago_is_refused(gateway: str, admin: httpx.AsyncClient) -> None:
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16)
    url, headers = signed_request(gateway, login_query(), date=stale)
    with trio.fail_after(10):
        response = await admin.post(url, headers=headers)
    assert response.status_code == 400
    assert response.json()["Code"] == "InvalidTimeStamp.Expired"


async def test_a_replayed_request_with_a_used_nonce_is_refused(gateway: str, admin: httpx.AsyncClient) -> None:
    url, headers = signed_request(gateway, login_query())
    with trio.fail_after(10):
        first = await admin.post(url, headers=headers)
        replay = await admin.post(url, headers=headers)
        sent = await messages(admin, PHONE)
    assert first.json()["Code"] == "OK"
    assert replay.status_code == 400
    assert replay.json()["Code"] == "SignatureNonceUsed"
    assert len(sent) == 1


async def test_a_v2_signed_request_is_accepted_too(gateway: str, admin: httpx.AsyncClient) -> None:
    params = login_query() | {
        "AccessKeyId": KEY_ID,
        "Action": "SendSms",
        "Format": "JSON",
        "RegionId": "cn-hangzhou",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": secrets.token_hex(16),
        "SignatureVersion": "1.0",
        "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Version": "2017-05-25",
    }
    to_sign = "GET&%2F&" + percent_encode(canonical_query(params.items()))
    digest = hmac.new((KEY_SECRET + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    params["Signature"] = base64.b64encode(digest).decode()
    with trio.fail_after(10):
        response = await admin.get(f"{gateway}/?{canonical_query(params.items())}")
    assert response.json()["Code"] == "OK"


async def test_a_second_code_to_one_number_within_a_minute_is_rate_limited(channel: SmsChannel) -> None:
    with trio.fail_after(10):
        await channel.send(PHONE, LOGIN.code, {"code": "111111"}, out_id="login-1")
        with pytest.raises(SmsRateLimited) as refused:
            await channel.send(PHONE, LOGIN.code, {"code": "222222"}, out_id="login-2")
    assert refused.value.code == "isv.BUSINESS_LIMIT_CONTROL"
    assert not refused.value.retryable


async def test_a_code_can_be_sent_again_once_the_minute_is_over(channel: SmsChannel, admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await channel.send(PHONE, LOGIN.code, {"code": "111111"}, out_id="login-1")
        await admin.post("/_sim/clock", json={"advance_seconds": 61})
        await channel.send(PHONE, LOGIN.code, {"code": "222222"}, out_id="login-2")
        sent = await messages(admin, PHONE)
    assert [m["params"]["code"] for m in sent] == ["222222", "111111"]


async def test_the_sixth_code_to_one_number_within_an_hour_is_rate_limited(
    channel: SmsChannel, admin: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        for n in range(5):
            await channel.send(PHONE, LOGIN.code, {"code": f"10000{n}"}, out_id=f"login-{n}")
            await admin.post("/_sim/clock", json={"advance_seconds": 61})
        with pytest.raises(SmsRateLimited, match="小时级流控"):
            await channel.send(PHONE, LOGIN.code, {"code": "100005"}, out_id="login-5")


async def test_a_missing_template_variable_is_refused(channel: SmsChannel, admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        with pytest.raises(SmsTemplateError) as refused:
            await channel.send(PHONE, NOTICE.code, {"name": "张三"}, out_id="notice-1")
        assert await messages(admin, PHONE) == []
    assert refused.value.code == "isv.TEMPLATE_MISSING_PARAMETERS"
    assert not refused.value.retryable


async def test_a_template_value_that_is_not_a_string_is_refused(gateway: str, admin: httpx.AsyncClient) -> None:
    url, headers = signed_request(gateway, login_query() | {"TemplateParam": '{"code": 482916}'})
    with trio.fail_after(10):
        response = await admin.post(url, headers=headers)
    assert response.json()["Code"] == "isv.INVALID_JSON_PARAM"


async def test_an_unapproved_template_is_refused(channel: SmsChannel) -> None:
    with trio.fail_after(10), pytest.raises(SmsTemplateError) as refused:
        await channel.send(PHONE, "SMS_NOT_APPROVED", {"code": "482916"}, out_id="x-1")
    assert refused.value.code == "isv.SMS_TEMPLATE_ILLEGAL"


async def test_an_invalid_number_is_refused_as_a_bad_number(channel: SmsChannel) -> None:
    with trio.fail_after(10), pytest.raises(SmsBadNumber) as refused:
        await channel.send("1380013800", LOGIN.code, {"code": "482916"}, out_id="login-1")
    assert refused.value.code == "isv.MOBILE_NUMBER_ILLEGAL"


async def test_a_system_error_of_the_provider_raises_a_retryable_error(
    channel: SmsChannel, admin: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/faults", json={"kind": "error", "code": "isp.SYSTEM_ERROR", "count": 1})
        with pytest.raises(SmsProviderDown) as failed:
            await channel.send(PHONE, LOGIN.code, {"code": "482916"}, out_id="login-1")
    assert failed.value.code == "isp.SYSTEM_ERROR"
    assert failed.value.retryable


async def test_an_unanswered_send_raises_a_retryable_timeout(gateway: str, admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/faults", json={"kind": "timeout", "count": 1})
        async with open_sms_channel(SmsConfig(gateway, KEY_ID, KEY_SECRET, SIGN, timeout=0.3)) as impatient:
            with pytest.raises(SmsTimeout) as failed:
                await impatient.send(PHONE, LOGIN.code, {"code": "482916"}, out_id="login-1")
    assert failed.value.retryable


async def test_a_send_whose_answer_was_lost_is_found_by_query_before_sending_again(
    gateway: str, admin: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/faults", json={"kind": "timeout", "count": 1, "accept": True})
        async with open_sms_channel(SmsConfig(gateway, KEY_ID, KEY_SECRET, SIGN, timeout=0.3)) as impatient:
            with pytest.raises(SmsTimeout):
                await impatient.send(PHONE, LOGIN.code, {"code": "482916"}, out_id="login-7")
            found = await impatient.query(PHONE, None, dt.datetime.now(BEIJING).date())
    assert [d.out_id for d in found] == ["login-7"]


async def test_query_send_details_reports_a_delivered_message(channel: SmsChannel) -> None:
    today = dt.datetime.now(BEIJING).date()
    with trio.fail_after(10):
        result = await channel.send(PHONE, NOTICE.code, {"name": "张三", "content": "您的药品已可取。"}, out_id="n-1")

        async def delivered() -> bool:
            details = await channel.query(PHONE, result.biz_id, today)
            return details[0].status is SmsStatus.DELIVERED

        await eventually(delivered)
        [detail] = await channel.query(PHONE, result.biz_id, today)
    assert detail.content == "【智慧医院】张三您好，您的药品已可取。如有疑问请咨询医院服务台。"
    assert detail.err_code == "DELIVERED"
    assert detail.out_id == "n-1"
    assert detail.receive_date is not None


async def test_delivery_receipts_are_pushed_to_carehub(
    channel: SmsChannel, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/config", json={"receipt_url": receiver.url})
        result = await channel.send(PHONE, LOGIN.code, {"code": "482916"}, out_id="login-1")
        [receipt] = parse_receipts(await receiver.bodies.receive())
    assert (receipt.biz_id, receipt.phone_number, receipt.out_id) == (result.biz_id, PHONE, "login-1")
    assert receipt.success
    assert receipt.err_code == "DELIVERED"
    assert receipt.report_time >= receipt.send_time


async def test_a_number_with_the_failing_suffix_gets_a_failed_receipt(
    channel: SmsChannel, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    with trio.fail_after(10):
        await admin.post(
            "/_sim/config", json={"receipt_url": receiver.url, "fail_suffixes": {"4444": "MOBILE_NOT_ON_SERVICE"}}
        )
        await channel.send("13900004444", LOGIN.code, {"code": "482916"}, out_id="login-1")
        [receipt] = parse_receipts(await receiver.bodies.receive())
    assert not receipt.success
    assert receipt.err_code == "MOBILE_NOT_ON_SERVICE"


async def test_a_receipt_push_that_carehub_refused_is_pushed_again(
    channel: SmsChannel, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.refuse = 2
    with trio.fail_after(10):
        await admin.post("/_sim/config", json={"receipt_url": receiver.url})
        result = await channel.send(PHONE, LOGIN.code, {"code": "482916"}, out_id="login-1")
        [receipt] = parse_receipts(await receiver.bodies.receive())
        pushes: list[dict[str, Any]] = []

        async def settled() -> bool:
            nonlocal pushes
            pushes = (await admin.get("/_sim/pushes")).json()["pushes"]
            return bool(pushes) and pushes[0]["outcome"] != "retry"

        await eventually(settled)
    assert receipt.biz_id == result.biz_id
    assert [p["outcome"] for p in reversed(pushes)] == ["retry", "retry", "accepted"]


async def test_identical_sends_are_never_deduplicated(channel: SmsChannel, admin: httpx.AsyncClient) -> None:
    params = {"name": "张三", "content": "您预约的门诊已停诊。"}
    with trio.fail_after(10):
        first = await channel.send(PHONE, NOTICE.code, params, out_id="same")
        second = await channel.send(PHONE, NOTICE.code, params, out_id="same")
        sent = await messages(admin, PHONE)
    assert first.biz_id != second.biz_id
    assert len(sent) == 2


def test_a_receipt_push_that_is_not_a_json_array_is_rejected() -> None:
    with pytest.raises(InvalidReceipt):
        parse_receipts(b'{"phone_number": "13800138000"}')


def test_a_receipt_without_its_biz_id_is_rejected() -> None:
    body = orjson.dumps([{"phone_number": PHONE, "send_time": "2026-11-25 08:00:00", "report_time": "x"}])
    with pytest.raises(InvalidReceipt, match="receipt 0"):
        parse_receipts(body)

"""SMS as a notice channel of the message center, against the SMS-gateway simulator."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from carehub.bots.sms_gateway import GatewaySettings, serve_sms_gateway
from carehub.channels.notices import ChannelError, NoticeChannel, OutgoingNotice
from carehub.channels.sms import (
    NOTICE_CONTENT_LIMIT,
    RECEIPT_ACCEPTED,
    InvalidReceipt,
    SmsConfig,
    SmsNoticeChannel,
    open_sms_channel,
    parse_receipts,
    sms_report,
)

KEY_ID = "LTAI5tSmsNoticeKey"
KEY_SECRET = "sms-notice-test-secret"
PHONE = "13800138000"
NOTICE = OutgoingNotice(kind="pickup.ready", title="取药提醒", body="您的药品已可取。", name="张*三")


@pytest.fixture
async def gateway(nursery: trio.Nursery) -> str:
    settings = GatewaySettings(receipt_delay=0.05, push_retry_seconds=(0.05,))
    serve = functools.partial(
        serve_sms_gateway, port=0, access_key_id=KEY_ID, access_key_secret=KEY_SECRET, settings=settings
    )
    url: str = await nursery.start(serve)
    return url


def sms_config(gateway: str, timeout: float = 5) -> SmsConfig:
    return SmsConfig(gateway, KEY_ID, KEY_SECRET, "智慧医院", timeout=timeout)


@pytest.fixture
async def channel(gateway: str) -> AsyncIterator[SmsNoticeChannel]:
    async with open_sms_channel(sms_config(gateway)) as sms:
        yield SmsNoticeChannel(sms)


@pytest.fixture
async def admin(gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway, timeout=5) as http:
        yield http


@pytest.fixture
async def pushes(nursery: trio.Nursery, admin: httpx.AsyncClient) -> trio.MemoryReceiveChannel[bytes]:
    """Receipt pushes of the simulator, as CareHub's receipt endpoint would get them."""
    send_bodies, bodies = trio.open_memory_channel[bytes](100)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        send_bodies.send_nowait(body)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": RECEIPT_ACCEPTED})

    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    asgi: Any = app
    binds = await nursery.start(functools.partial(hypercorn_serve, asgi, config))
    await admin.post("/_sim/config", json={"receipt_url": binds[0] + "/sms/receipts"})
    return bodies


async def sent(admin: httpx.AsyncClient, phone: str = PHONE) -> list[dict[str, Any]]:
    response = await admin.get("/_sim/messages", params={"phone": phone})
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["messages"]
    return found


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    while not await check():
        await trio.sleep(0.02)


async def test_a_notice_goes_out_as_the_notice_template_with_the_key_as_out_id(
    channel: SmsNoticeChannel, admin: httpx.AsyncClient
) -> None:
    notice_channel: NoticeChannel = channel
    with trio.fail_after(10):
        receipt = await notice_channel.send_notice(PHONE, NOTICE, idempotency_key="n-1:sms:1")
        [message] = await sent(admin)
    assert channel.name == "sms"
    assert message["template_code"] == "SMS_CAREHUB_NOTICE"
    assert message["content"] == "【智慧医院】张*三您好，取药提醒：您的药品已可取。如有疑问请咨询医院服务台。"
    assert message["out_id"] == "n-1:sms:1"
    assert receipt.provider_id == "n-1:sms:1"
    assert not receipt.delivered


async def test_a_long_notice_is_cut_to_the_templates_variable_limit(
    channel: SmsNoticeChannel, admin: httpx.AsyncClient
) -> None:
    notice = OutgoingNotice(kind="x", title="停诊通知", body="您预约的" + "心血管内科专家门诊" * 6 + "已停诊。")
    with trio.fail_after(10):
        await channel.send_notice(PHONE, notice, idempotency_key="n-2")
        [message] = await sent(admin)
    assert len(message["params"]["content"]) == NOTICE_CONTENT_LIMIT
    assert message["params"]["content"].endswith("…")
    assert message["params"]["name"] == "尊敬的用户"


async def test_a_number_the_provider_does_not_send_to_falls_back(channel: SmsNoticeChannel) -> None:
    with trio.fail_after(10), pytest.raises(ChannelError) as refused:
        await channel.send_notice("1380013800", NOTICE, idempotency_key="n-1")
    assert refused.value.code == "isv.MOBILE_NUMBER_ILLEGAL"
    assert refused.value.fallback
    assert not refused.value.retryable


async def test_a_number_whose_delivery_fails_is_reported_undelivered(
    channel: SmsNoticeChannel, admin: httpx.AsyncClient, pushes: trio.MemoryReceiveChannel[bytes]
) -> None:
    dead = "13900004444"  # the simulator's fail_suffixes: 4444 -> MOBILE_NOT_ON_SERVICE
    with trio.fail_after(10):
        receipt = await channel.send_notice(dead, NOTICE, idempotency_key="n-3:sms:1")
        [report] = [sms_report(r) for r in parse_receipts(await pushes.receive())]
        found = await channel.find_sent(dead, "n-3:sms:1")
    assert report.channel == "sms"
    assert report.provider_id == receipt.provider_id
    assert not report.delivered
    assert report.reason == "MOBILE_NOT_ON_SERVICE"
    assert found is not None and not found.delivered


async def test_a_delivered_notice_is_reported_delivered(
    channel: SmsNoticeChannel, pushes: trio.MemoryReceiveChannel[bytes]
) -> None:
    with trio.fail_after(10):
        receipt = await channel.send_notice(PHONE, NOTICE, idempotency_key="n-4:sms:1")
        [report] = [sms_report(r) for r in parse_receipts(await pushes.receive())]
    assert report.provider_id == receipt.provider_id
    assert report.delivered
    assert report.reason == ""


async def test_the_numbers_daily_quota_used_up_falls_back(channel: SmsNoticeChannel, admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/config", json={"limits": {"notice_per_day": 1}})
        await channel.send_notice(PHONE, NOTICE, idempotency_key="n-1")
        with pytest.raises(ChannelError) as refused:
            await channel.send_notice(PHONE, NOTICE, idempotency_key="n-2")
    assert refused.value.code == "isv.BUSINESS_LIMIT_CONTROL"
    assert refused.value.fallback
    assert not refused.value.retryable


async def test_qps_throttling_is_retryable(channel: SmsNoticeChannel, admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/faults", json={"kind": "error", "code": "Throttling.User", "count": 1})
        with pytest.raises(ChannelError) as failed:
            await channel.send_notice(PHONE, NOTICE, idempotency_key="n-1")
    assert failed.value.retryable
    assert not failed.value.fallback


@pytest.mark.parametrize("fault", [{"kind": "error", "code": "isp.SYSTEM_ERROR"}, {"kind": "unavailable"}])
async def test_a_provider_fault_is_retryable(
    channel: SmsNoticeChannel, admin: httpx.AsyncClient, fault: dict[str, str]
) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/faults", json=fault | {"count": 1})
        with pytest.raises(ChannelError) as failed:
            await channel.send_notice(PHONE, NOTICE, idempotency_key="n-1")
        assert await sent(admin) == []
        await channel.send_notice(PHONE, NOTICE, idempotency_key="n-1")  # and the retry goes out
    assert failed.value.retryable
    assert not failed.value.fallback


async def test_an_unapproved_template_is_neither_retryable_nor_a_fallback(channel: SmsNoticeChannel) -> None:
    notice = OutgoingNotice(kind="x", title="t", body="b", template="SMS_NOT_APPROVED")
    with trio.fail_after(10), pytest.raises(ChannelError) as refused:
        await channel.send_notice(PHONE, notice, idempotency_key="n-1")
    assert refused.value.code == "isv.SMS_TEMPLATE_ILLEGAL"
    assert not refused.value.retryable
    assert not refused.value.fallback


async def test_find_sent_finds_nothing_before_the_send_and_the_message_after(channel: SmsNoticeChannel) -> None:
    with trio.fail_after(10):
        before = await channel.find_sent(PHONE, "n-5:sms:1")
        receipt = await channel.send_notice(PHONE, NOTICE, idempotency_key="n-5:sms:1")
        after = await channel.find_sent(PHONE, "n-5:sms:1")
        other = await channel.find_sent(PHONE, "n-6:sms:1")

        async def delivered() -> bool:
            found = await channel.find_sent(PHONE, "n-5:sms:1")
            return found is not None and found.delivered

        await eventually(delivered)
    assert before is None
    assert after is not None and after.provider_id == receipt.provider_id
    assert other is None


async def test_a_send_whose_answer_was_lost_is_found_before_sending_again(
    gateway: str, admin: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/faults", json={"kind": "timeout", "count": 1, "accept": True})
        async with open_sms_channel(sms_config(gateway, timeout=0.3)) as sms:
            channel = SmsNoticeChannel(sms)
            with pytest.raises(ChannelError) as lost:
                await channel.send_notice(PHONE, NOTICE, idempotency_key="n-7:sms:1")
            found = await channel.find_sent(PHONE, "n-7:sms:1")
    assert lost.value.code == "NoAnswer"
    assert lost.value.retryable
    assert found is not None


async def test_a_long_key_is_cut_to_64_characters_for_the_send_and_the_lookup(
    channel: SmsNoticeChannel, admin: httpx.AsyncClient
) -> None:
    key = "n-" + "y" * 100
    with trio.fail_after(10):
        await channel.send_notice(PHONE, NOTICE, idempotency_key=key)
        found = await channel.find_sent(PHONE, key)
        [message] = await sent(admin)
    assert message["out_id"] == key[:64]
    assert found is not None


def test_a_report_can_be_read_from_the_raw_push_item() -> None:
    item = {
        "phone_number": PHONE,
        "send_time": "2026-12-04 08:00:00",
        "report_time": "2026-12-04 08:00:03",
        "success": "false",
        "err_code": "MOBILE_IN_BLACK",
        "err_msg": "手机号在黑名单",
        "sms_size": "1",
        "biz_id": "1234^0",
        "out_id": "n-9:sms:1",
    }
    report = sms_report(item)
    assert (report.provider_id, report.delivered, report.reason) == ("n-9:sms:1", False, "MOBILE_IN_BLACK")
    assert sms_report(item | {"out_id": ""}).provider_id == "1234^0"
    with pytest.raises(InvalidReceipt):
        sms_report({"phone_number": PHONE})

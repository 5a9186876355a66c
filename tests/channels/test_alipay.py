"""The Alipay life-account adapter against the Alipay simulator, over the network.

The simulator (carehub/bots/alipay_sim.py) implements the platform's side on its own (its own
RSA2 checks, its own signing); requests the adapter would never make are crafted here.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import rsa

from carehub.bots.alipay_sim import SimHandle, SimKeys, generate_keys, serve_alipay_sim
from carehub.channels.alipay import (
    AlipayChannel,
    AlipayConfig,
    load_private_key,
    load_public_key,
    open_alipay_channel,
    response_content,
    rsa2_sign,
    rsa2_verify,
    sign_content,
)
from carehub.channels.notices import ChannelError, NoticeChannel, OutgoingNotice

USER = "2088102122458832"
NOTICE = OutgoingNotice(
    kind="booking.confirmed",
    title="预约成功",
    body="您已预约12月5日上午心内科王医生，请提前15分钟到院。",
    link="/h5/appointments?id=A1",
    name="张*三",
)


@pytest.fixture(scope="module")
def keys() -> SimKeys:
    return generate_keys()  # RSA key generation takes a moment: once for the module


@pytest.fixture
async def sim(nursery: trio.Nursery, keys: SimKeys) -> SimHandle:
    handle: SimHandle = await nursery.start(functools.partial(serve_alipay_sim, port=0, keys=keys))
    return handle


def config_for(sim: SimHandle, **changes: Any) -> AlipayConfig:
    values: dict[str, Any] = {
        "gateway_url": sim.gateway_url,
        "app_id": sim.app_id,
        "app_private_key_pem": sim.app_private_key_pem,
        "alipay_public_key_pem": sim.alipay_public_key_pem,
        "default_template_id": sim.template_id,
        "public_base_url": "https://care.example-hospital.cn",
        "timeout": 5.0,
    }
    return AlipayConfig(**(values | changes))


@pytest.fixture
async def channel(sim: SimHandle) -> AsyncIterator[AlipayChannel]:
    async with open_alipay_channel(config_for(sim)) as alipay:
        yield alipay


@pytest.fixture
async def admin(sim: SimHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=5) as http:
        yield http


async def sent_messages(admin: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await admin.get("/_sim/messages")
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["messages"]
    return found


# -- the signing functions ------------------------------------------------------------------------


def test_the_string_to_sign_drops_sign_and_empty_values_and_sorts_raw_values() -> None:
    params = {
        "method": "alipay.open.public.message.single.send",
        "app_id": "2014072300007148",
        "sign": "ignored",
        "notify_url": "",
        "biz_content": '{"to_user_id":"2088102122458832","a":"x&y=z"}',
        "charset": "utf-8",
    }
    assert sign_content(params) == (
        'app_id=2014072300007148&biz_content={"to_user_id":"2088102122458832","a":"x&y=z"}'
        "&charset=utf-8&method=alipay.open.public.message.single.send"
    )


def test_an_rsa2_signature_is_sha256_with_rsa_and_reproducible(keys: SimKeys) -> None:
    private = load_private_key(keys.app_private_key_pem)
    public = load_public_key(keys.app_public_key_pem)
    content = "app_id=2021004100000001&biz_content={}&charset=utf-8&method=m&sign_type=RSA2"
    signature = rsa2_sign(content, private)
    # PKCS#1 v1.5 is deterministic: the same key and text give the same signature
    assert rsa2_sign(content, private) == signature
    assert len(base64.b64decode(signature)) == 256  # RSA-2048
    assert rsa2_verify(content, signature, public)
    assert not rsa2_verify(content + "&x=1", signature, public)
    assert not rsa2_verify(content, "not base64!", public)


def test_keys_in_the_consoles_bare_base64_form_load_too(keys: SimKeys) -> None:
    bare = "".join(line for line in keys.app_private_key_pem.splitlines() if "-----" not in line)
    assert isinstance(load_private_key(bare), rsa.RSAPrivateKey)
    bare_public = "".join(line for line in keys.alipay_public_key_pem.splitlines() if "-----" not in line)
    assert isinstance(load_public_key(bare_public), rsa.RSAPublicKey)


def test_the_signed_response_text_is_found_byte_for_byte() -> None:
    key = "alipay_open_public_message_single_send_response"
    body = '{"' + key + '" : {"code":"10000", "msg":"Success","x":{"y":"}"}} ,"sign":"abc"}'
    assert response_content(body, key) == '{"code":"10000", "msg":"Success","x":{"y":"}"}}'
    assert response_content('{"other":{}}', key) is None


# -- against the simulator ------------------------------------------------------------------------


async def test_a_signed_notice_is_accepted_and_recorded(channel: AlipayChannel, admin: httpx.AsyncClient) -> None:
    notice_channel: NoticeChannel = channel
    with trio.fail_after(10):
        receipt = await notice_channel.send_notice(USER, NOTICE, idempotency_key="n-1:alipay:1")
        [message] = await sent_messages(admin)
    assert channel.name == "alipay"
    assert receipt.provider_id == message["msg_id"]
    assert not receipt.delivered
    assert message["to_user_id"] == USER
    assert message["out_biz_no"] == "n-1:alipay:1"
    context = message["context"]
    assert context["url"] == "https://care.example-hospital.cn/h5/appointments?id=A1"
    assert context["action_name"] == "查看详情"
    assert context["first"] == {"value": "张*三您好"}
    assert context["keyword1"] == {"value": "预约成功"}
    assert context["keyword2"] == {"value": NOTICE.body}


async def test_a_request_signed_with_another_key_is_refused(sim: SimHandle, admin: httpx.AsyncClient) -> None:
    stranger = generate_keys()
    config = config_for(sim, app_private_key_pem=stranger.app_private_key_pem)
    with trio.fail_after(10):
        async with open_alipay_channel(config) as alipay:
            with pytest.raises(ChannelError) as refused:
                await alipay.send_notice(USER, NOTICE, idempotency_key="n-1")
        assert await sent_messages(admin) == []
    assert refused.value.code == "isv.invalid-signature"
    assert not refused.value.retryable
    assert not refused.value.fallback


async def test_a_request_changed_after_signing_is_refused(channel: AlipayChannel, sim: SimHandle) -> None:
    params = channel.signed_params("alipay.open.public.message.single.send", channel.biz_content(USER, NOTICE, "k"))
    params["biz_content"] = params["biz_content"].replace(USER, "2088000000000001")
    with trio.fail_after(10):
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.post(sim.gateway_url, data=params)
    answer = orjson.loads(response.content)["alipay_open_public_message_single_send_response"]
    assert (answer["code"], answer["sub_code"]) == ("40002", "isv.invalid-signature")


async def test_a_tampered_response_signature_is_refused(channel: AlipayChannel, admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/faults", json={"kind": "tamper", "count": 1})
        with pytest.raises(ChannelError) as refused:
            await channel.send_notice(USER, NOTICE, idempotency_key="n-1")
    assert refused.value.code == "invalid-response-signature"
    assert not refused.value.retryable
    assert not refused.value.fallback


async def test_an_answer_signed_by_another_platform_key_is_refused(sim: SimHandle) -> None:
    config = config_for(sim, alipay_public_key_pem=generate_keys().alipay_public_key_pem)
    with trio.fail_after(10):
        async with open_alipay_channel(config) as alipay:
            with pytest.raises(ChannelError) as refused:
                await alipay.send_notice(USER, NOTICE, idempotency_key="n-1")
    assert refused.value.code == "invalid-response-signature"


async def test_a_user_who_does_not_follow_the_life_account_falls_back(
    channel: AlipayChannel, admin: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/followers", json={"user_id": USER, "following": False})
        with pytest.raises(ChannelError) as refused:
            await channel.send_notice(USER, NOTICE, idempotency_key="n-1")
        assert await sent_messages(admin) == []
    assert refused.value.code == "USER_NOT_FOLLOW"
    assert refused.value.fallback
    assert not refused.value.retryable


async def test_a_user_id_that_is_not_an_alipay_user_falls_back(channel: AlipayChannel) -> None:
    with trio.fail_after(10), pytest.raises(ChannelError) as refused:
        await channel.send_notice("1234567890123456", NOTICE, idempotency_key="n-1")
    assert refused.value.fallback


async def test_a_busy_platform_is_retryable(channel: AlipayChannel, admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/config", json={"fail_rate": 1})
        with pytest.raises(ChannelError) as failed:
            await channel.send_notice(USER, NOTICE, idempotency_key="n-1")
        assert await sent_messages(admin) == []
        await admin.post("/_sim/config", json={"fail_rate": 0})
        await channel.send_notice(USER, NOTICE, idempotency_key="n-1")
    assert failed.value.code == "isp.unknow-error"
    assert failed.value.retryable
    assert not failed.value.fallback


async def test_flow_control_is_retryable(channel: AlipayChannel, admin: httpx.AsyncClient) -> None:
    fault = {"kind": "error", "code": "40004", "sub_code": "isp.flow-limit", "sub_msg": "调用频率超限"}
    with trio.fail_after(10):
        await admin.post("/_sim/faults", json=fault)
        with pytest.raises(ChannelError) as failed:
            await channel.send_notice(USER, NOTICE, idempotency_key="n-1")
    assert failed.value.retryable
    assert failed.value.retry_after is not None


async def test_an_unknown_template_is_neither_retryable_nor_a_fallback(channel: AlipayChannel) -> None:
    notice = OutgoingNotice(kind="x", title="t", body="b", template="NOT_APPROVED")
    with trio.fail_after(10), pytest.raises(ChannelError) as refused:
        await channel.send_notice(USER, notice, idempotency_key="n-1")
    assert refused.value.code == "TEMPLATE_NOT_EXIST"
    assert not refused.value.retryable
    assert not refused.value.fallback


async def test_a_gateway_answering_503_is_retryable(channel: AlipayChannel, admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/faults", json={"kind": "unavailable", "count": 1})
        with pytest.raises(ChannelError) as failed:
            await channel.send_notice(USER, NOTICE, idempotency_key="n-1")
    assert failed.value.code == "HTTP503"
    assert failed.value.retryable


async def test_an_unreachable_gateway_is_retryable(sim: SimHandle) -> None:
    config = config_for(sim, gateway_url="http://127.0.0.1:9/gateway.do")
    with trio.fail_after(10):
        async with open_alipay_channel(config) as alipay:
            with pytest.raises(ChannelError) as failed:
                await alipay.send_notice(USER, NOTICE, idempotency_key="n-1")
    assert failed.value.code == "Unreachable"
    assert failed.value.retryable


async def test_find_sent_finds_a_sent_notice_by_its_key_and_not_an_unsent_one(channel: AlipayChannel) -> None:
    with trio.fail_after(10):
        receipt = await channel.send_notice(USER, NOTICE, idempotency_key="n-1:alipay:1")
        found = await channel.find_sent(USER, "n-1:alipay:1")
        unsent = await channel.find_sent(USER, "n-2:alipay:1")
        other_user = await channel.find_sent("2088000000000001", "n-1:alipay:1")
    assert found == receipt
    assert unsent is None
    assert other_user is None


async def test_a_send_whose_answer_was_lost_is_found_before_sending_again(
    sim: SimHandle, admin: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/faults", json={"kind": "timeout", "count": 1, "accept": True})
        async with open_alipay_channel(config_for(sim, timeout=0.3)) as impatient:
            with pytest.raises(ChannelError) as lost:
                await impatient.send_notice(USER, NOTICE, idempotency_key="n-7:alipay:1")
            found = await impatient.find_sent(USER, "n-7:alipay:1")
        [message] = await sent_messages(admin)
    assert lost.value.code == "NoAnswer"
    assert lost.value.retryable
    assert found is not None
    assert found.provider_id == message["msg_id"]


async def test_a_long_idempotency_key_is_cut_to_64_characters_both_ways(
    channel: AlipayChannel, admin: httpx.AsyncClient
) -> None:
    key = "n-" + "x" * 100
    with trio.fail_after(10):
        await channel.send_notice(USER, NOTICE, idempotency_key=key)
        found = await channel.find_sent(USER, key)
        [message] = await sent_messages(admin)
    assert message["out_biz_no"] == key[:64]
    assert found is not None


async def test_a_failing_query_raises_rather_than_saying_not_sent(
    channel: AlipayChannel, admin: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        fault = {"kind": "error", "count": 1, "method": "alipay.open.public.message.query"}
        await admin.post("/_sim/faults", json=fault)
        with pytest.raises(ChannelError) as failed:
            await channel.find_sent(USER, "n-1")
    assert failed.value.retryable


async def test_find_sent_cannot_say_when_the_gateway_has_no_query_method(
    channel: AlipayChannel, admin: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await channel.send_notice(USER, NOTICE, idempotency_key="n-1")
        await admin.post("/_sim/config", json={"query_supported": False})
        found = await channel.find_sent(USER, "n-1")
    assert found is None


async def test_the_admin_api_refuses_a_fail_rate_out_of_range(admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        response = await admin.post("/_sim/config", json={"fail_rate": 2})
        bad_follower = await admin.post("/_sim/followers", json={"following": False})
    assert response.status_code == 400
    assert bad_follower.status_code == 400


async def test_a_slow_platform_answers_late(channel: AlipayChannel, admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/config", json={"slow_ms": 300})
        start = trio.current_time()
        await channel.send_notice(USER, NOTICE, idempotency_key="n-1")
    assert trio.current_time() - start >= 0.3
